import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import vm from 'node:vm';

/**
 * Loads Google's LiteRT (TFLite) wasm runtime from `@litertjs/core` inside Node. The package is
 * written for browsers and workers: its loader calls `importScripts(url)` and then reads
 * `self.ModuleFactory`, and the Emscripten glue wants `require` and `__dirname` in global scope
 * (it takes the Node path once it sees `process.versions.node`).
 */
type LiteRtModule = typeof import('@litertjs/core');

const require = createRequire(import.meta.url);
let errorListener: ((line: string) => void) | undefined;

/**
 * Routes the runtime's error lines to `fn` until the returned function is called. The Emscripten glue binds
 * console.error once, when it loads: it is given a forwarder that reads this listener.
 */
export function watchLiteRtErrors(fn: (line: string) => void): () => void {
  errorListener = fn;
  return () => {
    if (errorListener === fn) errorListener = undefined;
  };
}

let loading: Promise<LiteRtModule> | undefined;

export function litertWasmDir(): string {
  return join(dirname(require.resolve('@litertjs/core/package.json')), 'wasm');
}

export function litertVersion(): string {
  return (require('@litertjs/core/package.json') as { version: string }).version;
}

export function loadLiteRtRuntime(): Promise<LiteRtModule> {
  if (!loading) {
    loading = (async () => {
      const g = globalThis as Record<string, unknown>;
      const wasmDir = litertWasmDir();
      if (g.self === undefined) g.self = globalThis;
      if (g.require === undefined) g.require = require;
      if (g.__dirname === undefined) g.__dirname = wasmDir;
      const hadImportScripts = g.importScripts !== undefined;
      if (!hadImportScripts) {
        g.importScripts = (url: string) => {
          const file = url.startsWith('file://') ? new URL(url).pathname : url;
          vm.runInThisContext(readFileSync(file, 'utf8'), { filename: file });
        };
      }
      const litert = await import('@litertjs/core');
      // Silence the runtime's INFO lines and its WebGPU probe while it starts.
      const { log, warn, info, error } = console;
      console.log = console.warn = console.info = () => {};
      console.error = (...a: unknown[]) => (errorListener ? errorListener(a.map(String).join(' ')) : error(...a));
      try {
        await litert.loadLiteRt(wasmDir + '/');
      } finally {
        console.log = log;
        console.warn = warn;
        console.info = info;
        console.error = error;
      }
      return litert;
    })();
    loading.catch(() => {
      loading = undefined;
    });
  }
  return loading;
}
