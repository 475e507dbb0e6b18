export interface GraphNode {
  id: string;
  needs: string[];
}

/** A cycle as a closed path along `needs` (a needs b needs a: `[a, b, a]`), or undefined. Follows file order. */
export function findCycle(nodes: GraphNode[]): string[] | undefined {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] | undefined => {
    const s = state.get(id);
    if (s === 'done') return undefined;
    if (s === 'visiting') return [...stack.slice(stack.indexOf(id)), id];
    state.set(id, 'visiting');
    stack.push(id);
    for (const n of byId.get(id)?.needs ?? []) {
      if (!byId.has(n)) continue;
      const c = visit(n);
      if (c) return c;
    }
    stack.pop();
    state.set(id, 'done');
    return undefined;
  };
  for (const n of nodes) {
    const c = visit(n.id);
    if (c) return c;
  }
  return undefined;
}

/** Topological order (dependencies first), stable with respect to the given order. */
export function topoOrder(nodes: GraphNode[]): string[] {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const out: string[] = [];
  const done = new Set<string>();
  const visit = (id: string) => {
    if (done.has(id)) return;
    done.add(id);
    for (const n of byId.get(id)?.needs ?? []) if (byId.has(n)) visit(n);
    out.push(id);
  };
  for (const n of nodes) visit(n.id);
  return out;
}

export function ancestorsOf(nodes: GraphNode[], id: string): Set<string> {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const out = new Set<string>();
  const stack = [...(byId.get(id)?.needs ?? [])];
  while (stack.length) {
    const n = stack.pop()!;
    if (out.has(n)) continue;
    out.add(n);
    stack.push(...(byId.get(n)?.needs ?? []));
  }
  return out;
}

export function descendantsOf(nodes: GraphNode[], id: string): Set<string> {
  const out = new Set<string>();
  let grew = true;
  while (grew) {
    grew = false;
    for (const n of nodes) {
      if (out.has(n.id)) continue;
      if (n.needs.some((d) => d === id || out.has(d))) {
        out.add(n.id);
        grew = true;
      }
    }
  }
  return out;
}

export interface Selection {
  only?: string[];
  /** Stages from these on (several: the branches of a sweep). */
  from?: string[];
  until?: string[];
}

/**
 * Which stages a run targets. `only`: just those; `from`: the stage and its descendants; `until`:
 * the stage and its ancestors; both `from` and `until`: the stages between them.
 * Upstream stages outside the selection are read from the cache (see the runner).
 */
export function selectStages(nodes: GraphNode[], sel: Selection): Set<string> {
  let set = new Set(nodes.map((n) => n.id));
  if (sel.only?.length) set = new Set(sel.only);
  if (sel.from?.length) {
    const d = new Set(sel.from.flatMap((f) => [f, ...descendantsOf(nodes, f)]));
    set = new Set([...set].filter((x) => d.has(x)));
  }
  if (sel.until?.length) {
    const a = new Set(sel.until.flatMap((u) => [u, ...ancestorsOf(nodes, u)]));
    set = new Set([...set].filter((x) => a.has(x)));
  }
  return set;
}
