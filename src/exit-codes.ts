/** The CLI's exit codes (documented in README and `compress --help`). */
export const EXIT = { ok: 0, stageFailed: 1, usage: 2, gateFailed: 3, interrupted: 130 } as const;
