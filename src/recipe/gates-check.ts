import { stageKind } from '../stages/registry.js';
import { shown, suggestion } from './errors.js';
import { GateSyntaxError, nonFiniteConstant, parseGate, refsOf, type Gate } from './gates.js';

interface StageLike {
  id: string;
  uses: string;
  needs: string[];
  with: Record<string, any>;
}

export interface ResolvedRef {
  stage: string;
  metric: string;
}

/**
 * Where a gate's reference reads from: `metric` is the gate's own stage, `stages.<id>.<metric>` and
 * `exports.<id>.<metric>` another stage (which must be upstream, so its metrics exist when the gate runs).
 */
export function resolveRef(path: string[], self: string): ResolvedRef | { error: string } {
  if (path.length === 1) return { stage: self, metric: path[0] };
  if ((path[0] === 'stages' || path[0] === 'exports') && path.length === 3) return { stage: path[1], metric: path[2] };
  return { error: `cannot read '${path.join('.')}': write a metric name, stages.<id>.<metric> or exports.<id>.<metric>` };
}

function ancestors(id: string, byId: Map<string, StageLike>): Set<string> {
  const out = new Set<string>();
  const stack = [...(byId.get(id)?.needs ?? [])];
  while (stack.length) {
    const n = stack.pop()!;
    if (out.has(n) || !byId.has(n)) continue;
    out.add(n);
    stack.push(...byId.get(n)!.needs);
  }
  return out;
}

/** Validates every `with.gates` entry at recipe-validation time; returns positioned problems. */
export function checkGates(stages: StageLike[], byId: Map<string, StageLike>): Array<{ path: Array<string | number>; message: string }> {
  const problems: Array<{ path: Array<string | number>; message: string }> = [];
  for (const s of stages) {
    const gates = s.with.gates as unknown;
    if (!Array.isArray(gates)) continue;
    const up = ancestors(s.id, byId);
    gates.forEach((src, i) => {
      const path = ['stages', s.id, 'with', 'gates', i];
      let gate: Gate;
      try {
        gate = parseGate(String(src));
      } catch (e) {
        if (e instanceof GateSyntaxError) {
          problems.push({ path, message: `gate '${shown(src)}': ${e.message} at column ${e.column}` });
          return;
        }
        throw e;
      }
      // `accuracy >= 0/0` can never pass (and `!= 0/0` never fail): known before anything runs.
      for (const [side, e] of [['left', gate.left], ['right', gate.right]] as const) {
        const why = nonFiniteConstant(e);
        if (why) problems.push({ path, message: `gate '${shown(src)}': its ${side} side ${why}` });
      }
      for (const ref of [...refsOf(gate.left), ...refsOf(gate.right)]) {
        const r = resolveRef(ref.path, s.id);
        if ('error' in r) {
          problems.push({ path, message: `gate '${shown(src)}': ${r.error}` });
          continue;
        }
        const target = byId.get(r.stage);
        if (!target) {
          problems.push({ path, message: `gate '${shown(src)}': unknown stage '${shown(r.stage)}'${suggestion(r.stage, byId.keys())}` });
          continue;
        }
        if (ref.path[0] === 'exports' && target.uses !== 'export') {
          problems.push({ path, message: `gate '${shown(src)}': '${r.stage}' is a '${target.uses}' stage, not an export` });
          continue;
        }
        if (r.stage !== s.id && !up.has(r.stage)) {
          problems.push({ path, message: `gate '${shown(src)}': stage '${r.stage}' is not upstream of '${s.id}'; add it to needs` });
          continue;
        }
        const kind = stageKind(target.uses);
        const metrics = kind?.metrics ?? [];
        if (kind?.openMetrics) {
          if (!kind.openMetrics(target.with as never)) problems.push({ path, message: `gate '${shown(src)}': stage '${r.stage}' reports no metrics; set its with.metrics to the JSON file its command writes` });
          continue;
        }
        if (!metrics.includes(r.metric)) {
          problems.push({ path, message: `gate '${shown(src)}': '${target.uses}' stages have no metric '${r.metric}'${suggestion(r.metric, metrics)} (metrics: ${metrics.join(', ')})` });
        }
      }
    });
  }
  return problems;
}
