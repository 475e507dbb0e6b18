import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSchedule, ScheduleError, type ScheduleSpec } from '../src/prune/schedule.js';

const close = (a: number, b: number, eps = 1e-12) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test('polynomial-decay matches TF-MOT PolynomialDecay values and should-prune steps', () => {
  // PolynomialDecay(initial_sparsity=0.2, final_sparsity=0.8, begin_step=100, end_step=1100, power=3, frequency=100)
  const s = createSchedule({ kind: 'polynomial-decay', initialSparsity: 0.2, finalSparsity: 0.8, beginStep: 100, endStep: 1100 });
  // sparsity = 0.8 + (0.2 - 0.8) * (1 - clip((step - 100) / 1000, 0, 1))^3
  close(s.sparsityAt(0), 0.2); // p clipped to 0 before begin
  close(s.sparsityAt(100), 0.2);
  close(s.sparsityAt(350), 0.8 - 0.6 * 0.75 ** 3); // 0.546875
  close(s.sparsityAt(350), 0.546875);
  close(s.sparsityAt(600), 0.725);
  close(s.sparsityAt(1100), 0.8);
  close(s.sparsityAt(5000), 0.8); // clipped to 1
  assert.equal(s.finalSparsity, 0.8);
  assert.equal(s.endStep, 1100);
  const prune = [0, 99, 100, 150, 200, 600, 1000, 1100, 1101, 1200].filter((t) => s.shouldPrune(t));
  assert.deepEqual(prune, [100, 200, 600, 1000, 1100]); // [begin, end] inclusive, every 100 from begin
  assert.deepEqual(s.pruneSteps(10_000), [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100]);
});

test('polynomial-decay: end_step not on the frequency grid is never a pruning step; power is honoured', () => {
  const s = createSchedule({ kind: 'polynomial-decay', initialSparsity: 0, finalSparsity: 0.5, beginStep: 0, endStep: 250, frequency: 100, power: 1 });
  assert.deepEqual([0, 100, 200, 250, 300].map((t) => s.shouldPrune(t)), [true, true, true, false, false]);
  close(s.sparsityAt(125), 0.25); // linear
  close(s.sparsityAt(250), 0.5);
  // end == begin (allowed by TF-MOT's validation): final sparsity from begin on.
  const e = createSchedule({ kind: 'polynomial-decay', initialSparsity: 0.1, finalSparsity: 0.6, beginStep: 50, endStep: 50 });
  assert.equal(e.sparsityAt(49), 0.1);
  assert.equal(e.sparsityAt(50), 0.6);
  assert.deepEqual([49, 50, 150].map((t) => e.shouldPrune(t)), [false, true, false]);
});

test('constant matches TF-MOT ConstantSparsity', () => {
  const s = createSchedule({ kind: 'constant', targetSparsity: 0.5, beginStep: 10 }); // end_step=-1, frequency=100
  assert.equal(s.endStep, -1);
  assert.deepEqual([0, 9, 10, 50, 110, 1_000_010, 1_000_011].map((t) => s.shouldPrune(t)), [false, false, true, false, true, true, false]);
  assert.equal(s.sparsityAt(0), 0.5); // TF-MOT returns the constant at every step
  assert.equal(s.sparsityAt(12345), 0.5);
  assert.deepEqual(s.pruneSteps(350), [10, 110, 210, 310]);
  const b = createSchedule({ kind: 'constant', targetSparsity: 0.3, beginStep: 0, endStep: 200, frequency: 50 });
  assert.deepEqual([0, 50, 200, 250].map((t) => b.shouldPrune(t)), [true, true, true, false]);
});

test('one-shot', () => {
  const s = createSchedule({ kind: 'one-shot', sparsity: 0.75, step: 10 });
  assert.deepEqual([0, 9, 10, 11].map((t) => s.sparsityAt(t)), [0, 0, 0.75, 0.75]);
  assert.deepEqual([9, 10, 11].map((t) => s.shouldPrune(t)), [false, true, false]);
  assert.equal(createSchedule({ kind: 'one-shot', sparsity: 0.5 }).shouldPrune(0), true);
});

test('agp (Zhu & Gupta): values at t0 + kΔt, held in between', () => {
  const s = createSchedule({ kind: 'agp', initialSparsity: 0, finalSparsity: 0.9, startStep: 1000, frequency: 100, numEvents: 10 });
  close(s.sparsityAt(900), 0);
  close(s.sparsityAt(1000), 0);
  close(s.sparsityAt(1100), 0.9 - 0.9 * 0.9 ** 3); // 0.2439
  close(s.sparsityAt(1500), 0.7875);
  close(s.sparsityAt(1599), 0.7875); // held until the next event
  close(s.sparsityAt(2000), 0.9);
  close(s.sparsityAt(9999), 0.9);
  assert.equal(s.endStep, 2000);
  assert.deepEqual([999, 1000, 1050, 1100, 2000, 2100].map((t) => s.shouldPrune(t)), [false, true, false, true, true, false]);
  // At event steps AGP equals TF-MOT polynomial decay with end = t0 + nΔt.
  const p = createSchedule({ kind: 'polynomial-decay', initialSparsity: 0, finalSparsity: 0.9, beginStep: 1000, endStep: 2000 });
  for (const t of s.pruneSteps(3000)) close(s.sparsityAt(t), p.sparsityAt(t));
});

test('iterative: k% of the remaining weights per round', () => {
  const s = createSchedule({ kind: 'iterative', rate: 0.2, rounds: 3, frequency: 1000 });
  s.roundTargets.forEach((v, i) => close(v, [0.2, 0.36, 0.488][i]));
  assert.deepEqual(s.roundSteps, [0, 1000, 2000]);
  close(s.sparsityAt(0), 0.2);
  close(s.sparsityAt(999), 0.2);
  close(s.sparsityAt(1000), 0.36);
  close(s.sparsityAt(50_000), 0.488);
  close(s.finalSparsity, 0.488);
  assert.deepEqual([0, 500, 1000, 2000, 3000].map((t) => s.shouldPrune(t)), [true, false, true, true, false]);
  const f = createSchedule({ kind: 'iterative', finalSparsity: 0.488, rounds: 3, beginStep: 10, frequency: 5 });
  close(f.rate, 0.2, 1e-12);
  close(f.sparsityAt(9), 0);
  assert.equal(f.endStep, 20);
});

test('validation errors (TF-MOT _validate_step / _validate_sparsity)', () => {
  const bad: Array<[ScheduleSpec, RegExp]> = [
    [{ kind: 'constant', targetSparsity: 0.5, beginStep: -1 }, /beginStep should be >= 0/],
    [{ kind: 'polynomial-decay', initialSparsity: 0, finalSparsity: 0.5, beginStep: 0, endStep: -1 }, /endStep cannot be -1\./],
    [{ kind: 'constant', targetSparsity: 0.5, beginStep: 0, endStep: -2 }, /endStep can be -1 or >= 0/],
    [{ kind: 'polynomial-decay', initialSparsity: 0, finalSparsity: 0.5, beginStep: 10, endStep: 5 }, /beginStep should be <= endStep if endStep != -1/],
    [{ kind: 'constant', targetSparsity: 0.5, beginStep: 0, frequency: 0 }, /frequency should be > 0/],
    [{ kind: 'constant', targetSparsity: 1, beginStep: 0 }, /targetSparsity must be in range \[0,1\)/],
    [{ kind: 'polynomial-decay', initialSparsity: -0.1, finalSparsity: 0.5, beginStep: 0, endStep: 5 }, /initialSparsity must be in range \[0,1\)/],
    [{ kind: 'polynomial-decay', initialSparsity: 0, finalSparsity: 1.5, beginStep: 0, endStep: 5 }, /finalSparsity must be in range \[0,1\)/],
    [{ kind: 'polynomial-decay', initialSparsity: 0, finalSparsity: 0.5, beginStep: 0.5, endStep: 5 }, /beginStep must be an integer/],
    [{ kind: 'one-shot', sparsity: Number.NaN }, /sparsity must be a finite number/],
    [{ kind: 'agp', finalSparsity: 0.5, startStep: 0, frequency: 10, numEvents: 0 }, /numEvents should be >= 1/],
    [{ kind: 'iterative', rounds: 3, frequency: 10 }, /exactly one of rate and finalSparsity/],
    [{ kind: 'iterative', rate: 0.2, rounds: 0, frequency: 10 }, /rounds should be >= 1/],
    [{ kind: 'nope' } as unknown as ScheduleSpec, /unknown schedule kind "nope"/],
  ];
  for (const [spec, re] of bad) {
    assert.throws(() => createSchedule(spec), (e: unknown) => e instanceof ScheduleError && re.test(e.message), `${JSON.stringify(spec)} should throw ${re}`);
  }
  // Order of checks as in TF-MOT: step checks before sparsity checks.
  assert.throws(() => createSchedule({ kind: 'constant', targetSparsity: 2, beginStep: -1 }), /beginStep should be >= 0/);
});
