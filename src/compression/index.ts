export * from './linear.js';
export * from './kmeans.js';
export * from './huffman.js';
export * from './size.js';
export * from './calibrate.js';
export * from './fakequant.js';
export * from './factorize.js';
export { modelGraph, runLayerByLayer, sampleBatch, sampleCount, isInputLayer } from './graph.js';
export type { ModelGraph, GraphStep, Samples } from './graph.js';
