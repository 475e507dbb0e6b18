import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertSelected, noOpSelectorEntries, resolveLayerSettings, SelectorError, compileMatcher, type LayerInfo } from '../src/prune/selectors.js';
import { pruneStage } from '../src/stages/prune.js';
import { quantizeStage } from '../src/stages/quantize.js';

// lenet-5 / dw-cnn layer lists as built by src/engine/models.ts
const lenet5: LayerInfo[] = [
  { name: 'input', className: 'InputLayer' },
  { name: 'conv_1', className: 'Conv2D' },
  { name: 'pool_1', className: 'MaxPooling2D' },
  { name: 'conv_2', className: 'Conv2D' },
  { name: 'pool_2', className: 'MaxPooling2D' },
  { name: 'flatten', className: 'Flatten' },
  { name: 'dense_1', className: 'Dense' },
  { name: 'dense_2', className: 'Dense' },
];
const dw: LayerInfo[] = [
  { name: 'stem_conv', className: 'Conv2D' },
  { name: 'stem_bn', className: 'BatchNormalization' },
  { name: 'block_1_dw', className: 'DepthwiseConv2D' },
  { name: 'block_1_pw', className: 'Conv2D' },
  { name: 'block_2_dw', className: 'DepthwiseConv2D' },
  { name: 'block_2_pw', className: 'Conv2D' },
  { name: 'classifier', className: 'Dense' },
];

interface P {
  sparsity: number;
  method: string;
}
const D: P = { sparsity: 0.5, method: 'magnitude' };
const obj = (m: Map<string, P>) => Object.fromEntries(m);

test('defaults apply to every prunable layer only, in model order', () => {
  const r = resolveLayerSettings<P>(lenet5, [], D);
  assert.deepEqual([...r.keys()], ['conv_1', 'conv_2', 'dense_1', 'dense_2']);
  assert.deepEqual(r.get('conv_1'), D);
  assert.notEqual(r.get('conv_1'), D); // a copy
});

test('glob, regex, type, override order and exclude', () => {
  const r = resolveLayerSettings<P>(lenet5, [
    { match: 'dense*', sparsity: 0.9 },
    { match: 'conv_?', method: 'structured' },
    { match: 're:conv_[2-9]', sparsity: 0.7 },
    { match: 'dense_2', exclude: true },
  ], D);
  assert.deepEqual(obj(r), {
    conv_1: { sparsity: 0.5, method: 'structured' },
    conv_2: { sparsity: 0.7, method: 'structured' },
    dense_1: { sparsity: 0.9, method: 'magnitude' },
  });
  // type selector (tfjs className) and match+type conjunction
  const t = resolveLayerSettings<P>(dw, [{ type: 'DepthwiseConv2D', exclude: true }, { type: ['Conv2D', 'Dense'], match: 'block_*', sparsity: 0.8 }], D);
  assert.deepEqual(obj(t), { stem_conv: D, block_1_pw: { ...D, sparsity: 0.8 }, block_2_pw: { ...D, sparsity: 0.8 }, classifier: D });
  // a later entry brings an excluded layer back (starting from defaults)
  const only = resolveLayerSettings<P>(lenet5, [{ match: '*', exclude: true }, { match: 'dense_1', sparsity: 0.95 }], D);
  assert.deepEqual(obj(only), { dense_1: { ...D, sparsity: 0.95 } });
  // undefined fields do not override; reserved keys are not copied
  const u = resolveLayerSettings<P>(lenet5, [{ match: 'conv_1', sparsity: undefined, method: 'n:m' }], D);
  assert.deepEqual(u.get('conv_1'), { sparsity: 0.5, method: 'n:m' });
});

test('regex must match the whole name; glob character classes', () => {
  assert.equal(compileMatcher('re:conv').test('conv_1'), false);
  assert.equal(compileMatcher('re:conv.*').test('conv_1'), true);
  assert.equal(compileMatcher('block_[12]_pw').test('block_2_pw'), true);
  assert.equal(compileMatcher('block_[!12]_pw').test('block_2_pw'), false);
  assert.equal(compileMatcher('a.b').test('axb'), false); // '.' is literal in globs
  assert.equal(compileMatcher('dense*').test('dense_1'), true);
});

test('a selector matching nothing throws SelectorError listing the layers and their types', () => {
  assert.throws(
    () => resolveLayerSettings<P>(lenet5, [{ match: 'dense*' }, { match: 'fc_*', sparsity: 0.9 }], D),
    (e: unknown) => {
      assert.ok(e instanceof SelectorError);
      assert.equal(e.entryIndex, 1);
      assert.match(e.message, /selector entry #1 \{ match: "fc_\*" \} matches no layer/);
      for (const l of lenet5) assert.ok(e.message.includes(`${l.name} (${l.className})`), l.name);
      assert.match(e.message, /flatten \(Flatten\) \[not selectable\]/);
      return true;
    },
  );
  // a non-prunable layer is not selectable; a missing type neither
  assert.throws(() => resolveLayerSettings<P>(lenet5, [{ match: 'flatten' }], D), SelectorError);
  assert.throws(() => resolveLayerSettings<P>(lenet5, [{ type: 'DepthwiseConv2D', exclude: true }], D), /matches no layer/);
  // quantization-style reuse: all classes considered
  const all = resolveLayerSettings<{ bits: number }>(lenet5, [{ match: 'flatten', bits: 4 }], { bits: 8 }, { classes: 'all' });
  assert.equal(all.get('flatten')?.bits, 4);
  assert.equal(all.size, lenet5.length);
});

test('a stage that would select no layer fails naming why and listing the layers', () => {
  const layers = [{ name: 'input', className: 'InputLayer' }, { name: 'sequential_1', className: 'Sequential' }];
  assert.throws(() => assertSelected('q', 'quantize', new Map(), layers), /stage 'q': no layer to quantize: the model has no Dense, Conv2D, GroupedConv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose layer; the model's layers are: input \(InputLayer\) \[not selectable\], sequential_1 \(Sequential\) \[not selectable\]/);
  assert.doesNotThrow(() => assertSelected('q', 'quantize', new Map([['d', {}]]), [{ name: 'd', className: 'Dense' }]));
});

test('entries that only select, at the start of the list, choose the layers the stage acts on', () => {
  type P = { sparsity: number };
  const r = resolveLayerSettings<P>(lenet5, [{ match: 'conv_*' }, { match: 'conv_2', sparsity: 0.3 }] as never, { sparsity: 0.5 });
  assert.deepEqual([...r.entries()], [['conv_1', { sparsity: 0.5 }], ['conv_2', { sparsity: 0.3 }]]);
  assert.deepEqual([...resolveLayerSettings<P>(lenet5, [{ type: 'Dense' }, { match: 'conv_1' }] as never, { sparsity: 0.5 }).keys()], ['conv_1', ...lenet5.filter((l) => l.className === 'Dense').map((l) => l.name)]);
  // A setting first: every layer takes part, as before.
  assert.equal(resolveLayerSettings<P>(lenet5, [{ match: 'conv_1', sparsity: 0.3 }] as never, { sparsity: 0.5 }).size, lenet5.filter((l) => ['Conv2D', 'Dense'].includes(l.className)).length);
});

test('an entry that only selects after the list has started setting things changes nothing, and validate says so where it stands', () => {
  const stage = { id: 's', needs: [] };
  const issues = pruneStage.check!({ method: 'magnitude', sparsity: 0.5, layers: [{ match: 'conv_1', sparsity: 0.3 }, { match: 're:dense.*' }] } as never, stage);
  assert.deepEqual(issues.map((i) => i.path), [['with', 'layers', 1]]);
  assert.match(issues[0].message, /sets nothing and brings back no excluded layer: it changes nothing/);
  assert.equal(quantizeStage.check!({ default: { method: 'linear', bits: 8 }, layers: [{ match: 'a', bits: 4 }, { type: 'Dense' }] } as never, stage).length, 1);
  assert.deepEqual(noOpSelectorEntries([{ match: 'conv_*' }, { type: 'Dense' }]), [], 'leading entries select');
  assert.deepEqual(noOpSelectorEntries([{ match: '*', exclude: true }, { match: 'conv_1' }]), [], 'after an exclude it brings layers back');
});

test("a selector error on a big model lists its first 40 layers and says how to list them all", () => {
  const many: LayerInfo[] = Array.from({ length: 186 }, (_, i) => ({ name: `features.${i}.conv`, className: 'Conv2D' }));
  assert.throws(() => resolveLayerSettings(many, [{ match: 'nope' }] as never, {}), (e: unknown) => {
    const m = (e as Error).message;
    return m.includes('features.39.conv (Conv2D), ... and 146 more (`compress layers <model or stage>` lists them all)') && !m.includes('features.40.conv') && m.length < 2000;
  });
});

test('a re: selector that matches only inside layer names says patterns are anchored and how to match inside', () => {
  assert.throws(() => resolveLayerSettings(lenet5, [{ match: 're:conv' }] as never, {}), /matches no layer.*re: patterns match the whole layer name \(anchored\): write re:\.\*conv\.\* to match inside names/);
  assert.throws(() => resolveLayerSettings(lenet5, [{ match: 're:nothing_like_it' }] as never, {}), (e: Error) => !/anchored/.test(e.message));
});
