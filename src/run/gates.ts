import { compare, evalExpr, parseGate } from '../recipe/gates.js';
import { resolveRef } from '../recipe/gates-check.js';

export interface GateResult {
  stage: string;
  gate: string;
  passed: boolean;
  left?: number;
  right?: number;
  message: string;
}

/** Evaluates a stage's gates against its own and upstream metrics (validated at recipe load). */
export async function evaluateGates(
  stageId: string,
  gates: string[],
  metricsOf: (id: string) => Promise<Record<string, unknown> | undefined>,
): Promise<GateResult[]> {
  const out: GateResult[] = [];
  for (const src of gates) {
    const gate = parseGate(src);
    const missing: string[] = [];
    const values = new Map<string, number>();
    const collect = async (e: typeof gate.left): Promise<void> => {
      if (e.type === 'ref') {
        const r = resolveRef(e.path, stageId);
        const v = 'error' in r ? undefined : (await metricsOf(r.stage))?.[r.metric];
        if (typeof v === 'number' && Number.isFinite(v)) values.set(e.text, v);
        else missing.push(e.text);
      } else if (e.type === 'neg') await collect(e.arg);
      else if (e.type === 'bin') {
        await collect(e.left);
        await collect(e.right);
      }
    };
    await collect(gate.left);
    await collect(gate.right);
    if (missing.length) {
      out.push({ stage: stageId, gate: src, passed: false, message: `gate '${src}' failed: no value for ${missing.join(', ')}` });
      continue;
    }
    const lookup = (r: { text: string }) => values.get(r.text)!;
    const left = evalExpr(gate.left, lookup);
    const right = evalExpr(gate.right, lookup);
    const passed = compare(gate.op, left, right);
    out.push({
      stage: stageId,
      gate: src,
      passed,
      left,
      right,
      message: `gate '${src}' ${passed ? 'passed' : 'FAILED'}: ${fmt(left)} ${gate.op} ${fmt(right)} is ${passed}`,
    });
  }
  return out;
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/0+$/, '').replace(/\.$/, '');
}
