/** Schema fragments shared by several stage kinds (one definition, reused by reference in code). */
import type { FromSchema } from 'json-schema-to-ts';

export const optimizerSchema = {
  type: 'object',
  description: 'Optimizer for training.',
  properties: {
    name: { enum: ['sgd', 'adam', 'adamw'], default: 'adam' },
    learningRate: { type: 'number', exclusiveMinimum: 0, default: 0.001 },
    momentum: { type: 'number', minimum: 0, maximum: 1, description: 'sgd: momentum (0 = plain SGD)' },
    nesterov: { type: 'boolean', description: 'sgd with momentum: Nesterov momentum' },
    weightDecay: { type: 'number', minimum: 0, description: 'sgd/adam: L2 penalty added to kernel gradients; adamw: decoupled decay of kernels (w -= lr*wd*w)' },
    beta1: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
    beta2: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
  },
  additionalProperties: false,
} as const;

export const lrScheduleSchema = {
  type: 'object',
  description: 'Learning-rate schedule over epochs.',
  properties: {
    kind: { enum: ['constant', 'step', 'cosine'] },
    stepSize: { type: 'integer', minimum: 1, description: 'step: epochs between decays (default 1)' },
    gamma: { type: 'number', exclusiveMinimum: 0, description: 'step: decay factor (default 0.1)' },
    minLearningRate: { type: 'number', minimum: 0, description: 'cosine: final learning rate' },
  },
  required: ['kind'],
  additionalProperties: false,
} as const;

export const earlyStoppingSchema = {
  type: 'object',
  properties: {
    patience: { type: 'integer', minimum: 1 },
    minDelta: { type: 'number', minimum: 0 },
    monitor: { enum: ['val_loss', 'val_accuracy'], description: 'default val_loss; without validation data the training loss (or accuracy) is monitored' },
    restoreBest: { type: 'boolean' },
  },
  required: ['patience'],
  additionalProperties: false,
} as const;

/** How a stage trains: baseline training, retraining, gradual pruning, fine-tuning. */
export const trainingSchema = {
  type: 'object',
  properties: {
    epochs: { type: 'integer', minimum: 1, maximum: 10000 },
    steps: { type: 'integer', minimum: 1, description: 'stop after this many optimizer steps' },
    batchSize: { type: 'integer', minimum: 1, maximum: 65536, default: 64 },
    optimizer: optimizerSchema,
    lrSchedule: lrScheduleSchema,
    earlyStopping: earlyStoppingSchema,
  },
  additionalProperties: false,
} as const;

/** The types of the blocks above, as the schema defines them (engine/train.ts and the stages use these). */
export type OptimizerBlock = FromSchema<typeof optimizerSchema, { keepDefaultedPropertiesOptional: true }>;
export type LrScheduleBlock = FromSchema<typeof lrScheduleSchema, { keepDefaultedPropertiesOptional: true }>;
export type EarlyStoppingBlock = FromSchema<typeof earlyStoppingSchema, { keepDefaultedPropertiesOptional: true }>;
export type TrainingBlock = FromSchema<typeof trainingSchema, { keepDefaultedPropertiesOptional: true }>;

export const dataRefSchema = {
  type: 'string',
  minLength: 1,
  description: 'Name of a dataset under the recipe\'s `data:`; may be omitted when the recipe declares exactly one.',
} as const;

/** A per-layer selector entry; kinds add their own per-layer settings next to these keys. */
export const selectorKeys = {
  match: { type: 'string', minLength: 1, description: 'layer name glob (`dense*`) or `re:<regex>`' },
  type: { type: 'string', minLength: 1, description: 'layer class, e.g. Dense, Conv2D, DepthwiseConv2D' },
  exclude: { type: 'boolean', description: 'leave matching layers alone' },
} as const;
