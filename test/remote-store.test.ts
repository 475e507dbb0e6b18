/**
 * The remote cache store against a real S3-compatible server (s3rver, started on loopback here) and, for
 * faults, against tiny HTTP servers that fail on purpose (5xx, never answering, closed port).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CacheStore, manifestDigest, type RunRecord } from '../src/cache/store.js';
import { canonicalJson, sha256 } from '../src/cache/hash.js';
import { RemoteCache } from '../src/cache/remote.js';
import { resolveRemote } from '../src/cache/remote-config.js';
import { BUCKET, startS3, type S3Server } from './servers.js';

let s3: S3Server;
// The SDK's default chain reads credentials from the environment when a request is signed.
const savedEnv = { ...process.env };
before(async () => {
  s3 = await startS3();
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
});
after(async () => {
  process.env = savedEnv;
  await s3?.stop();
});

let prefixes = 0;
/** A remote on the shared s3rver under a prefix of its own, collecting its warnings. */
function remoteAt(endpoint: string, opts: { prefix?: string; push?: boolean; maxAttempts?: number; requestTimeoutMs?: number; lookupTimeoutMs?: number } = {}) {
  const warnings: string[] = [];
  const env = { ...s3.env(opts.prefix ?? `t${++prefixes}`), AWS_ENDPOINT_URL: endpoint };
  const settings = resolveRemote({}, { push: opts.push ?? true }, env)!;
  const remote = new RemoteCache(settings, { onWarning: (m) => warnings.push(m), maxAttempts: opts.maxAttempts, requestTimeoutMs: opts.requestTimeoutMs, lookupTimeoutMs: opts.lookupTimeoutMs, connectTimeoutMs: 1000 });
  return { remote, warnings, prefix: settings.prefix };
}

const newStore = () => new CacheStore(mkdtempSync(join(tmpdir(), 'compress-rstore-')));

/** A local entry with two output files (one in a subdirectory), as a stage would leave it. */
async function localEntry(store: CacheStore, salt = 'a'): Promise<RunRecord> {
  const work = await store.makeWorkDir('stage');
  writeFileSync(join(work, 'model.json'), JSON.stringify({ layers: [salt] }));
  mkdirSync(join(work, 'sub'));
  writeFileSync(join(work, 'sub', 'weights.bin'), Buffer.alloc(70_000, salt.charCodeAt(0)));
  const outputs = await store.putDir(work);
  return store.putRecord({ key: sha256(`key-${salt}-${prefixes}`), keyInputs: { salt }, stageKind: 'train', stageId: 'baseline', outputs, outputsDigest: manifestDigest(outputs), metrics: { accuracy: 0.9 }, createdAt: '2026-01-01T00:00:00.000Z', durationMs: 1 });
}

test('a pushed entry is pulled into a fresh local store with the same record and files', async () => {
  const { remote, warnings, prefix } = (remoteAt(s3.endpoint));
  const a = newStore();
  const rec = await localEntry(a);
  assert.equal(await remote.push(rec, a), true);
  assert.equal(s3.objectCount(prefix), 3, 'two objects and the record');
  const b = newStore();
  const got = await remote.pull(rec.key, b, 'baseline');
  assert.equal(canonicalJson(got.record), canonicalJson(rec));
  assert.equal(canonicalJson(await b.getRecord(rec.key)), canonicalJson(rec));
  const out = join(mkdtempSync(join(tmpdir(), 'compress-rout-')), 'baseline');
  await b.materialize(got.record!, out);
  assert.deepEqual(readFileSync(join(out, 'sub', 'weights.bin')), Buffer.alloc(70_000, 'a'.charCodeAt(0)));
  assert.deepEqual(warnings, []);
  remote.close();
});

test('a key the remote does not hold is a plain miss', async () => {
  const { remote, warnings } = (remoteAt(s3.endpoint));
  assert.deepEqual(await remote.pull(sha256('absent'), newStore(), 'x'), {});
  assert.deepEqual(warnings, []);
  assert.equal(remote.unavailable, undefined);
  remote.close();
});

test('a tampered remote object is refused with a warning and nothing enters the local store', async () => {
  const { remote, warnings } = (remoteAt(s3.endpoint));
  const a = newStore();
  const rec = await localEntry(a, 'b');
  await remote.push(rec, a);
  const weights = s3.objectFile(remote.objectKey(rec.outputs['sub/weights.bin'].sha256));
  const bytes = readFileSync(weights);
  bytes[100] ^= 0xff;
  writeFileSync(weights, bytes);
  const b = newStore();
  const got = await remote.pull(rec.key, b, 'baseline');
  assert.equal(got.record, undefined);
  assert.match(got.refused ?? '', /'sub\/weights\.bin' is corrupt/);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /refused.*recomputed/);
  assert.equal(await b.getRecord(rec.key), undefined);
  remote.close();
});

test('a truncated remote object is refused', async () => {
  const { remote } = (remoteAt(s3.endpoint));
  const a = newStore();
  const rec = await localEntry(a, 'c');
  await remote.push(rec, a);
  const weights = s3.objectFile(remote.objectKey(rec.outputs['sub/weights.bin'].sha256));
  writeFileSync(weights, readFileSync(weights).subarray(0, 1000));
  const got = await remote.pull(rec.key, newStore(), 'baseline');
  assert.match(got.refused ?? '', /'sub\/weights\.bin' is corrupt \(.*1000 bytes; expected .*70000 bytes\)/);
  remote.close();
});

test('a remote record whose metrics were edited fails its checksum', async () => {
  const { remote } = (remoteAt(s3.endpoint));
  const a = newStore();
  const rec = await localEntry(a, 'd');
  await remote.push(rec, a);
  const file = s3.objectFile(remote.recordKey(rec.key));
  writeFileSync(file, readFileSync(file, 'utf8').replace('"accuracy":0.9', '"accuracy":0.99'));
  const got = await remote.pull(rec.key, newStore(), 'baseline');
  assert.match(got.refused ?? '', /fails its checksum/);
  remote.close();
});

test('a corrupt remote object is replaced by the next push', async () => {
  const { remote } = (remoteAt(s3.endpoint));
  const a = newStore();
  const rec = await localEntry(a, 'e');
  await remote.push(rec, a);
  const digest = rec.outputs['model.json'].sha256;
  const file = s3.objectFile(remote.objectKey(digest));
  // Same size, different bytes: a HEAD alone would take it for the right object.
  writeFileSync(file, readFileSync(file, 'utf8').replace('e', 'x'));
  assert.ok((await remote.pull(rec.key, newStore(), 'baseline')).refused);
  assert.equal(await remote.push(rec, a), true);
  assert.equal(sha256(readFileSync(file)), digest);
  assert.ok((await remote.pull(rec.key, newStore(), 'baseline')).record);
  remote.close();
});

test('chunk-framed uploads (SDK checksums on, streamed body) are caught by the digest check', async () => {
  const { remote } = (remoteAt(s3.endpoint));
  const a = newStore();
  const rec = await localEntry(a, 'f');
  await remote.push(rec, a);
  // Another client with the SDK's default checksum behaviour re-uploads an object as a stream: s3rver
  // keeps the aws-chunked framing in the stored bytes.
  const raw = (new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true }));
  const digest = rec.outputs['model.json'].sha256;
  const content = readFileSync(a.objectPath(digest));
  await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: remote.objectKey(digest), Body: Readable.from([content]), ContentLength: content.length }));
  raw.destroy();
  const stored = readFileSync(s3.objectFile(remote.objectKey(digest)));
  assert.notDeepEqual(stored, content, 's3rver stored something other than the bytes sent (framing)');
  const got = await remote.pull(rec.key, newStore(), 'baseline');
  assert.match(got.refused ?? '', /'model\.json' is corrupt/);
  remote.close();
});

test('a read-only remote never writes', async () => {
  const { remote, prefix } = (remoteAt(s3.endpoint, { push: false }));
  const a = newStore();
  const rec = await localEntry(a, 'g');
  assert.equal(await remote.push(rec, a), false);
  assert.equal(s3.objectCount(prefix), 0);
  remote.close();
});

/** An HTTP server that answers every request with `status` (or never, when undefined), counting them. */
async function faultyServer(status: number | undefined): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: Server = createServer((req, res) => {
    n++;
    req.resume();
    if (status === undefined) return; // never answers
    res.writeHead(status, { 'content-type': 'application/xml' }).end('<Error><Code>ServiceUnavailable</Code><Message>down for the test</Message></Error>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => n,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

test('a 5xx answer is retried a bounded number of times, then the remote is off with one warning', async () => {
  const srv = await faultyServer(503);
  const { remote, warnings } = (remoteAt(srv.url, { maxAttempts: 3 }));
  const a = newStore();
  const rec = await localEntry(a, 'h');
  assert.deepEqual(await remote.pull(rec.key, a, 'baseline'), {});
  assert.equal(srv.requests(), 3);
  assert.deepEqual(await remote.pull(rec.key, a, 'baseline'), {});
  assert.equal(await remote.push(rec, a), false);
  assert.equal(srv.requests(), 3, 'no request once the remote is off');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /unavailable \(.*HTTP 503.*3 attempts\): continuing with the local cache only/);
  remote.close();
  await srv.close();
});

test('a server that never answers times out, and the remote is off with one warning', async () => {
  const srv = await faultyServer(undefined);
  const { remote, warnings } = (remoteAt(srv.url, { maxAttempts: 2, requestTimeoutMs: 300 }));
  assert.deepEqual(await remote.pull(sha256('slow'), newStore(), 'x'), {});
  assert.equal(srv.requests(), 2);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /unavailable \(.*[Tt]imeout/);
  remote.close();
  await srv.close();
});

test('a record lookup that gets no answer is not retried past its bound: one request, the remote off with one warning', async () => {
  const srv = await faultyServer(undefined);
  // Requests may take a minute (objects are megabytes); a record lookup is bytes.
  const { remote, warnings } = remoteAt(srv.url, { maxAttempts: 3, requestTimeoutMs: 60_000, lookupTimeoutMs: 300 });
  assert.deepEqual(await remote.pull(sha256('hung'), newStore(), 'x'), {});
  assert.equal(await remote.hasRecord(sha256('hung')), undefined, 'off for the rest of the run');
  // Not retried (on a busy machine the bound may even pass before the first request is out).
  assert.ok(srv.requests() <= 1, `${srv.requests()} requests`);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /unavailable \(LookupTimeout: no answer to a lookup of .* within 0\.3 s/);
  remote.close();
  await srv.close();
});

test('a server that is down (connection refused) turns the remote off with one warning', async () => {
  const srv = await faultyServer(503);
  const url = srv.url;
  await srv.close();
  const { remote, warnings } = (remoteAt(url, { maxAttempts: 2 }));
  assert.deepEqual(await remote.pull(sha256('down'), newStore(), 'x'), {});
  assert.equal(await remote.hasRecord(sha256('down')), undefined);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /ECONNREFUSED/);
  remote.close();
});
