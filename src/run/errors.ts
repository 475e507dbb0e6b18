/** `--frozen`: the run would change the lock file (exit 2). */
export class FrozenLockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrozenLockError';
  }
}
