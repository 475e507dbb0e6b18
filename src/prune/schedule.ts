/**
 * Pruning schedules: pure functions of the optimizer step.
 *
 * Contract shared by every schedule: at step `t`, if `shouldPrune(t)` is true the caller recomputes
 * the masks so the layer reaches `sparsityAt(t)`. Between pruning steps the masks are kept as they are
 * (and re-applied after each weight update). `sparsityAt` is defined for every step:
 *   - `constant` / `polynomial-decay` return exactly what TF-MOT's `ConstantSparsity` /
 *     `PolynomialDecay.__call__` return (a constant, resp. the clipped continuous polynomial);
 *   - `one-shot` / `agp` / `iterative` return the target in effect after the latest pruning event at or
 *     before `t` (held between events); `one-shot` and `iterative` return 0 before their first event,
 *     `agp` returns `initialSparsity` (like TF-MOT's clipping).
 * Arithmetic is float64 (TF-MOT computes in float32: values agree to ~1e-7).
 */

export type ScheduleSpec =
  | OneShotScheduleSpec
  | ConstantScheduleSpec
  | PolynomialDecayScheduleSpec
  | AgpScheduleSpec
  | IterativeScheduleSpec;

/** Prune once, at `step` (default 0), to `sparsity`. */
export interface OneShotScheduleSpec {
  kind: 'one-shot';
  sparsity: number;
  step?: number;
}

/** TF-MOT `ConstantSparsity(target_sparsity, begin_step, end_step=-1, frequency=100)`. */
export interface ConstantScheduleSpec {
  kind: 'constant';
  targetSparsity: number;
  beginStep: number;
  /** `-1` (default): keep pruning until training ends. */
  endStep?: number;
  frequency?: number;
}

/** TF-MOT `PolynomialDecay(initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100)`. */
export interface PolynomialDecayScheduleSpec {
  kind: 'polynomial-decay';
  initialSparsity: number;
  finalSparsity: number;
  beginStep: number;
  endStep: number;
  power?: number;
  frequency?: number;
}

/**
 * Automated gradual pruning (Zhu & Gupta 2017): pruning events at t = t0 + kΔt, k = 0..n, with
 * s_t = s_f + (s_i - s_f)(1 - (t - t0)/(nΔt))^3.
 */
export interface AgpScheduleSpec {
  kind: 'agp';
  initialSparsity?: number; // s_i, default 0
  finalSparsity: number; // s_f
  startStep: number; // t0
  frequency: number; // Δt
  numEvents: number; // n (the last event is at t0 + nΔt)
  power?: number; // default 3 (the paper's exponent)
}

/**
 * Iterative pruning (Han et al. 2015 style): `rounds` rounds, each pruning `rate` of the weights that
 * remain, at steps beginStep + r*frequency (r = 0..rounds-1). Give either `rate` or `finalSparsity`
 * (then rate = 1 - (1 - finalSparsity)^(1/rounds)). Target after round r (1-based): 1 - (1 - rate)^r.
 */
export interface IterativeScheduleSpec {
  kind: 'iterative';
  rounds: number;
  rate?: number;
  finalSparsity?: number;
  beginStep?: number; // default 0
  frequency: number; // steps between rounds
}

export interface PruningSchedule {
  readonly spec: Readonly<ScheduleSpec>;
  /** Target sparsity at `step` (see the module comment for values between pruning steps). */
  sparsityAt(step: number): number;
  /** Whether masks should be recomputed at `step`. */
  shouldPrune(step: number): boolean;
  /** The sparsity the schedule converges to. */
  readonly finalSparsity: number;
  /** Last step at which pruning can happen; -1 = never stops (constant with endStep -1). */
  readonly endStep: number;
  /** All pruning steps in [0, untilStep] (inclusive), ascending. */
  pruneSteps(untilStep: number): number[];
}

export interface IterativeSchedule extends PruningSchedule {
  /** Per-round fraction of the *remaining* weights pruned. */
  readonly rate: number;
  /** roundTargets[r] = cumulative target sparsity after round r+1. */
  readonly roundTargets: readonly number[];
  /** Steps at which each round happens (same indexing as roundTargets). */
  readonly roundSteps: readonly number[];
}

/**
 * The keys each schedule kind reads (what createSchedule checks): `required` must be given, `target` is its target
 * sparsity (the prune stage fills it from its `sparsity`; iterative may give `rate` instead), `optional` have defaults.
 */
export const SCHEDULE_KEYS: Record<ScheduleSpec['kind'], { required: readonly string[]; target: string; optional: readonly string[] }> = {
  'one-shot': { required: [], target: 'sparsity', optional: ['step'] },
  constant: { required: ['beginStep'], target: 'targetSparsity', optional: ['endStep', 'frequency'] },
  'polynomial-decay': { required: ['initialSparsity', 'beginStep', 'endStep'], target: 'finalSparsity', optional: ['power', 'frequency'] },
  agp: { required: ['startStep', 'frequency', 'numEvents'], target: 'finalSparsity', optional: ['initialSparsity', 'power'] },
  iterative: { required: ['rounds', 'frequency'], target: 'finalSparsity', optional: ['rate', 'beginStep'] },
};

export class ScheduleError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ScheduleError';
  }
}

// ---- validation (TF-MOT's _validate_step / _validate_sparsity, with our field names) ----

function checkNumber(kind: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ScheduleError(`${kind}: ${name} must be a finite number (got ${String(v)})`, name);
  return v;
}

function checkInt(kind: string, name: string, v: unknown): number {
  checkNumber(kind, name, v);
  if (!Number.isInteger(v)) throw new ScheduleError(`${kind}: ${name} must be an integer (got ${String(v)})`, name);
  return v as number;
}

/** TF-MOT `_validate_sparsity`: `not 0.0 <= sparsity < 1.0` -> '<name> must be in range [0,1)'. */
function validateSparsity(kind: string, name: string, v: unknown): number {
  checkNumber(kind, name, v);
  const s = v as number;
  if (!(s >= 0 && s < 1)) throw new ScheduleError(`${kind}: ${name} must be in range [0,1) (got ${s})`, name);
  return s;
}

/** TF-MOT `_validate_step`, same checks in the same order. */
function validateStep(kind: string, beginStep: unknown, endStep: unknown, frequency: unknown, allowNegative1: boolean, names = { begin: 'beginStep', end: 'endStep' }): void {
  const b = checkInt(kind, names.begin, beginStep);
  const e = checkInt(kind, names.end, endStep);
  const f = checkInt(kind, 'frequency', frequency);
  if (b < 0) throw new ScheduleError(`${kind}: ${names.begin} should be >= 0 (got ${b})`, names.begin);
  if (!allowNegative1 && e === -1) throw new ScheduleError(`${kind}: ${names.end} cannot be -1.`, names.end);
  if (e !== -1) {
    if (e < 0) throw new ScheduleError(`${kind}: ${names.end} can be -1 or >= 0 (got ${e})`, names.end);
    if (e < b) throw new ScheduleError(`${kind}: ${names.begin} should be <= ${names.end} if ${names.end} != -1 (got ${b} > ${e})`, names.end);
  }
  if (f <= 0) throw new ScheduleError(`${kind}: frequency should be > 0 (got ${f})`, 'frequency');
}

/** TF-MOT `_should_prune_in_step`: step in [begin, end] (or end < 0) and (step - begin) mod frequency == 0. */
function tfmotShouldPrune(step: number, begin: number, end: number, frequency: number): boolean {
  const inRange = step >= begin && (step <= end || end < 0);
  // Python/TF floormod (result has the sign of the divisor); irrelevant inside the range but kept exact.
  const mod = ((((step - begin) % frequency) + frequency) % frequency);
  return inRange && mod === 0;
}

function stepsBetween(first: number, last: number, every: number, until: number): number[] {
  const out: number[] = [];
  const stop = last < 0 ? until : Math.min(last, until);
  for (let t = first; t <= stop; t += every) out.push(t);
  return out;
}

function makeGeneric(spec: ScheduleSpec, sparsityAt: (s: number) => number, shouldPrune: (s: number) => boolean, finalSparsity: number, endStep: number, pruneSteps: (until: number) => number[]): PruningSchedule {
  const step = (s: number) => {
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new ScheduleError(`${spec.kind}: step must be a finite number (got ${String(s)})`, 'step');
    return s;
  };
  return Object.freeze({
    spec: Object.freeze({ ...spec }),
    sparsityAt: (s: number) => sparsityAt(step(s)),
    shouldPrune: (s: number) => shouldPrune(step(s)),
    finalSparsity,
    endStep,
    pruneSteps,
  });
}

export function createSchedule(spec: IterativeScheduleSpec): IterativeSchedule;
export function createSchedule(spec: ScheduleSpec): PruningSchedule;
export function createSchedule(spec: ScheduleSpec): PruningSchedule {
  if (spec === null || typeof spec !== 'object') throw new ScheduleError('schedule spec must be an object');
  switch (spec.kind) {
    case 'one-shot': {
      const k = spec.kind;
      const s = validateSparsity(k, 'sparsity', spec.sparsity);
      const at = checkInt(k, 'step', spec.step ?? 0);
      if (at < 0) throw new ScheduleError(`${k}: step should be >= 0 (got ${at})`, 'step');
      return makeGeneric(spec, (t) => (t >= at ? s : 0), (t) => t === at, s, at, (u) => (at <= u ? [at] : []));
    }
    case 'constant': {
      const k = spec.kind;
      const begin = spec.beginStep;
      const end = spec.endStep ?? -1;
      const freq = spec.frequency ?? 100;
      validateStep(k, begin, end, freq, true);
      const s = validateSparsity(k, 'targetSparsity', spec.targetSparsity);
      return makeGeneric(spec, () => s, (t) => tfmotShouldPrune(t, begin, end, freq), s, end, (u) => stepsBetween(begin, end, freq, u));
    }
    case 'polynomial-decay': {
      const k = spec.kind;
      const { beginStep: begin, endStep: end } = spec;
      const freq = spec.frequency ?? 100;
      const power = checkNumber(k, 'power', spec.power ?? 3);
      validateStep(k, begin, end, freq, false);
      const si = validateSparsity(k, 'initialSparsity', spec.initialSparsity);
      const sf = validateSparsity(k, 'finalSparsity', spec.finalSparsity);
      const sparsityAt = (t: number) => {
        // p = min(1, max(0, (step - begin) / (end - begin))). TF-MOT divides by zero when end == begin;
        // we define p = 1 from begin on (0 before), i.e. the final sparsity at the single pruning step.
        const p = end === begin ? (t >= begin ? 1 : 0) : Math.min(1, Math.max(0, (t - begin) / (end - begin)));
        if (p === 0) return si; // exact endpoints (same value as the formula up to rounding)
        if (p === 1 && power > 0) return sf;
        return (si - sf) * Math.pow(1 - p, power) + sf;
      };
      return makeGeneric(spec, sparsityAt, (t) => tfmotShouldPrune(t, begin, end, freq), sf, end, (u) => stepsBetween(begin, end, freq, u));
    }
    case 'agp': {
      const k = spec.kind;
      const t0 = checkInt(k, 'startStep', spec.startStep);
      const dt = checkInt(k, 'frequency', spec.frequency);
      const n = checkInt(k, 'numEvents', spec.numEvents);
      const power = checkNumber(k, 'power', spec.power ?? 3);
      if (t0 < 0) throw new ScheduleError(`${k}: startStep should be >= 0 (got ${t0})`, 'startStep');
      if (dt <= 0) throw new ScheduleError(`${k}: frequency should be > 0 (got ${dt})`, 'frequency');
      if (n < 1) throw new ScheduleError(`${k}: numEvents should be >= 1 (got ${n})`, 'numEvents');
      const si = validateSparsity(k, 'initialSparsity', spec.initialSparsity ?? 0);
      const sf = validateSparsity(k, 'finalSparsity', spec.finalSparsity);
      const end = t0 + n * dt;
      const sparsityAt = (t: number) => {
        // The latest event k <= t (clamped to [0, n]); the value is exact at event steps.
        const ev = Math.min(n, Math.max(0, Math.floor((t - t0) / dt)));
        return sf + (si - sf) * Math.pow(1 - ev / n, power);
      };
      return makeGeneric(spec, sparsityAt, (t) => t >= t0 && t <= end && (t - t0) % dt === 0, sf, end, (u) => stepsBetween(t0, end, dt, u));
    }
    case 'iterative': {
      const k = spec.kind;
      const rounds = checkInt(k, 'rounds', spec.rounds);
      if (rounds < 1) throw new ScheduleError(`${k}: rounds should be >= 1 (got ${rounds})`, 'rounds');
      const begin = checkInt(k, 'beginStep', spec.beginStep ?? 0);
      if (begin < 0) throw new ScheduleError(`${k}: beginStep should be >= 0 (got ${begin})`, 'beginStep');
      const freq = checkInt(k, 'frequency', spec.frequency);
      if (freq <= 0) throw new ScheduleError(`${k}: frequency should be > 0 (got ${freq})`, 'frequency');
      if ((spec.rate === undefined) === (spec.finalSparsity === undefined)) throw new ScheduleError(`${k}: give exactly one of rate and finalSparsity`, 'rate');
      let rate: number;
      if (spec.rate !== undefined) {
        rate = validateSparsity(k, 'rate', spec.rate);
      } else {
        const f = validateSparsity(k, 'finalSparsity', spec.finalSparsity);
        rate = 1 - Math.pow(1 - f, 1 / rounds);
      }
      const roundTargets = Object.freeze(Array.from({ length: rounds }, (_, r) => 1 - Math.pow(1 - rate, r + 1)));
      const roundSteps = Object.freeze(Array.from({ length: rounds }, (_, r) => begin + r * freq));
      const end = roundSteps[rounds - 1];
      const sparsityAt = (t: number) => {
        if (t < begin) return 0;
        const done = Math.min(rounds, Math.floor((t - begin) / freq) + 1);
        return roundTargets[done - 1];
      };
      const base = makeGeneric(spec, sparsityAt, (t) => t >= begin && t <= end && (t - begin) % freq === 0, roundTargets[rounds - 1], end, (u) => roundSteps.filter((s) => s <= u));
      return Object.freeze({ ...base, rate, roundTargets, roundSteps }) as IterativeSchedule;
    }
    default:
      throw new ScheduleError(`unknown schedule kind ${JSON.stringify((spec as { kind?: unknown }).kind)} (expected one of one-shot, constant, polynomial-decay, agp, iterative)`, 'kind');
  }
}
