/**
 * The pthread worker of tfjs-backend-wasm's threaded SIMD build, runnable under Node's worker_threads.
 * tfjs hands Emscripten a blob: URL for this worker and a Blob for the main script; worker_threads
 * cannot start from a blob: URL nor read a Blob synchronously, so compress starts this file instead
 * (src/engine/threads.ts) and here every object URL resolves to the same main script on disk (the
 * package's wasm-out/tfjs-backend-wasm-threaded-simd.js, the build the Blob was made from). The rest
 * is tfjs's own worker code, run as the CommonJS module it was written as.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const wasmOut = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js'));
const mainScript = join(wasmOut, 'tfjs-backend-wasm-threaded-simd.js');
const { wasmWorkerContents } = require(join(wasmOut, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };

URL.createObjectURL = () => mainScript;
URL.revokeObjectURL = () => undefined;
// tfjs escapes the newlines of this text before putting it in a Blob; the same is needed here.
new Function('require', '__filename', wasmWorkerContents.replace(/\n/g, '\\n'))(require, fileURLToPath(import.meta.url));
