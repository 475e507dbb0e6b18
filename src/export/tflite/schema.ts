/**
 * Hand-coded constants of the TFLite flatbuffer schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
 * A table field's vtable slot is its index in the schema; a union takes two (type, then value).
 */
export const FILE_IDENTIFIER = 'TFL3';
export const SCHEMA_VERSION = 3;

export const TensorType = { FLOAT32: 0, FLOAT16: 1, INT32: 2, UINT8: 3, INT64: 4, INT16: 7, INT8: 9, INT4: 17 } as const;

export const Op = {
  ADD: 0, AVERAGE_POOL_2D: 1, CONCATENATION: 2, CONV_2D: 3, DEPTHWISE_CONV_2D: 4, DEQUANTIZE: 6, FULLY_CONNECTED: 9,
  LOGISTIC: 14, MAX_POOL_2D: 17, MUL: 18, RELU: 19, RELU6: 21, RESHAPE: 22, SOFTMAX: 25, TANH: 28, PAD: 34, TRANSPOSE: 39, MEAN: 40,
  SUB: 41, MAXIMUM: 55, MINIMUM: 57, SLICE: 65, TRANSPOSE_CONV: 67, RSQRT: 76, REDUCE_MAX: 82, RESIZE_NEAREST_NEIGHBOR: 97, LEAKY_RELU: 98, ELU: 111,
  QUANTIZE: 114, HARD_SWISH: 117, DENSIFY: 124, GELU: 150,
} as const;

export const Options = {
  NONE: 0, Conv2DOptions: 1, DepthwiseConv2DOptions: 2, Pool2DOptions: 5, FullyConnectedOptions: 8, SoftmaxOptions: 9,
  ConcatenationOptions: 10, AddOptions: 11, ReshapeOptions: 17, MulOptions: 21, PadOptions: 22, TransposeOptions: 26, ReducerOptions: 27,
  SubOptions: 28, DequantizeOptions: 38, MaximumMinimumOptions: 39, SliceOptions: 48, TransposeConvOptions: 49, ResizeNearestNeighborOptions: 74, LeakyReluOptions: 75,
  QuantizeOptions: 89, HardSwishOptions: 91, GeluOptions: 116,
} as const;

export const Padding = { SAME: 0, VALID: 1 } as const;
export const FusedActivation = { NONE: 0, RELU: 1, RELU_N1_TO_1: 2, RELU6: 3, TANH: 4 } as const;

export const ModelSlot = { version: 0, operator_codes: 1, subgraphs: 2, description: 3, buffers: 4, numFields: 8 } as const;
export const SubGraphSlot = { tensors: 0, inputs: 1, outputs: 2, operators: 3, name: 4, numFields: 5 } as const;
export const TensorSlot = { shape: 0, type: 1, buffer: 2, name: 3, quantization: 4, is_variable: 5, sparsity: 6, numFields: 8 } as const;
export const QuantSlot = { min: 0, max: 1, scale: 2, zero_point: 3, quantized_dimension: 6, numFields: 7 } as const;
export const BufferSlot = { data: 0, numFields: 3 } as const;
export const OpCodeSlot = { deprecated_builtin_code: 0, custom_code: 1, version: 2, builtin_code: 3, numFields: 4 } as const;
export const OperatorSlot = { opcode_index: 0, inputs: 1, outputs: 2, builtin_options_type: 3, builtin_options: 4, numFields: 5 } as const;

/** Option table fields: [slot, kind, value]. */
export const Conv2DSlot = { padding: 0, stride_w: 1, stride_h: 2, fused_activation: 3, dilation_w: 4, dilation_h: 5, numFields: 6 } as const;
export const DepthwiseSlot = { padding: 0, stride_w: 1, stride_h: 2, depth_multiplier: 3, fused_activation: 4, dilation_w: 5, dilation_h: 6, numFields: 7 } as const;
export const TransposeConvSlot = { padding: 0, stride_w: 1, stride_h: 2, fused_activation: 3, numFields: 4 } as const;
export const Pool2DSlot = { padding: 0, stride_w: 1, stride_h: 2, filter_w: 3, filter_h: 4, fused_activation: 5, numFields: 6 } as const;
export const FullyConnectedSlot = { fused_activation: 0, weights_format: 1, keep_num_dims: 2, asymmetric_quantize_inputs: 3, numFields: 4 } as const;
export const SoftmaxSlot = { beta: 0, numFields: 1 } as const;
export const ConcatenationSlot = { axis: 0, fused_activation: 1, numFields: 2 } as const;
export const AddSlot = { fused_activation: 0, numFields: 2 } as const;
export const ReshapeSlot = { new_shape: 0, numFields: 1 } as const;
export const ReducerSlot = { keep_dims: 0, numFields: 1 } as const;
export const MulSlot = { fused_activation: 0, numFields: 1 } as const;
export const SubSlot = { fused_activation: 0, numFields: 2 } as const;
export const LeakyReluSlot = { alpha: 0, numFields: 1 } as const;
export const ResizeNearestSlot = { align_corners: 0, half_pixel_centers: 1, numFields: 2 } as const;
export const GeluSlot = { approximate: 0, numFields: 1 } as const;
