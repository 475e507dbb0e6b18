/**
 * Messages of the engine's own failures, which name nothing the user can act on ("Aborted(). Build
 * with -sASSERTIONS for more info.", tfjs's gradient refusals), rewritten to say what happened and what to change. One table entry
 * per known failure; the original text stays at the end of the message.
 */
const ENGINE_FAILURES: ReadonlyArray<{ pattern: RegExp; explain: string }> = [
  {
    // Emscripten's abort() when an allocation cannot grow the 4 GB wasm heap (tfjs-wasm's registerTensor).
    pattern: /^Aborted\(\)|Cannot enlarge memory|Out of memory|memory access out of bounds/i,
    explain:
      "the wasm engine ran out of memory (a wasm heap holds at most 4 GB): lower the stage's batch size (train.batchSize for training stages), use smaller inputs, or a smaller model",
  },
  {
    // tfjs's own gradients (the cpu backend, and webgl) refuse dilated convolutions; compress registers them for wasm.
    pattern: /dilation rates greater than 1 are not yet supported/i,
    explain: "this backend has no gradient for dilated convolutions (a tfjs limitation), so a model with one cannot train on it: use --backend wasm (compress's kernels train them) or the default auto",
  },
];

/** The message for a stage's failure: the engine's known failures explained, others as they are. */
export function explainEngineFailure(message: string): string {
  const known = ENGINE_FAILURES.find((f) => f.pattern.test(message));
  return known ? `${known.explain} (engine: ${message.split('\n')[0].trim()})` : message;
}
