/**
 * How an export's outputs compare with the float model's, beyond top-1 agreement: a quantized model
 * flips the prediction of samples the float model was unsure of (top-1 / top-2 margin within the
 * quantization noise) without being damaged. So besides plain agreement this reports:
 *
 *   noise               RMS of (export − reference) over each sample's two largest reference outputs, the
 *                       values its prediction depends on: the quantization noise level (over every output, the
 *                       near-zero ones of a 1000-class model dilute it ~20x, and flips within the noise fail the gate)
 *   confidentAgreement  agreement on the samples whose float margin exceeds 3·√2·noise (a flip there needs a
 *                       3-sigma error in the difference of two outputs) and float32 rounding (TIE_RELATIVE of
 *                       the sample's top output: a tie to ~20 bits is decided by the order of additions, which
 *                       differs between any two runtimes): what real damage changes
 *   accuracyDelta       export accuracy − reference accuracy on the labels
 *   flippedMaxMargin    the largest float margin among the disagreements
 */
export interface AgreementReport {
  /** Samples compared. */
  samples: number;
  agreement: number;
  confidentAgreement: number;
  confidentSamples: number;
  noise: number;
  referenceAccuracy: number;
  accuracy: number;
  accuracyDelta: number;
  flippedMaxMargin: number;
  maxAbsDiff: number;
}

/** How many sigmas of the margin's noise a confident sample's margin exceeds. */
export const CONFIDENT_SIGMAS = 3;
/** A margin within this fraction of the sample's top output is a float32 rounding tie, never confident. */
export const TIE_RELATIVE = 2 ** -20;

function top2(a: Float32Array, off: number, k: number): [number, number] {
  let best = 0;
  let second = k > 1 ? 1 : 0;
  if (k > 1 && a[off + 1] > a[off]) [best, second] = [1, 0];
  for (let j = 2; j < k; j++) {
    if (a[off + j] > a[off + best]) [best, second] = [j, best];
    else if (a[off + j] > a[off + second]) second = j;
  }
  return [best, second];
}

/** RMS of (out − ref) over each sample's two largest reference outputs (its one output when k is 1). */
function topTwoNoise(ref: Float32Array, out: Float32Array, n: number, k: number): number {
  let sq = 0;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const [a, a2] = top2(ref, i * k, k);
    for (const j of a === a2 ? [a] : [a, a2]) {
      const d = out[i * k + j] - ref[i * k + j];
      sq += d * d;
      count++;
    }
  }
  return count ? Math.sqrt(sq / count) : 0;
}

/** Compares n samples of k outputs each (row-major) with the reference, and the labels. */
export function compareOutputs(ref: Float32Array, out: Float32Array, labels: ArrayLike<number>, n: number): AgreementReport {
  const k = n ? ref.length / n : 0;
  let maxAbsDiff = 0;
  for (let i = 0; i < ref.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(out[i] - ref[i]));
  const noise = topTwoNoise(ref, out, n, k);
  const bound = CONFIDENT_SIGMAS * Math.SQRT2 * noise;
  let agree = 0;
  let confident = 0;
  let confidentAgree = 0;
  let refCorrect = 0;
  let correct = 0;
  let flippedMaxMargin = 0;
  for (let i = 0; i < n; i++) {
    const [a, a2] = top2(ref, i * k, k);
    const [b] = top2(out, i * k, k);
    const margin = ref[i * k + a] - ref[i * k + a2];
    if (a === b) agree++;
    else flippedMaxMargin = Math.max(flippedMaxMargin, margin);
    if (margin > bound && margin > TIE_RELATIVE * Math.abs(ref[i * k + a])) {
      confident++;
      if (a === b) confidentAgree++;
    }
    if (a === labels[i]) refCorrect++;
    if (b === labels[i]) correct++;
  }
  const frac = (x: number, of: number) => (of ? x / of : 1);
  return {
    samples: n,
    agreement: frac(agree, n),
    confidentAgreement: frac(confidentAgree, confident),
    confidentSamples: confident,
    noise,
    referenceAccuracy: frac(refCorrect, n),
    accuracy: frac(correct, n),
    accuracyDelta: frac(correct, n) - frac(refCorrect, n),
    flippedMaxMargin,
    maxAbsDiff,
  };
}

export interface AgreementGate {
  /** Explicit minimum top-1 agreement (the recipe's `threshold`): checked instead of the default gate. */
  threshold?: number;
  /** Default gate: minimum agreement on confident samples, and the largest accuracy loss, in points of 1. */
  confidentThreshold: number;
  maxAccuracyDrop: number;
}

/** Why the export fails its gate, or undefined when it passes. */
export function gateFailure(r: AgreementReport, gate: AgreementGate): string | undefined {
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  if (gate.threshold !== undefined) {
    return r.agreement < gate.threshold ? `top-1 agreement ${pct(r.agreement)} is below the threshold ${pct(gate.threshold)}` : undefined;
  }
  if (r.confidentAgreement < gate.confidentThreshold) {
    return `agreement on the ${r.confidentSamples} samples whose float margin exceeds the quantization noise is ${pct(r.confidentAgreement)} (minimum ${pct(gate.confidentThreshold)}; top-1 agreement ${pct(r.agreement)})`;
  }
  // On a small test set one sample is more than the bound (1 of 50 is 2 points): one sample's loss is always allowed.
  const oneSample = r.samples > 0 ? 1 / r.samples : 0;
  if (-r.accuracyDelta > Math.max(gate.maxAccuracyDrop, oneSample) + 1e-12) {
    const floor = oneSample > gate.maxAccuracyDrop ? `; one sample of ${r.samples} would be allowed` : '';
    return `accuracy drops by ${(-r.accuracyDelta * 100).toFixed(2)} points (at most ${(gate.maxAccuracyDrop * 100).toFixed(2)} allowed${floor})`;
  }
  return undefined;
}
