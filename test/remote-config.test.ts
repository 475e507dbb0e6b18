/** Which remote a run uses and whether it may write to it (pure: command line, environment, recipe). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ciRef, parseRemoteUrl, refTrusted, resolveRemote, wantsPathStyle } from '../src/cache/remote-config.js';
import { UsageError } from '../src/recipe/errors.js';

test('an s3:// URL gives the bucket and a prefix without outer slashes', () => {
  assert.deepEqual(parseRemoteUrl('s3://team-cache/compress/lenet/'), { bucket: 'team-cache', prefix: 'compress/lenet' });
  assert.deepEqual(parseRemoteUrl('s3://team-cache'), { bucket: 'team-cache', prefix: '' });
});

test('a remote that is not an s3://bucket URL is a usage error', () => {
  assert.throws(() => parseRemoteUrl('https://bucket/x'), UsageError);
  assert.throws(() => parseRemoteUrl('s3://Bad_Bucket/x'), UsageError);
  assert.throws(() => parseRemoteUrl('s3://bucket/a/../b'), /'\.\.'/);
});

test('path-style addressing is chosen for IP and localhost endpoints only', () => {
  assert.equal(wantsPathStyle('http://127.0.0.1:9000'), true);
  assert.equal(wantsPathStyle('http://[::1]:9000'), true);
  assert.equal(wantsPathStyle('http://localhost:9000'), true);
  assert.equal(wantsPathStyle('https://s3.eu-west-1.amazonaws.com'), false);
  assert.equal(wantsPathStyle(undefined), false);
});

test('COMPRESS_REMOTE and the SDK variables alone configure a localhost server', () => {
  const r = resolveRemote({}, {}, { COMPRESS_REMOTE: 's3://bk1/p', AWS_ENDPOINT_URL: 'http://localhost:4568', AWS_REGION: 'eu-west-1' })!;
  assert.deepEqual({ bucket: r.bucket, prefix: r.prefix, endpoint: r.endpoint, region: r.region, pathStyle: r.pathStyle, push: r.push }, { bucket: 'bk1', prefix: 'p', endpoint: 'http://localhost:4568', region: 'eu-west-1', pathStyle: true, push: true });
});

test('--remote wins over COMPRESS_REMOTE, which wins over the recipe; --no-remote turns it off', () => {
  const env = { COMPRESS_REMOTE: 's3://from-env/x' };
  assert.equal(resolveRemote({ remote: 's3://from-recipe/x' }, { remote: 's3://from-flag/x' }, env)!.bucket, 'from-flag');
  assert.equal(resolveRemote({ remote: 's3://from-recipe/x' }, {}, env)!.bucket, 'from-env');
  assert.equal(resolveRemote({ remote: 's3://from-recipe/x' }, {}, {})!.bucket, 'from-recipe');
  assert.equal(resolveRemote({ remote: 's3://from-recipe/x' }, { remote: false }, env), undefined);
  assert.equal(resolveRemote({}, {}, {}), undefined);
});

test('credentials in an endpoint URL are refused', () => {
  assert.throws(() => resolveRemote({ remote: 's3://bk1/x', endpoint: 'http://key:secret@minio:9000' }, {}, {}), /credentials in the endpoint URL/);
});

test('on CI a pull request is read-only by default', () => {
  const r = resolveRemote({ remote: 's3://bk1/x' }, {}, { CI: 'true', GITHUB_REF: 'refs/pull/12/merge' })!;
  assert.equal(r.push, false);
  assert.match(r.readOnlyReason!, /untrusted ref refs\/pull\/12\/merge/);
});

test('on CI a trusted branch pushes; trustedRefs globs choose which', () => {
  assert.equal(resolveRemote({ remote: 's3://bk1/x' }, {}, { CI: 'true', GITHUB_REF: 'refs/heads/main' })!.push, true);
  const spec = { remote: 's3://bk1/x', trustedRefs: ['release/*'] };
  assert.equal(resolveRemote(spec, {}, { CI: 'true', GITHUB_REF: 'refs/heads/release/1.2' })!.push, true);
  assert.equal(resolveRemote(spec, {}, { CI: 'true', GITHUB_REF: 'refs/heads/main' })!.push, false);
});

test('on CI without a known ref nothing is pushed; recipe push: true does not override that', () => {
  const r = resolveRemote({ remote: 's3://bk1/x', push: true }, {}, { CI: 'true' })!;
  assert.equal(r.push, false);
  assert.match(r.readOnlyReason!, /unknown ref/);
});

test('--push and --no-push decide; cache.push: false makes a recipe read-only everywhere', () => {
  assert.equal(resolveRemote({ remote: 's3://bk1/x' }, { push: true }, { CI: 'true', GITHUB_REF: 'refs/pull/1/merge' })!.push, true);
  assert.equal(resolveRemote({ remote: 's3://bk1/x' }, { push: false }, {})!.push, false);
  assert.equal(resolveRemote({ remote: 's3://bk1/x', push: false }, {}, {})!.readOnlyReason, 'cache.push: false');
});

test('CI refs of GitLab merge requests and branches, CircleCI and Jenkins are recognised', () => {
  assert.equal(ciRef({ CI_MERGE_REQUEST_IID: '4', CI_COMMIT_REF_NAME: 'main' }), 'refs/merge-requests/4');
  assert.equal(ciRef({ CI_COMMIT_REF_NAME: 'main' }), 'refs/heads/main');
  assert.equal(ciRef({ CIRCLE_PULL_REQUEST: 'https://github.com/o/r/pull/9', CIRCLE_BRANCH: 'main' }), 'refs/pull/9');
  assert.equal(ciRef({ GIT_BRANCH: 'origin/main' }), 'refs/heads/main');
  assert.equal(refTrusted('refs/merge-requests/4', ['main']), false);
  assert.equal(refTrusted('refs/tags/v1.0', ['refs/tags/*']), true);
});
