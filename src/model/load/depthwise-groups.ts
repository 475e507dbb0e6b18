import type * as tfType from '@tensorflow/tfjs';
import { layerFromConfig, rebuildModel } from '../rebuild.js';

/**
 * A Keras Conv2D whose groups equal its input channels is a depthwise convolution (keras.applications ConvNeXt
 * writes its 7x7 depthwise convs as `Conv2D(filters=C, kernel_size=7, groups=C)`): loaded as a GroupedConv2D it
 * would run as C one-channel convs. Such layers become DepthwiseConv2D (depth multiplier filters / C; the
 * kernel [kh, kw, 1, C*M] is the depthwise kernel [kh, kw, C, M] in the same order), so every stage, kernel and
 * export treats them as the depthwise convs they are. A dilated one stays grouped (tfjs-layers' DepthwiseConv2D
 * ignores its dilation). Returns the model itself when there is nothing to change, else a rebuilt model (the
 * input model is disposed).
 */
export function depthwiseFromGroups(tf: typeof tfType, model: tfType.LayersModel): tfType.LayersModel {
  const depthwise = new Set(model.layers.filter(isDepthwise).map((l) => l.name));
  if (depthwise.size === 0) return model;
  const rebuilt = rebuildModel(tf, model, (layer, input) => {
    if (!depthwise.has(layer.name)) return undefined;
    const cfg = layer.getConfig();
    const channels = inputChannels(layer);
    const dw = layerFromConfig(tf, 'DepthwiseConv2D', {
      name: layer.name, trainable: cfg.trainable, kernelSize: cfg.kernelSize, strides: cfg.strides, padding: cfg.padding,
      dataFormat: cfg.dataFormat, dilationRate: cfg.dilationRate, activation: cfg.activation, useBias: cfg.useBias,
      depthMultiplier: (cfg.filters as number) / channels,
    }, layer.name);
    const out = dw.apply(input) as tfType.SymbolicTensor;
    return {
      outputs: [out],
      setWeights: () => {
        const [kernel, ...rest] = layer.getWeights();
        const [kh, kw, , filters] = kernel.shape;
        dw.setWeights([kernel.reshape([kh, kw, channels, filters / channels]), ...rest]);
      },
    };
  });
  model.dispose();
  return rebuilt;
}

function inputChannels(layer: tfType.layers.Layer): number {
  const shape = layer.inputSpec?.[0]?.axes?.[3] ?? (layer.input as tfType.SymbolicTensor).shape[3];
  return Number(shape);
}

function isDepthwise(layer: tfType.layers.Layer): boolean {
  if (layer.getClassName() !== 'GroupedConv2D') return false;
  const cfg = layer.getConfig();
  const dilation = ([] as number[]).concat(cfg.dilationRate as number | number[]);
  return cfg.groups === inputChannels(layer) && dilation.every((d) => d === 1) && (cfg.dataFormat ?? 'channelsLast') === 'channelsLast';
}
