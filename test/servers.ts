/**
 * Real servers for the remote-cache tests, started on loopback by the tests themselves: s3rver (an
 * S3-compatible server, npm) in a child process on a random port with a mkdtemp data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createServer, type AddressInfo } from 'node:net';
import { ROOT } from './helpers.js';

export const BUCKET = 'compress';

export interface S3Server {
  endpoint: string;
  /** Where s3rver keeps objects: `<dir>/<bucket>/<key>._S3rver_object`. */
  dir: string;
  proc: ChildProcess;
  /** Environment for a client of this server: the AWS SDK's standard variables plus COMPRESS_REMOTE. */
  env(prefix: string): Record<string, string>;
  /** Objects stored under a prefix, counted on the server's disk. */
  objectCount(prefix?: string): number;
  /** Path of an object's content file on the server's disk. */
  objectFile(key: string): string;
  /** SIGKILLs the server and waits for it to be gone. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3(): Promise<S3Server> {
  const dir = mkdtempSync(join(tmpdir(), 'compress-s3-'));
  const proc = spawn(process.execPath, [join(ROOT, 'node_modules', 's3rver', 'bin', 's3rver.js'), '-d', dir, '-a', '127.0.0.1', '-p', '0', '--silent', '--configure-bucket', BUCKET], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (l) => {
      const m = /listening on [\d.]+:(\d+)/.exec(l);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`s3rver exited (${code}) before listening`)));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const gone = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  };
  return {
    endpoint,
    dir,
    proc,
    env: (prefix) => ({
      AWS_ENDPOINT_URL: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      COMPRESS_REMOTE: `s3://${BUCKET}/${prefix}`,
    }),
    objectCount: (prefix = '') => countObjects(join(dir, BUCKET, prefix)),
    objectFile: (key) => join(dir, BUCKET, `${key}._S3rver_object`),
    kill: gone,
    async stop() {
      await gone();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function countObjects(dir: string): number {
  let n = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) n += countObjects(p);
    else if (name.endsWith('._S3rver_object')) n++;
  }
  return n;
}

export interface RedisServer {
  url: string;
  stop(): Promise<void>;
}

/** redis-server (Debian) on a free loopback port, no persistence; resolves once it accepts connections. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const proc = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (l) => {
      if (/Ready to accept connections/.test(l)) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before accepting connections`)));
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
