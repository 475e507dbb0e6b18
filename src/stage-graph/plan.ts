import { topoOrder, type GraphNode } from './dag.js';

export interface PlanNode extends GraphNode {
  uses: string;
  /** Optional status shown next to the stage (e.g. `cached`, `stale: params changed`). */
  status?: string;
}

export type PlanFormat = 'text' | 'mermaid' | 'dot' | 'json';

/** Mermaid node ids must be plain words; stage ids may hold '-' or '[...]' (sweeps). */
function safeId(id: string): string {
  return 's_' + id.replace(/[^A-Za-z0-9_]/g, (c) => `_${c.charCodeAt(0).toString(16)}_`);
}

function quoteLabel(s: string): string {
  return s.replace(/"/g, '#quot;');
}

export function formatPlan(nodes: PlanNode[], format: PlanFormat): string {
  const order = topoOrder(nodes);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  switch (format) {
    case 'json':
      return JSON.stringify({ stages: order.map((id) => ({ id, uses: byId.get(id)!.uses, needs: byId.get(id)!.needs, status: byId.get(id)!.status })) }, null, 2);
    case 'mermaid': {
      const lines = ['flowchart TD'];
      for (const id of order) {
        const n = byId.get(id)!;
        lines.push(`  ${safeId(id)}["${quoteLabel(`${id} (${n.uses})${n.status ? ` — ${n.status}` : ''}`)}"]`);
      }
      for (const id of order) for (const d of byId.get(id)!.needs) lines.push(`  ${safeId(d)} --> ${safeId(id)}`);
      return lines.join('\n');
    }
    case 'dot': {
      const lines = ['digraph compress {', '  rankdir=TB;', '  node [shape=box];'];
      for (const id of order) {
        const n = byId.get(id)!;
        lines.push(`  ${JSON.stringify(id)} [label=${JSON.stringify(`${id}\\n${n.uses}${n.status ? `\\n${n.status}` : ''}`)}];`);
      }
      for (const id of order) for (const d of byId.get(id)!.needs) lines.push(`  ${JSON.stringify(d)} -> ${JSON.stringify(id)};`);
      lines.push('}');
      return lines.join('\n');
    }
    case 'text': {
      // Levels: a stage's level is one more than its deepest dependency, so parallel branches line up.
      const level = new Map<string, number>();
      for (const id of order) level.set(id, Math.max(-1, ...byId.get(id)!.needs.map((d) => level.get(d) ?? -1)) + 1);
      const lines: string[] = [];
      for (const id of order) {
        const n = byId.get(id)!;
        const indent = '  '.repeat(level.get(id)!);
        const deps = n.needs.length ? `  <- ${n.needs.join(', ')}` : '';
        lines.push(`${indent}${id} (${n.uses})${deps}${n.status ? `  [${n.status}]` : ''}`);
      }
      return lines.join('\n');
    }
  }
}
