/**
 * The ideals (downward-closed sets) of a DAG of `n` nodes whose node i depends on `deps[i]`, as bit
 * masks: every set that could have run first, in any topological order. Built one node at a time
 * from the empty set, each new set once. Returns undefined past `limit` ideals (wide graphs have
 * exponentially many).
 */
export function ideals(n: number, deps: number[][], limit: number): bigint[] | undefined {
  const bit = (i: number) => 1n << BigInt(i);
  const need = deps.map((d) => d.reduce((m, j) => m | bit(j), 0n));
  const seen = new Set<bigint>([0n]);
  let layer = [0n];
  while (layer.length) {
    const next: bigint[] = [];
    for (const m of layer) {
      for (let i = 0; i < n; i++) {
        if (m & bit(i) || (need[i] & m) !== need[i]) continue;
        const grown = m | bit(i);
        if (seen.has(grown)) continue;
        if (seen.size >= limit) return undefined;
        seen.add(grown);
        next.push(grown);
      }
    }
    layer = next;
  }
  return [...seen];
}
