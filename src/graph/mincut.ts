/**
 * Minimum s-t cut by Dinic's max-flow: nodes 0..n-1, `s` and `t` among them. Returns the nodes on
 * the source side of a minimum cut and its capacity. Capacities may be Infinity (a constraint).
 */
export function minCut(n: number, s: number, t: number, edges: [number, number, number][]): { sourceSide: boolean[]; value: number } {
  const head = new Array<number>(n).fill(-1);
  const to: number[] = [], cap: number[] = [], next: number[] = [];
  const add = (u: number, v: number, c: number) => {
    to.push(v), cap.push(c), next.push(head[u]), (head[u] = to.length - 1);
    to.push(u), cap.push(0), next.push(head[v]), (head[v] = to.length - 1);
  };
  for (const [u, v, c] of edges) if (c > 0) add(u, v, c);
  const level = new Array<number>(n);
  const bfs = () => {
    level.fill(-1);
    level[s] = 0;
    const q = [s];
    for (let i = 0; i < q.length; i++) for (let e = head[q[i]]; e >= 0; e = next[e]) if (cap[e] > 1e-15 && level[to[e]] < 0) (level[to[e]] = level[q[i]] + 1), q.push(to[e]);
    return level[t] >= 0;
  };
  const it = new Array<number>(n);
  const dfs = (u: number, f: number): number => {
    if (u === t) return f;
    for (; it[u] >= 0; it[u] = next[it[u]]) {
      const e = it[u];
      if (cap[e] > 1e-15 && level[to[e]] === level[u] + 1) {
        const d = dfs(to[e], Math.min(f, cap[e]));
        if (d > 0) {
          cap[e] -= d;
          cap[e ^ 1] += d;
          return d;
        }
      }
    }
    return 0;
  };
  let value = 0;
  while (bfs()) {
    for (let i = 0; i < n; i++) it[i] = head[i];
    for (let f = dfs(s, Infinity); f > 0; f = dfs(s, Infinity)) {
      if (!Number.isFinite(f)) throw new Error("minCut: every cut has infinite capacity");
      value += f;
    }
  }
  // The source side: what the source still reaches in the residual graph.
  bfs();
  return { sourceSide: level.map((l) => l >= 0), value };
}
