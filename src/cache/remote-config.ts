import { isIP } from 'node:net';
import { UsageError } from '../recipe/errors.js';
import type { CacheSpec } from '../recipe/schema.js';

/**
 * Where the shared remote cache is and whether this run may write to it: resolved from the command
 * line, the environment and the recipe's `cache:` section. Credentials are never part of it; the AWS
 * SDK finds them itself (env, shared profile, instance or web-identity role).
 */
export interface RemoteSettings {
  /** `s3://bucket/prefix`, as given. */
  url: string;
  bucket: string;
  /** Key prefix without leading or trailing '/' ('' for the bucket root). */
  prefix: string;
  endpoint?: string;
  region?: string;
  pathStyle: boolean;
  push: boolean;
  /** Why this run does not push (said once at the start of the run). */
  readOnlyReason?: string;
}

export interface RemoteFlags {
  /** `--remote <url>`; false: `--no-remote`. */
  remote?: string | false;
  /** `--push` / `--no-push`. */
  push?: boolean;
}

export const DEFAULT_TRUSTED_REFS = ['main', 'master'];

const S3_URL = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/;

/** `s3://bucket/some/prefix/` → bucket and prefix ('some/prefix'). */
export function parseRemoteUrl(url: string): { bucket: string; prefix: string } {
  const m = S3_URL.exec(url);
  if (!m) throw new UsageError(`remote cache '${url}' is not an s3://bucket/prefix URL (bucket: 3-63 lowercase letters, digits, '.', '-')`);
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((p) => p === '..' || p === '.')) throw new UsageError(`remote cache '${url}': the prefix may not contain '.' or '..' segments`);
  return { bucket: m[1], prefix };
}

/** Endpoints addressed path-style by default: S3-compatible servers on an IP or localhost have no bucket subdomains. */
export function wantsPathStyle(endpoint: string | undefined): boolean {
  if (!endpoint) return false;
  let host: string;
  try {
    host = new URL(endpoint).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return false;
  }
  return isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost');
}

function checkEndpoint(endpoint: string, from: string): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new UsageError(`${from}: '${endpoint}' is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${from}: '${endpoint}' must be an http(s) URL`);
  // Credentials go through the SDK's chain only, never a URL that could end up in a log or report.
  if (u.username || u.password) throw new UsageError(`${from}: credentials in the endpoint URL are not accepted; use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile`);
  return endpoint;
}

/**
 * How each CI names the ref a run builds: the first variable set wins. A merge/pull request run gets a
 * ref of its own (`refs/pull/12/merge`, `refs/merge-requests/12`), so it is never a trusted branch.
 */
const CI_REFS: Array<{ env: string; ref: (v: string, env: NodeJS.ProcessEnv) => string }> = [
  { env: 'GITHUB_REF', ref: (v) => v },
  { env: 'CI_MERGE_REQUEST_IID', ref: (v) => `refs/merge-requests/${v}` },
  { env: 'CI_COMMIT_REF_NAME', ref: (v, env) => (env.CI_COMMIT_TAG ? `refs/tags/${v}` : `refs/heads/${v}`) },
  { env: 'BUILDKITE_PULL_REQUEST', ref: (v, env) => (v !== 'false' ? `refs/pull/${v}` : `refs/heads/${env.BUILDKITE_BRANCH ?? ''}`) },
  { env: 'CIRCLE_PULL_REQUEST', ref: (v) => `refs/pull/${v.replace(/.*\//, '')}` },
  { env: 'CIRCLE_BRANCH', ref: (v) => `refs/heads/${v}` },
  { env: 'CHANGE_ID', ref: (v) => `refs/pull/${v}` },
  { env: 'BRANCH_NAME', ref: (v) => `refs/heads/${v}` },
  { env: 'GIT_BRANCH', ref: (v) => `refs/heads/${v.replace(/^origin\//, '')}` },
];

/** The ref a CI run builds (`refs/heads/main`, `refs/pull/3/merge`), from the CI's variables. */
export function ciRef(env: NodeJS.ProcessEnv): string | undefined {
  for (const c of CI_REFS) {
    const v = env[c.env];
    if (v) return c.ref(v, env);
  }
  return undefined;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\u0000/g, '.*');
  return new RegExp(`^${body}$`);
}

/** Whether a ref matches a trusted pattern: `main` and `release/*` match branches, `refs/tags/*` full refs. */
export function refTrusted(ref: string | undefined, patterns: readonly string[]): boolean {
  if (!ref) return false;
  const short = ref.startsWith('refs/heads/') ? ref.slice('refs/heads/'.length) : undefined;
  return patterns.some((p) => {
    const re = globToRegExp(p);
    return re.test(ref) || (short !== undefined && re.test(short));
  });
}

function isCi(env: NodeJS.ProcessEnv): boolean {
  return env.CI !== undefined && env.CI !== '' && env.CI !== '0' && env.CI.toLowerCase() !== 'false';
}

/**
 * The remote cache this run uses (undefined: none). URL: `--remote`, else `COMPRESS_REMOTE`, else the
 * recipe's `cache.remote`. Push: `--push`/`--no-push`, else off when `cache.push: false`, else off on CI
 * unless the ref matches `cache.trustedRefs` (untrusted branches read the cache but never write it: a
 * pull request must not be able to poison what main later trusts), else on.
 */
export function resolveRemote(spec: CacheSpec, flags: RemoteFlags = {}, env: NodeJS.ProcessEnv = process.env): RemoteSettings | undefined {
  if (flags.remote === false) return undefined;
  const url = flags.remote || env.COMPRESS_REMOTE || spec.remote;
  if (!url) return undefined;
  const { bucket, prefix } = parseRemoteUrl(url);
  const endpoint = spec.endpoint ? checkEndpoint(spec.endpoint, 'cache.endpoint') : env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL ? checkEndpoint((env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL)!, 'AWS_ENDPOINT_URL') : undefined;
  // Without one, AWS itself takes the SDK's chain (profile); an S3-compatible server gets us-east-1, which they accept.
  const region = spec.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : undefined));
  const pathStyle = spec.pathStyle ?? wantsPathStyle(endpoint);
  const base = { url, bucket, prefix, endpoint, region, pathStyle };
  if (flags.push !== undefined) return { ...base, push: flags.push, readOnlyReason: flags.push ? undefined : '--no-push' };
  if (spec.push === false) return { ...base, push: false, readOnlyReason: 'cache.push: false' };
  if (isCi(env)) {
    const ref = ciRef(env);
    const trusted = spec.trustedRefs ?? DEFAULT_TRUSTED_REFS;
    if (!refTrusted(ref, trusted)) {
      return { ...base, push: false, readOnlyReason: `CI run on ${ref ? `the untrusted ref ${ref}` : 'an unknown ref'} (cache.trustedRefs: ${trusted.join(', ')}); --push overrides` };
    }
  }
  return { ...base, push: true };
}
