/**
 * The shell scripts a device runs, POSIX sh with arguments as $1 … (always quoted by the caller).
 * Remote layout under the host's edgec_dir:
 *   releases/<id>/        one complete, verified artifact per id (the hash of its SHA256SUMS)
 *   releases/.incoming-<id>/  an upload in progress; never pointed to, removed by the next deploy
 *   current -> releases/<id>, previous -> releases/<id>   symlinks, each replaced by an atomic rename
 * A device switches versions only by renaming a new symlink over `current`, so at every instant it
 * runs the old or the new version, complete.
 */

/** Every install script starts so: $1 dir, $2 release id, $3 rtol, $4 atol, then accepted `uname -m` values. */
const HEADER = `set -e
dir=$1; id=$2; rtol=$3; atol=$4; shift 4
inc="$dir/releases/.incoming-$id"; rel="$dir/releases/$id"
`;

/** Checks the architecture (exit 10), removes uploads of interrupted deploys, makes the incoming folder. */
const PREPARE_BODY = `arch=$(uname -m)
ok=
for a in "$@"; do [ "$arch" = "$a" ] && ok=1; done
if [ -z "$ok" ]; then echo "arch=$arch"; exit 10; fi
mkdir -p "$dir/releases"
for d in "$dir"/releases/.incoming-*; do [ -e "$d" ] && rm -rf "$d"; done
mkdir "$inc"
echo "arch=$arch"
echo "pwd=$(pwd)"
echo "current=$(readlink "$dir/current" 2>/dev/null || true)"
`;

/** Unpacks the release streamed on stdin as tar (exit 14 when it cannot be written, e.g. a full disk). */
const RECEIVE_BODY = `echo "@upload"
if ! out=$(tar -xf - -C "$inc" 2>&1); then
  printf 'upload failed: %s\\n' "$(printf '%s' "$out" | head -3 | tr '\\n' ' ')" >&2; rm -rf "$inc"; exit 14
fi
echo "@verify"
`;

/**
 * Verifies checksums (exit 11), runs the self-test in the incoming folder (exit 12), moves it into
 * place and switches \`current\` (the old one becomes \`previous\`); keeps only those two releases.
 */
const INSTALL_BODY = `if ! out=$(cd "$inc" && sha256sum -c --quiet SHA256SUMS 2>&1); then
  printf 'checksum mismatch: %s\\n' "$(printf '%s' "$out" | grep -v '^sha256sum: WARNING' | head -3 | tr '\\n' ' ')" >&2; rm -rf "$inc"; exit 11
fi
if [ -e "$inc/selftest" ]; then
  if ! out=$(cd "$inc" && ./run --check selftest "$rtol" "$atol" 2>&1); then
    printf 'self-test failed: %s\\n' "$(printf '%s' "$out" | head -3 | tr '\\n' ' ')" >&2; rm -rf "$inc"; exit 12
  fi
fi
old=$(readlink "$dir/current" 2>/dev/null || true)
if [ "$old" = "releases/$id" ] && [ -d "$rel" ]; then rm -rf "$inc"; echo "unchanged"; exit 0; fi
rm -rf "$rel"
mv "$inc" "$rel"
if [ -n "$old" ]; then ln -sfn "$old" "$dir/.previous.new"; mv -T "$dir/.previous.new" "$dir/previous"; fi
ln -sfn "releases/$id" "$dir/.current.new"
mv -T "$dir/.current.new" "$dir/current"
for d in "$dir"/releases/*; do
  case "releases/\${d##*/}" in "releases/$id"|"$old") ;; *) rm -rf "$d" ;; esac
done
echo "switched from=$old"
`;

/** The separate steps, for the Ansible playbook (which uploads with its copy module in between). */
export const PREPARE = HEADER + PREPARE_BODY;
export const INSTALL = HEADER + INSTALL_BODY;

/** All of a deploy in one ssh session: the release arrives as a tar stream on stdin. */
export const DEPLOY = HEADER + PREPARE_BODY + RECEIVE_BODY + INSTALL_BODY;

/** $1 dir. Swaps current and previous after re-verifying the previous release. Exit 13: nothing to roll back to. */
export const ROLLBACK = `set -e
dir=$1
cur=$(readlink "$dir/current" 2>/dev/null || true)
prev=$(readlink "$dir/previous" 2>/dev/null || true)
if [ -z "$prev" ] || [ ! -d "$dir/$prev" ]; then echo "no previous version to roll back to" >&2; exit 13; fi
if ! out=$(cd "$dir/$prev" && sha256sum -c --quiet SHA256SUMS 2>&1); then printf 'previous version is damaged: %s\\n' "$out" >&2; exit 11; fi
if [ -e "$dir/$prev/selftest" ] && ! out=$(cd "$dir/$prev" && ./run --check selftest 2>&1); then printf 'self-test failed: %s\\n' "$out" >&2; exit 12; fi
if [ -n "$cur" ]; then ln -sfn "$cur" "$dir/.previous.new"; mv -T "$dir/.previous.new" "$dir/previous"; fi
ln -sfn "$prev" "$dir/.current.new"
mv -T "$dir/.current.new" "$dir/current"
echo "switched from=$cur to=$prev"
`;

/** $1 dir. What the device runs. */
export const STATUS = `dir=$1
echo "arch=$(uname -m)"
echo "current=$(readlink "$dir/current" 2>/dev/null)"
echo "previous=$(readlink "$dir/previous" 2>/dev/null)"
if [ -f "$dir/current/manifest.json" ]; then echo "manifest:"; cat "$dir/current/manifest.json"; fi
`;
