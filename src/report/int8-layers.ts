import type { ReportJson } from './write.js';
import { barChart, esc } from './svg.js';

/**
 * report.html's per-layer int8 panel: for every int8 / dynamic-int8 export, the simulated SNR of each layer's
 * output against the float model (src/export/layer-error.ts), so a user sees which layer breaks int8.
 */
type Row = Record<string, unknown>;
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Below this SNR a layer's int8 output is marked as damaged in the panel. */
export const LOW_SNR_DB = 10;

export function int8LayersSection(r: ReportJson): string {
  const out: string[] = [];
  for (const s of r.stages.filter((x) => x.uses === 'export')) {
    const m = (s.metrics ?? {}) as Row;
    const exports = Array.isArray(m.exports) ? (m.exports as Row[]) : [m];
    for (const e of exports) {
      const layers = Array.isArray(e.layers) ? (e.layers as Row[]).filter((l) => num(l.snrDb) !== undefined) : [];
      if (!layers.length) continue;
      const label = `${s.id}: ${String(e.target)} ${String(e.precision)}`;
      const bars = layers.map((l) => ({
        label: String(l.layer),
        value: num(l.snrDb)!,
        text: `${num(l.snrDb)!.toFixed(1)} dB`,
        tip: `${String(l.layer)} (${String(l.op)})\nSNR ${num(l.snrDb)!.toFixed(1)} dB${num(l.snrDropDb) !== undefined ? ` (${num(l.snrDropDb)!.toFixed(1)} dB below its input)` : ''}, cosine ${num(l.cosine)?.toFixed(5) ?? '?'}${num(l.snrDb)! < LOW_SNR_DB ? '\nbelow 10 dB: int8 damages this layer' : ''}`,
      }));
      const chart = barChart(bars, { kind: 'layer-snr', title: `${label}: int8 SNR per layer`, xTitle: 'SNR vs float (dB, simulated; higher is better)', format: (v) => String(Math.round(v)), attrs: { 'data-stage': s.id } });
      const drop = num(e.worstLayerSnrDropDb) !== undefined ? `, ${num(e.worstLayerSnrDropDb)!.toFixed(1)} dB below its input` : '';
      const worst = typeof e.worstLayer === 'string' ? ` Most noise added: <code>${esc(e.worstLayer)}</code> (${num(e.worstLayerSnrDb)?.toFixed(1) ?? '?'} dB${drop}).` : '';
      const agree = num(e.confidentAgreement) !== undefined ? ` Agreement ${(num(e.agreement)! * 100).toFixed(2)}% top-1, ${(num(e.confidentAgreement)! * 100).toFixed(2)}% on the ${num(e.confidentSamples) ?? '?'} samples whose float margin exceeds the quantization noise; accuracy ${num(e.accuracyDelta)! >= 0 ? '+' : '−'}${Math.abs(num(e.accuracyDelta)! * 100).toFixed(2)} pp.` : '';
      out.push(`<h3>${esc(label)}</h3><figure>${chart}<figcaption>Each layer's output with the exported int8 weights and activation grids, against float, on test samples.${worst}${agree}</figcaption></figure>`);
    }
  }
  return out.length ? out.join('') : '<p class="empty">No int8 export reported per-layer errors.</p>';
}
