import { Op, TensorType } from './schema.js';

/**
 * Operator versions from TFLite's rules (tensorflow/lite/tools/versioning/op_version.cc,
 * GetBuiltinOperatorVersion, with the signature facts op_signature.cc derives from the tensors). A runtime
 * refuses an operator whose version it does not know, and runs a kernel variant chosen by that version, so
 * a file must carry the version its tensors call for: e.g. dynamic-range FULLY_CONNECTED with per-channel
 * weights is 12, not 3 (older runtimes would read per-tensor scales).
 *
 * One entry per op: the rules in op_version.cc's order, the first that matches wins; ops without an entry
 * are version 1.
 */
export interface OpSignature {
  /** Type of input 0 (the activation), of input 1 (the weight / second operand) and of output 0. */
  input: number;
  weight?: number;
  output: number;
  inputCount: number;
  /** Rank of input 0, batch included. */
  inputRank: number;
  /** Input 1 (or, for DEQUANTIZE / QUANTIZE, input 0) has one scale per channel. */
  perChannel: boolean;
  /** Input 1 carries `Tensor.sparsity`. */
  sparseWeight: boolean;
  /** FullyConnectedOptions.asymmetric_quantize_inputs / keep_num_dims. */
  asymmetricInputs: boolean;
  keepNumDims: boolean;
  /** CONV_2D whose filter has fewer input channels than its input (a grouped convolution). */
  grouped?: boolean;
  /** Depthwise dilation other than 1. */
  dilated: boolean;
  /** A fused activation other than NONE (TRANSPOSE_CONV reads it for its version). */
  fusedActivation?: boolean;
}

type Rule = [version: number, when: (s: OpSignature) => boolean];

const { FLOAT32: F32, FLOAT16: F16, INT8: I8, INT16: I16, INT4: I4 } = TensorType;
const hybrid = (s: OpSignature) => s.input === F32 && s.weight === I8 && s.output === F32;
const int8In = (s: OpSignature) => s.input === I8;
const int16In = (s: OpSignature) => s.input === I16;
/** SOFTMAX, MEAN, RELU6 and similar: int16 3, int8 2. */
const BY_INPUT_16_8: Rule[] = [[3, int16In], [2, int8In]];

export const OP_VERSION_RULES: Partial<Record<number, Rule[]>> = {
  [Op.CONV_2D]: [
    [6, (s) => !!s.grouped],
    [4, (s) => s.input === I16 && s.weight === I16],
    [3, (s) => s.input === I8 && s.weight === I8 && s.output === I8],
    [7, (s) => s.input === I8 && s.weight === I4 && s.output === I8],
    [5, (s) => hybrid(s) && s.perChannel],
    [2, hybrid],
  ],
  [Op.DEPTHWISE_CONV_2D]: [
    [5, (s) => s.input === I16 && s.weight === I16],
    [6, (s) => hybrid(s) && s.perChannel],
    [4, hybrid],
    [3, (s) => s.input === I8 && s.weight === I8 && s.output === I8],
    [7, (s) => s.input === I8 && s.weight === I4 && s.output === I8],
    [2, (s) => s.dilated],
  ],
  [Op.FULLY_CONNECTED]: [
    [13, (s) => s.input === I16 && s.weight === I4 && s.output === I16],
    [12, (s) => hybrid(s) && s.perChannel],
    [8, (s) => s.sparseWeight],
    [7, (s) => s.input === I16 && s.weight === I16 && s.output === I16],
    [6, (s) => s.inputCount === 2],
    [5, (s) => s.keepNumDims],
    [4, (s) => s.input === I8 && s.weight === I8 && s.output === I8],
    [10, (s) => s.input === I8 && s.weight === I4 && s.output === I8],
    [9, (s) => hybrid(s) && s.asymmetricInputs],
    [3, hybrid],
  ],
  // Input 0 is the output shape; 1 the weights, 2 the activation, 3 the optional bias.
  [Op.TRANSPOSE_CONV]: [
    [4, (s) => !!s.fusedActivation],
    [3, (s) => s.inputCount === 4],
    [2, (s) => s.weight === I8],
  ],
  [Op.DEQUANTIZE]: [
    [6, (s) => s.input === I4],
    [3, (s) => s.input === I16 || s.input === F16],
    [5, (s) => s.input === I8 && s.perChannel],
    [2, (s) => s.input === I8],
  ],
  [Op.QUANTIZE]: [
    [4, (s) => s.input === I4 || s.output === I4],
    [3, (s) => s.perChannel],
    [2, (s) => s.output === I16],
  ],
  [Op.MAX_POOL_2D]: [[3, (s) => s.input === I16 && s.output === I16], [2, int8In]],
  [Op.AVERAGE_POOL_2D]: [[3, (s) => s.input === I16 && s.output === I16], [2, int8In]],
  [Op.ADD]: [[2, int8In]],
  [Op.CONCATENATION]: BY_INPUT_16_8,
  [Op.SOFTMAX]: BY_INPUT_16_8,
  [Op.MEAN]: BY_INPUT_16_8,
  [Op.RELU6]: BY_INPUT_16_8,
  [Op.RELU]: [[3, int16In], [2, (s) => s.input === I8 || s.input === TensorType.UINT8]],
  [Op.LOGISTIC]: [[3, (s) => s.input === I16 && s.output === I16], [2, int8In]],
  [Op.TANH]: [[3, (s) => s.input === I16 && s.output === I16], [2, int8In]],
  // (bool, string and uint32 inputs, which compress never writes, are left out)
  [Op.TRANSPOSE]: [[6, (s) => s.inputRank > 5], [5, int16In], [4, (s) => s.inputRank > 4], [2, int8In]],
  [Op.SLICE]: [[5, (s) => s.inputRank > 4], [4, int16In], [2, int8In]],
};

/** The version TFLite's rules give `code` with this signature (1 for ops without rules). */
export function opVersion(code: number, sig: OpSignature): number {
  for (const [version, when] of OP_VERSION_RULES[code] ?? []) if (when(sig)) return version;
  return 1;
}
