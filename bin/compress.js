#!/usr/bin/env node
import { main } from '../dist/src/cli.js';

// `compress plan | head` closes the pipe early: that is the reader's choice, not an error. The command
// still finishes, its further output dropped, and exits with its own code: `compress run --frozen | head`
// must not report success for a run it abandoned (no lock, no report, a failed gate's 3 lost).
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    stream.write = (_chunk, encoding, callback) => {
      (typeof encoding === 'function' ? encoding : callback)?.();
      return true;
    };
  });
}

process.exitCode = await main(process.argv.slice(2));
