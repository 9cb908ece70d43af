/**
 * The library's public face: the names it exports (a change here is a
 * change of the API: update the lists on purpose), `StapleError` recognised
 * across copies, the test doubles of `testing`, `defineSettings` as the one
 * home of defaults, and `clock` accepted by the front-door functions.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import * as api from '../../src/index.js';
import { tempDir } from '../helpers/temp.js';

/** Own enumerable keys of a namespace object (`export * as x`). */
function namespaces(m: Record<string, unknown>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === null) out[k] = Object.keys(v).sort();
  }
  return out;
}

describe('public API', () => {
  it('exports exactly these names (values; types are checked by tsc)', () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        // front door
        'attachStapling',
        'checkStaples',
        'defineConfig',
        'defineSettings',
        'ERROR_CODES',
        'isStapleError',
        'loadConfig',
        'runOnce',
        'sourceFromConfig',
        'StapleDaemon',
        'StapleError',
        'startDaemon',
        'toStapleError',
        'USER_AGENT',
        'VERSION',
        // namespaces
        'config',
        'io',
        'ocsp',
        'outputs',
        'testing',
        // names of the first releases (README Library section), also in the namespaces
        'assertGood',
        'buildRequest',
        'computeCertId',
        'createFileStore',
        'createHttpTransport',
        'decideRefresh',
        'fetchResponse',
        'IssuerResolver',
        'loadCertificates',
        'processTarget',
        'verifyResponse',
      ].sort(),
    );
  });

  it('has these namespaces', () => {
    expect(namespaces(api)).toEqual({
      ocsp: [
        'DEFAULT_POLICY',
        'DEFAULT_SKEW_MS',
        'IssuerResolver',
        'MAX_GET_URL',
        'OID_KP_OCSP_SIGNING',
        'PassMemo',
        'RESPONSE_STATUS_NAMES',
        'REVOCATION_REASONS',
        'SignatureVerifier',
        'VerdictCache',
        'assertGood',
        'buildRequest',
        'classifyStaple',
        'computeCertId',
        'couldBeIssuer',
        'decideRefresh',
        'decodePem',
        'decodeResponse',
        'fetchResponse',
        'findIssuer',
        'fingerprint',
        'formatName',
        'isSignedBy',
        'loadCertificates',
        'loadTargetCert',
        'parseCaIssuersContent',
        'parseCertificate',
        'pickLeaf',
        'processTarget',
        'readStapleState',
        'refreshPoint',
        'usableAt',
        'usableUntil',
        'verifyResponse',
      ],
      io: [
        'DEFAULT_MAX_BYTES',
        'acquireLock',
        'assertHttpUrl',
        'cleanStaleTemps',
        'createFileStore',
        'createHttpTransport',
        'fixedClock',
        'systemClock',
      ],
      config: [
        'DEFAULTS',
        'DEFAULT_CONFIG_NAMES',
        'DEFAULT_HOOK_TIMEOUT_MS',
        'DEFAULT_MASKS',
        'OPENSSL_NOTE',
        'OUTPUT_PLACEHOLDERS',
        'configCacheDir',
        'configFolder',
        'defineConfig',
        'defineSettings',
        'expandOutputTemplate',
        'findDefaultConfig',
        'formatProblem',
        'loadConfig',
        'parseDuration',
        'scanFolder',
        'scanTargets',
      ],
      outputs: ['HAPROXY_STATE_NAME', 'pushStaple', 'pushToHaproxy', 'runHook', 'sendHaproxyCommand'],
      testing: ['createFakeTransport', 'createMemoryStore'],
    });
  });
});

describe('StapleError', () => {
  it('is recognised across two copies of the module (Symbol.for mark)', async () => {
    vi.resetModules();
    const one = await import('../../src/core/errors.js');
    vi.resetModules();
    const two = await import('../../src/core/errors.js');
    expect(one.StapleError).not.toBe(two.StapleError);
    const e = new two.StapleError('OCSP_STALE');
    expect(e instanceof one.StapleError).toBe(true);
    expect(one.isStapleError(e, 'OCSP_STALE')).toBe(true);
    expect(one.toStapleError(e)).toBe(e);
    expect(new Error('x') instanceof one.StapleError).toBe(false);
    expect((null as unknown as object) instanceof one.StapleError).toBe(false);
    // the mark is not an own, enumerable field: errors compare and serialise as before
    expect(Object.keys(e)).toEqual(['name', 'code', 'details']);
  });
});

describe('testing', () => {
  it('createMemoryStore keeps the store contract: copies, undefined when missing, backups', async () => {
    const store = api.testing.createMemoryStore();
    expect(await store.read('/x/a.der')).toBeUndefined();
    const data = Buffer.from('staple');
    const at = new Date('2026-12-03T10:20:30Z');
    const r = await store.write('/x/a.der', data, { backup: true, now: at });
    data.fill(0);
    expect((await store.read('/x/a.der'))?.toString()).toBe('staple');
    expect(r).toEqual({ path: '/x/a.der', pruned: [], backupPath: '/x/a.der-20261203-102030' });
    await store.write('/x/a.der', Buffer.from('two'), {
      backup: true,
      backupKeep: 1,
      now: new Date(at.getTime() + 1000),
    });
    expect([...store.files.keys()].sort()).toEqual(['/x/a.der', '/x/a.der-20261203-102031']);
    expect(store.writes).toBe(2);
  });

  it('createFakeTransport answers from a function and remembers the requests', async () => {
    const t = api.testing.createFakeTransport((req) =>
      req.method === 'GET' ? { status: 404 } : { body: Buffer.from('ok') },
    );
    expect(await t.send({ method: 'GET', url: 'http://127.0.0.1/x' })).toEqual({
      status: 404,
      body: Buffer.alloc(0),
      url: 'http://127.0.0.1/x',
    });
    expect((await t.send({ method: 'POST', url: 'http://127.0.0.1/y', body: Buffer.from('q') })).body.toString()).toBe(
      'ok',
    );
    expect(t.requests.map((r) => r.method)).toEqual(['GET', 'POST']);
    await t.close();
    expect(t.closed).toBe(true);
  });
});

describe('defineSettings', () => {
  it('gives the same settings as a configuration file that sets nothing', async () => {
    const dir = await tempDir('sk-settings-');
    try {
      await writeFile(join(dir, 'a.pem'), '');
      const file = join(dir, 'staplekeeper.yaml');
      await writeFile(
        file,
        [`ocsp_folder: ${dir}`, 'domains:', '  a:', `    cert: ${join(dir, 'a.pem')}`, '    ocsp: a.der', ''].join(
          '\n',
        ),
      );
      const loaded = await api.loadConfig(file);
      expect(api.defineSettings({ ocspFolder: dir })).toEqual(loaded.settings);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fills defaults and keeps what is given', () => {
    const s = api.defineSettings({ ocspFolder: '/srv/ocsp', stopOnError: true, http: { timeoutMs: 5000 } });
    expect(s.concurrency).toBe(1);
    expect(s.http).toEqual({ timeoutMs: 5000, method: 'auto' });
    expect(s.refreshAt).toBe(api.config.DEFAULTS.refreshAt);
    expect(api.defineSettings({ ocspFolder: '/srv/ocsp', perHostConcurrency: 32 }).concurrency).toBe(32);
    expect('minimumValidityMs' in s).toBe(false);
  });

  it('defineConfig needs no configuration file; checkStaples takes a clock', async () => {
    const config = api.defineConfig({
      settings: api.defineSettings({ ocspFolder: '/nonexistent-sk' }),
      targets: [],
    });
    expect(config.file).toBeUndefined();
    const at = new Date('2030-01-02T03:04:05Z');
    const report = await api.checkStaples(config, { clock: api.io.fixedClock(at) });
    expect(report.checkedAt).toBe(at.toISOString());
  });
});
