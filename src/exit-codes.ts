/** The CLI's exit codes (documented in README and `compress --help`). */
export const EXIT = { ok: 0, stageFailed: 1, usage: 2, gateFailed: 3, cacheBusy: 75, interrupted: 130 } as const;

/** Signals a run stops on, each with the conventional exit code 128 + its number. */
export const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
export type StopSignal = keyof typeof SIGNAL_EXIT;

/** The signal an aborted run was stopped by (the AbortSignal's reason), SIGINT when it does not say. */
export function stopSignalOf(signal: AbortSignal | undefined): StopSignal {
  const r = signal?.reason as { stopSignal?: unknown } | undefined;
  return typeof r?.stopSignal === 'string' && r.stopSignal in SIGNAL_EXIT ? (r.stopSignal as StopSignal) : 'SIGINT';
}
