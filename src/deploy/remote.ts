/**
 * The shell scripts a device runs, POSIX sh with arguments as $1 … (always quoted by the caller).
 * Remote layout under the host's edgec_dir:
 *   releases/<id>/        one complete, verified artifact per id (the hash of its SHA256SUMS)
 *   releases/.incoming-<id>/  an upload in progress; never pointed to, removed by the next deploy
 *   current -> releases/<id>, previous -> releases/<id>   symlinks, each replaced by an atomic rename
 *   .lock -> "pid=… boot=… since=… by=…"   while a deploy or rollback runs (a dangling symlink)
 * A device switches versions only by renaming a new symlink over `current`, so at every instant it
 * runs the old or the new version, complete.
 */

/** Exit code of a script that finds the device locked; its stdout then says `lock=<holder>`. */
export const LOCKED = 15;

/**
 * Prefix of a script that changes the device: takes the device's lock and holds it until the script
 * exits, so two deploys (or a deploy and a rollback) never interleave. Arguments: $1 who (the holder's
 * description), $2 "break" to remove any lock first, then the script's own ($1 its remote dir).
 * The lock is a symlink, `.lock`, created atomically by `ln -s` with the holder in its target
 * (pid=… boot=… since=… by=…). A lock whose shell is gone, or that predates a reboot, is stale (its
 * holder was killed outright) and is removed, by one taker at a time (`.lock.break`). Signals that
 * end the session (hangup, a closed pipe) still release it through the EXIT trap.
 */
const LOCK = `set -e
who=$1; brk=$2; shift 2
lock="$1/.lock"
boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)
me="pid=$$ boot=$boot since=$(date -u +%Y-%m-%dT%H:%M:%SZ) by=$who"
mkdir -p "$1"
if [ "$brk" = break ]; then rm -f "$lock"; rmdir "$lock.break" 2>/dev/null || true; fi
stale() {
  p=\${1#pid=}; p=\${p%% *}; b=\${1#* boot=}; b=\${b%% *}
  case $p in ''|*[!0-9]*) return 1 ;; esac
  [ "$b" != "$boot" ] || ! { kill -0 "$p" 2>/dev/null || [ -d "/proc/$p" ]; }
}
if ! ln -s "$me" "$lock" 2>/dev/null; then
  held=$(readlink "$lock" || true)
  if [ -n "$held" ] && stale "$held" && mkdir "$lock.break" 2>/dev/null; then
    if [ "$(readlink "$lock")" = "$held" ]; then rm -f "$lock"; fi
    rmdir "$lock.break"
  fi
  if ! err=$(ln -s "$me" "$lock" 2>&1); then
    [ -L "$lock" ] || { printf '%s\\n' "$err" >&2; exit 1; }
    echo "lock=$(readlink "$lock")"; exit ${LOCKED};
  fi
fi
trap 'if [ "$(readlink "$lock")" = "$me" ]; then rm -f "$lock"; fi' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 141' PIPE; trap 'exit 143' TERM
`;

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

/** Unpacks the release from a tar archive, `src` (exit 14 when it cannot be written, e.g. a full disk). */
const receive = (src: string) => `if ! out=$(tar -xf ${src} -C "$inc" 2>&1); then
  printf 'upload failed: %s\\n' "$(printf '%s' "$out" | head -3 | tr '\\n' ' ')" >&2; rm -rf "$inc"; exit 14
fi
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

/**
 * The separate steps, for the Ansible playbook. Its copy module uploads the release in between as one
 * tar file in the incoming folder: a folder would cost the module several round trips per file.
 */
export const PREPARE = HEADER + PREPARE_BODY;
export const INSTALL = HEADER + receive(`"$inc/.release.tar"`) + `rm -f "$inc/.release.tar"\n` + INSTALL_BODY;

/**
 * All of a deploy in one ssh session, holding the device's lock (arguments: who, break, then the
 * install scripts'): the release arrives as a tar stream on stdin. The lock is what makes removing
 * other uploads in progress safe. The @ lines tell edgec which step runs.
 */
export const DEPLOY = LOCK + HEADER + PREPARE_BODY + `echo "@upload"\n` + receive("-") + `echo "@verify"\n` + INSTALL_BODY;

/**
 * $1 dir. Swaps current and previous after re-verifying the previous release. Exit 13: nothing to roll
 * back to. For the playbook; edgec runs it under the lock (LOCKED_ROLLBACK).
 */
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

/** ROLLBACK holding the device's lock: who, break, dir. */
export const LOCKED_ROLLBACK = LOCK + ROLLBACK;

/** $1 dir. What the device runs, and who holds its lock (if anyone). */
export const STATUS = `dir=$1
echo "arch=$(uname -m)"
echo "lock=$(readlink "$dir/.lock" 2>/dev/null)"
echo "current=$(readlink "$dir/current" 2>/dev/null)"
echo "previous=$(readlink "$dir/previous" 2>/dev/null)"
if [ -f "$dir/current/manifest.json" ]; then echo "manifest:"; cat "$dir/current/manifest.json"; fi
`;
