/** `--frozen`: the run would change the lock file (exit 2). */
export class FrozenLockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrozenLockError';
  }
}

/** `cache gc` / `cache clean` refused: a run that uses this cache is in progress (exit 75). */
export class CacheBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheBusyError';
  }
}
