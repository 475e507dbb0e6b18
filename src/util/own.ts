/**
 * Dictionaries keyed by user input (recipe keys, `matrix:` paths, layer and tensor names from model
 * files, file paths, stage ids) are written only through these helpers: a plain `obj[key] = v` with
 * key `__proto__` replaces the object's prototype (or, through `o.__proto__.x = v`, Object.prototype
 * itself). test/own-keys.test.ts fails on any other computed-key assignment in the directories that
 * handle user keys.
 */

/** Sets an own, enumerable property, whatever the key (`__proto__` included). */
export function setOwn(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** The own property `key` of `obj`, never an inherited one (`constructor`, `__proto__`, `toString`). */
export function getOwn(obj: unknown, key: string): unknown {
  return obj !== null && typeof obj === 'object' && Object.hasOwn(obj, key) ? (obj as Record<string, unknown>)[key] : undefined;
}

/** Keys that name Object.prototype's machinery rather than data: refused wherever users name object paths. */
export const RESERVED_KEYS: ReadonlySet<string> = new Set(['__proto__']);
