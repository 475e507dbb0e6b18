import type * as tfType from '@tensorflow/tfjs';
import { loadLiteRtRuntime, litertVersion, watchLiteRtErrors } from './litert.js';
import { createRequire } from 'node:module';
import { concatFloat32 } from '../../util/ndarray.js';

/** A loaded exported model that runs a batch of float samples and returns float outputs. */
export interface Runner {
  runtime: string;
  /** Runs `n` samples (row-major, per-sample shape `shape`); returns n * outSize values. */
  run(x: Float32Array, n: number, shape: number[]): Promise<Float32Array>;
  /** Whether run() accepts n > 1 in one call. */
  batched: boolean;
  dispose(): void;
}

const require = createRequire(import.meta.url);

/** Loads .tflite bytes in LiteRT (wasm, XNNPACK CPU). Rejects files the runtime cannot parse. */
export async function tfliteRunner(bytes: Uint8Array): Promise<Runner> {
  const litert = await loadLiteRtRuntime();
  let model: Awaited<ReturnType<typeof litert.loadAndCompile>>;
  const prepare = watchPrepare();
  try {
    model = await litert.loadAndCompile(bytes, { accelerator: 'wasm' });
  } catch (e) {
    prepare.stop();
    throw new Error(`LiteRT rejected the .tflite file: ${(e as Error).message}`);
  }
  let checked = false;
  return {
    runtime: `litert-wasm@${litertVersion()}`,
    batched: false,
    async run(x, n, shape) {
      const per = shape.reduce((a, b) => a * b, 1);
      const outs: Float32Array[] = [];
      for (let i = 0; i < n; i++) {
        const t = new litert.Tensor(x.slice(i * per, (i + 1) * per), [1, ...shape]);
        let res: Awaited<ReturnType<typeof model.run>>;
        try {
          res = await model.run([t]);
        } finally {
          if (!checked) {
            checked = true;
            prepare.check();
          }
        }
        outs.push(Float32Array.from(res[0].toTypedArray() as Float32Array));
        t.delete();
        for (const r of res) r.delete();
      }
      return concatFloat32(outs);
    },
    dispose() {
      model.delete();
    },
  };
}

/**
 * LiteRT reports a model it cannot prepare (e.g. a kernel that rejects the tensors' quantization) only as
 * "ERROR:" lines on the console and then returns whatever its output buffer holds. Its error lines are
 * watched from loading through the first run, and such a failure is thrown instead of compared.
 */
function watchPrepare(): { check(): void; stop(): void } {
  const seen: string[] = [];
  const stop = watchLiteRtErrors((line) => {
    if (/^ERROR:/.test(line)) seen.push(line);
    else process.stderr.write(line + '\n');
  });
  return {
    stop,
    check() {
      stop();
      if (seen.some((l) => /failed to prepare|Failed to allocate|failed to invoke/i.test(l))) {
        throw new Error(`LiteRT could not prepare the .tflite model: ${[...new Set(seen)].slice(0, 3).join('; ')}`);
      }
      for (const l of new Set(seen)) process.stderr.write(l + '\n');
    },
  };
}

type Ort = typeof import('onnxruntime-node');
let ortModule: Promise<Ort> | undefined;
function loadOrt(): Promise<Ort> {
  ortModule ??= import('onnxruntime-node');
  return ortModule;
}

export function ortVersion(): string {
  try {
    return (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Loads .onnx bytes in onnxruntime-node (CPU, graph optimisation 'extended', one thread). */
export async function onnxRunner(bytes: Uint8Array, optimizedModelFilePath?: string): Promise<Runner> {
  const ort = await loadOrt();
  let session: Awaited<ReturnType<typeof ort.InferenceSession.create>>;
  try {
    session = await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: 'extended',
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionProviders: ['cpu'],
      ...(optimizedModelFilePath ? { optimizedModelFilePath } : {}),
    });
  } catch (e) {
    throw new Error(`onnxruntime rejected the .onnx file: ${(e as Error).message}`);
  }
  const inName = session.inputNames[0];
  const outName = session.outputNames[0];
  return {
    runtime: `onnxruntime-node@${ortVersion()}`,
    batched: true,
    async run(x, n, shape) {
      // onnxruntime-node refuses a SharedArrayBuffer's view ('Invalid argument'): the run's datasets are shared between stage workers.
      const input = x.buffer instanceof SharedArrayBuffer ? x.slice() : x;
      const res = await session.run({ [inName]: new ort.Tensor('float32', input, [n, ...shape]) });
      return Float32Array.from(res[outName].data as Float32Array);
    },
    dispose() {
      void session.release();
    },
  };
}

/** A TF.js layers model (model.json + shard) in the current tfjs backend. */
export async function tfjsRunner(tf: typeof tfType, modelJson: { modelTopology: object; weightsManifest: Array<{ weights: tfType.io.WeightsManifestEntry[] }> }, shard: Uint8Array): Promise<Runner> {
  const specs = modelJson.weightsManifest.flatMap((g) => g.weights);
  const weightData = shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength) as ArrayBuffer;
  const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: modelJson.modelTopology, weightSpecs: specs, weightData }));
  return {
    runtime: `tfjs@${tf.version.tfjs}/${tf.getBackend()}`,
    batched: true,
    async run(x, n, shape) {
      const y = tf.tidy(() => model.predict(tf.tensor(x, [n, ...shape])) as tfType.Tensor);
      const d = Float32Array.from((await y.data()) as Float32Array);
      y.dispose();
      return d;
    },
    dispose() {
      model.dispose();
    },
  };
}
