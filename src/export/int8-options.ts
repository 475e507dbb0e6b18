import type { FromSchema } from 'json-schema-to-ts';
import { CALIBRATION_METHODS } from '../compression/calibrate.js';

/** The `int8` options of an export (what ./int8-prep.ts does with them is described there). */
export const int8OptionsSchema = {
  type: 'object',
  description: 'full-int8 exports: how activation ranges are estimated and how the float graph is prepared for int8',
  properties: {
    calibration: {
      type: 'object',
      properties: {
        method: {
          enum: [...CALIBRATION_METHODS, 'auto'],
          default: 'auto',
          description: 'activation ranges: minmax, percentile, mse (least int8 rounding + clipping error), kl (entropy), auto (per tensor the one with the least int8 error; logits and output keep minmax)',
        },
        percentile: { type: 'number', exclusiveMinimum: 50, maximum: 100, default: 99.99, description: 'for method percentile' },
      },
      additionalProperties: false,
    },
    equalization: {
      type: 'boolean',
      description: 'cross-layer equalization of conv/depthwise pairs (ReLU/ReLU6 aware), before ranges are estimated; default on for per-tensor weights (perChannel: false), off for per-channel (no gain measured there)',
    },
    biasCorrection: { type: 'boolean', default: true, description: 'empirical bias correction of the int8 error of each conv/dense layer' },
  },
  additionalProperties: false,
} as const;

export type Int8Options = FromSchema<typeof int8OptionsSchema, { keepDefaultedPropertiesOptional: true }>;

