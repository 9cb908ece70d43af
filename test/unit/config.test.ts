import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadChecked, loadError, loadText, tree, triple } from '../helpers/config-load.js';
import { describe, expect, it } from 'vitest';
import { isStapleError } from '../../src/core/errors.js';
import {
  DEFAULT_HOOK_TIMEOUT_MS,
  OPENSSL_NOTE,
  findDefaultConfig,
  parseDuration,
  scanFolder,
  type ConfigProblem,
} from '../../src/config/index.js';

function durationError(text: string): string {
  try {
    parseDuration(text);
  } catch (e) {
    expect(isStapleError(e, 'CONFIG_INVALID')).toBe(true);
    return (e as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be rejected`);
}

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;
const W = 7 * D;

describe('parseDuration', () => {
  it.each([
    ['5s', 5 * S],
    ['5 sec', 5 * S],
    ['1 second', S],
    ['5 seconds', 5 * S],
    ['5m', 5 * M],
    ['5 min', 5 * M],
    ['1 minute', M],
    ['5 minutes', 5 * M],
    ['2h', 2 * H],
    ['1 hour', H],
    ['2 hours', 2 * H],
    ['3d', 3 * D],
    ['1 day', D],
    ['3 days', 3 * D],
    ['1w', W],
    ['1 week', W],
    ['2 weeks', 2 * W],
  ])('reads the ocspbot token %j', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('adds several tokens, with or without blanks', () => {
    expect(parseDuration('2 hours 5 minutes 10 seconds')).toBe(2 * H + 5 * M + 10 * S);
    expect(parseDuration('1w 3d 5h')).toBe(W + 3 * D + 5 * H);
    expect(parseDuration('1h30m')).toBe(H + 30 * M);
    expect(parseDuration('90m')).toBe(90 * M);
    expect(parseDuration('  3d  ')).toBe(3 * D);
    expect(parseDuration('1 h, 1 m')).toBe(H + M);
    expect(parseDuration('1.5h')).toBe(H + 30 * M);
    expect(parseDuration('0s')).toBe(0);
  });

  it('rejects a bare number with a hint instead of guessing seconds', () => {
    expect(durationError('3600')).toBe(
      'invalid duration "3600": the number 3600 has no unit; write e.g. "3600s", "3600m" or "3600h" (units: s, m, h, d or w (or sec, min, hour, day, week and their plurals))',
    );
    expect(durationError('3d 4')).toBe(
      'invalid duration "3d 4": the number 4 has no unit; write e.g. "4s", "4m" or "4h" (units: s, m, h, d or w (or sec, min, hour, day, week and their plurals))',
    );
  });

  it('names the unknown unit and its token', () => {
    expect(durationError('2 hours 5 foos')).toBe(
      'invalid duration "2 hours 5 foos": unknown unit "foos" in "5 foos" (units: s, m, h, d or w (or sec, min, hour, day, week and their plurals))',
    );
    // `M` could mean months to a reader; it is not silently read as minutes.
    expect(durationError('1M')).toContain('unknown unit "M" in "1M"');
    expect(durationError('3 Days')).toContain('unknown unit "Days"');
  });

  it('rejects empty text, units without numbers and unreadable text', () => {
    expect(durationError('')).toBe('invalid duration "": it is empty; write e.g. "3d" or "2 hours 5 minutes"');
    expect(durationError('d')).toBe('invalid duration "d": the unit "d" has no number in front of it');
    expect(durationError('-3d')).toBe(
      'invalid duration "-3d": cannot read "-3d" (expected a number and a unit such as "3d")',
    );
    expect(durationError('3d.')).toBe(
      'invalid duration "3d.": cannot read "." (expected a number and a unit such as "3d")',
    );
  });
});

describe('loadConfig: the ocspbot README example', () => {
  it('loads the example unchanged apart from the paths', async () => {
    const root = await tree({
      ...triple('tls/certs', 'example.com'),
      ...triple('tls/certs', 'example.org'),
      'ocsp/responses/.keep': '',
    });
    const yaml = [
      '---',
      'openssl_executable: openssl',
      '',
      'minimum_validity: 3d',
      'minimum_validity_percentage: 42.8',
      '',
      `ocsp_folder: ${root}/ocsp/responses`,
      '',
      'parallel_threads: 1',
      '',
      `output_log: ${root}/ocsp/logs/example-{year}{month}{day}-{hour}{minute}{second}.log`,
      '',
      'make_backups: True',
      '',
      'domains:',
      '  example.com:',
      `    cert: ${root}/tls/certs/example.com.pem`,
      `    chain: ${root}/tls/certs/example.com-chain.pem`,
      `    rootchain: ${root}/tls/certs/example.com-rootchain.pem`,
      '    ocsp: example.com.ocsp-resp',
      '  example.org:',
      `    cert: ${root}/tls/certs/example.org.pem`,
      `    chain: ${root}/tls/certs/example.org-chain.pem`,
      `    rootchain: ${root}/tls/certs/example.org-rootchain.pem`,
      '    ocsp: example.org.ocsp-resp',
      '',
    ].join('\n');
    await writeFile(path.join(root, 'ocspbot.yaml'), yaml);
    const config = await loadChecked('ocspbot.yaml', { cwd: root });

    expect(config.file).toBe(path.join(root, 'ocspbot.yaml'));
    expect(config.settings.minimumValidityMs).toBe(3 * D);
    expect(config.settings.minimumValidityPercentage).toBe(42.8);
    expect(config.settings.ocspFolder).toBe(`${root}/ocsp/responses`);
    expect(config.settings.concurrency).toBe(1);
    expect(config.settings.makeBackups).toBe(true);
    expect(config.settings.outputLog).toBe(`${root}/ocsp/logs/example-{year}{month}{day}-{hour}{minute}{second}.log`);
    expect(config.settings.notes).toEqual([OPENSSL_NOTE]);
    expect(config.targets).toEqual([
      {
        id: 'example.com',
        certPath: `${root}/tls/certs/example.com.pem`,
        chainPath: `${root}/tls/certs/example.com-chain.pem`,
        rootchainPath: `${root}/tls/certs/example.com-rootchain.pem`,
        staplePath: `${root}/ocsp/responses/example.com.ocsp-resp`,
        responder: 'certificate',
        origin: 'ocspbot.yaml:16:3',
      },
      {
        id: 'example.org',
        certPath: `${root}/tls/certs/example.org.pem`,
        chainPath: `${root}/tls/certs/example.org-chain.pem`,
        rootchainPath: `${root}/tls/certs/example.org-rootchain.pem`,
        staplePath: `${root}/ocsp/responses/example.org.ocsp-resp`,
        responder: 'certificate',
        origin: 'ocspbot.yaml:21:3',
      },
    ]);
    expect(config.scans).toEqual([]);
  });

  it('notes openssl_executable even when it is empty', async () => {
    const { config } = await loadText('openssl_executable:\n');
    expect(config.settings.notes).toEqual(['openssl_executable is ignored: staplekeeper does not need OpenSSL']);
  });
});

describe('loadConfig: defaults and path resolution', () => {
  it('fills every default for an empty file', async () => {
    const { config, root } = await loadText('');
    expect(config.targets).toEqual([]);
    expect(config.scans).toEqual([]);
    expect(config.settings).toEqual({
      refreshAt: 0.5,
      concurrency: 16,
      perHostConcurrency: 8,
      stopOnError: false,
      makeBackups: false,
      ocspFolder: root,
      http: { timeoutMs: 10_000, method: 'auto' },
      responderUrlOverrides: {},
      responderIdOverrides: {},
      caDirs: [],
      hooks: {},
      onRevokedWrite: false,
      lockTimeoutMs: 60_000,
      haproxy: [],
      daemon: { sweepIntervalMs: H, watch: true },
      crl: { intervalMs: H, maxBytes: 64 * 1024 * 1024, timeoutMs: 60_000 },
      notes: [],
    });
  });

  it('resolves certificates against cwd and staples against ocsp_folder (itself against cwd)', async () => {
    const { config, root } = await loadText(
      [
        'ocsp_folder: staples',
        'output_log: logs/out-{year}.log',
        'error_log: /var/log/err.log',
        'domains:',
        '  a:',
        '    cert: certs/a.pem',
        '    chain: certs/a-chain.pem',
        '    ocsp: a.der',
        '  b:',
        '    cert: certs/b.pem',
        '    ocsp: /srv/staples/b.der',
      ].join('\n'),
      { 'certs/a.pem': '', 'certs/a-chain.pem': '', 'certs/b.pem': '' },
    );
    expect(config.settings.ocspFolder).toBe(path.join(root, 'staples'));
    expect(config.settings.outputLog).toBe(path.join(root, 'logs/out-{year}.log'));
    expect(config.settings.errorLog).toBe('/var/log/err.log');
    const [a, b] = config.targets;
    expect(a).toEqual({
      id: 'a',
      certPath: path.join(root, 'certs/a.pem'),
      chainPath: path.join(root, 'certs/a-chain.pem'),
      staplePath: path.join(root, 'staples/a.der'),
      responder: 'certificate',
      origin: 'staplekeeper.yaml:5:3',
    });
    // chain and rootchain may be left out: issuer discovery finds the issuer.
    expect(b?.chainPath).toBeUndefined();
    expect(b?.rootchainPath).toBeUndefined();
    // An absolute ocsp path is used as it is.
    expect(b?.staplePath).toBe('/srv/staples/b.der');
  });

  it('resolves a relative config file name against cwd and names it relative in origins', async () => {
    const root = await tree({ 'etc/sk.yaml': 'domains:\n  a:\n    cert: a.pem\n    ocsp: a.der\n', 'a.pem': '' });
    const config = await loadChecked('etc/sk.yaml', { cwd: root });
    expect(config.file).toBe(path.join(root, 'etc/sk.yaml'));
    expect(config.targets[0]?.origin).toBe(`${path.join('etc', 'sk.yaml')}:2:3`);
    expect(config.targets[0]?.certPath).toBe(path.join(root, 'a.pem'));
  });

  it('stop_on_error without parallel_threads or concurrency works one at a time, as ocspbot (docs/migrating.md)', async () => {
    const domains = 'domains:\n  a: {cert: a.pem, ocsp: a.der}\n';
    const stop = await loadText(`stop_on_error: true\n${domains}`, { 'a.pem': '' });
    expect(stop.config.settings.concurrency).toBe(1);
    const threads = await loadText(`stop_on_error: true\nparallel_threads: 3\n${domains}`, { 'a.pem': '' });
    expect(threads.config.settings.concurrency).toBe(3);
    const plain = await loadText(domains, { 'a.pem': '' });
    expect(plain.config.settings.concurrency).toBe(16);
  });

  it('reads the new keys', async () => {
    const { config, root } = await loadText(
      [
        'stop_on_error: true',
        'make_backups: yes', // PyYAML (YAML 1.1) reads yes as true; so do we
        'concurrency: 4',
        'per_host_concurrency: 2',
        'ca_dirs: [cas]',
        'backups: {keep: 5}',
        'on_revoked_write: true',
        'lock_timeout: 2m',
        'http:',
        '  timeout: 30s',
        '  method: post',
        '  proxy: http://proxy.internal:3128',
        '  user_agent: my-agent/1',
        'haproxy:',
        '  - socket: /run/haproxy/admin.sock',
        '  - socket: 127.0.0.1:9999',
        '    certificates: [a]',
        'daemon:',
        '  sweep_interval: 15m',
        '  watch: off',
        '  status: {listen: "127.0.0.1:9100"}',
        'domains:',
        '  a: {cert: a.pem, ocsp: a.der}',
      ].join('\n'),
      { 'a.pem': '', 'cas/.keep': '' },
    );
    const s = config.settings;
    expect(s.stopOnError).toBe(true);
    expect(s.makeBackups).toBe(true);
    expect(s.concurrency).toBe(4);
    expect(s.perHostConcurrency).toBe(2);
    expect(s.caDirs).toEqual([path.join(root, 'cas')]);
    expect(s.backupsKeep).toBe(5);
    expect(s.onRevokedWrite).toBe(true);
    expect(s.lockTimeoutMs).toBe(2 * M);
    expect(s.http).toEqual({
      timeoutMs: 30 * S,
      method: 'post',
      proxy: 'http://proxy.internal:3128',
      userAgent: 'my-agent/1',
    });
    expect(s.haproxy).toEqual([
      { socket: '/run/haproxy/admin.sock', certificates: [] },
      { socket: '127.0.0.1:9999', certificates: ['a'] },
    ]);
    expect(s.daemon).toEqual({ sweepIntervalMs: 15 * M, watch: false, statusListen: '127.0.0.1:9100' });
  });

  it('lets parallel_threads set concurrency, and rejects a disagreeing pair', async () => {
    expect((await loadText('parallel_threads: 3\n')).config.settings.concurrency).toBe(3);
    expect((await loadText('parallel_threads: 3\nconcurrency: 3\n')).config.settings.concurrency).toBe(3);
    const { error } = await loadError('parallel_threads: 3\nconcurrency: 8\n');
    expect(error.message).toBe(
      "staplekeeper.yaml:1:19 parallel_threads: parallel_threads (3) and concurrency (8, at staplekeeper.yaml:2:14) disagree; parallel_threads is ocspbot's name for concurrency, keep one of the two",
    );
  });

  it('overwrite_non_ocsp is off unless set', async () => {
    expect((await loadText('ocsp_folder: .\n')).config.settings.overwriteNonOcsp).toBeUndefined();
    expect((await loadText('overwrite_non_ocsp: true\n')).config.settings.overwriteNonOcsp).toBe(true);
  });

  it('a staple path that is a certificate file through a symlinked folder is refused (docs/SECURITY.md)', async () => {
    const root = await tree({ 'real/a.pem': 'cert', 'real/chain.pem': 'chain' });
    await symlink(path.join(root, 'real'), path.join(root, 'linked'));
    await writeFile(
      path.join(root, 'staplekeeper.yaml'),
      'ocsp_folder: linked\ndomains:\n  a:\n    cert: real/a.pem\n    chain: real/chain.pem\n    ocsp: chain.pem\n',
    );
    const e = await loadChecked('staplekeeper.yaml', { cwd: root }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(e?.message).toContain(
      `staple file ${path.join(root, 'linked', 'chain.pem')} of domain a is a certificate file of domain a`,
    );
  });
  it('staple files are compared by identity: a hard link, a shared chain, one missing file through two folder names', async () => {
    const root = await tree({ 'real/a.pem': 'a', 'real/b.pem': 'b', 'real/chain.pem': 'chain', 'st/.keep': '' });
    const { link } = await import('node:fs/promises');
    await link(path.join(root, 'real', 'b.pem'), path.join(root, 'st', 'b-copy.der'));
    await symlink(path.join(root, 'st'), path.join(root, 'st2'));
    const domains = [
      // the staple is a hard link to b's certificate
      '  a:\n    cert: real/a.pem\n    chain: real/chain.pem\n    ocsp: b-copy.der\n',
      '  b:\n    cert: real/b.pem\n    chain: real/chain.pem\n    ocsp: b.der\n',
      // the same missing staple file as b's, through the symlinked folder
      `  c:\n    cert: real/a.pem\n    chain: real/chain.pem\n    ocsp: ${path.join(root, 'st2', 'b.der')}\n`,
      // the shared chain file as a staple
      `  d:\n    cert: real/b.pem\n    ocsp: ${path.join(root, 'real', 'chain.pem')}\n`,
    ];
    await writeFile(path.join(root, 'staplekeeper.yaml'), `ocsp_folder: st\ndomains:\n${domains.join('')}`);
    const e = await loadChecked('staplekeeper.yaml', { cwd: root }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    const lines = (e?.message ?? '').split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toContain(
      `staple file ${path.join(root, 'st', 'b-copy.der')} of domain a is a certificate file of domain b`,
    );
    expect(lines[1]).toContain(
      `staple file ${path.join(root, 'st2', 'b.der')} of domain c is also the staple file of domain b`,
    );
    expect(lines[2]).toContain(
      `staple file ${path.join(root, 'real', 'chain.pem')} of domain d is a certificate file of domain a`,
    );
  });
});

describe('loadConfig: refresh_at', () => {
  it.each([
    ['0.5', 0.5],
    ['0.1', 0.1],
    ['0.95', 0.95],
    ['75', 0.75],
    ['10', 0.1],
    ['"50%"', 0.5],
    ['"33.3 %"', 0.333],
    ['"0.25"', 0.25],
  ])('reads refresh_at: %s', async (text, fraction) => {
    const { config } = await loadText(`refresh_at: ${text}\n`);
    expect(config.settings.refreshAt).toBeCloseTo(fraction, 10);
    expect(config.settings.notes).toEqual([]);
  });

  it.each([['0.05'], ['1'], ['96'], ['"5%"'], ['"half"'], ['true']])('rejects refresh_at: %s', async (text) => {
    const { error } = await loadError(`refresh_at: ${text}\n`);
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toMatch(
      /^staplekeeper\.yaml:1:13 refresh_at: expected a fraction from 0\.1 to 0\.95 \(0\.5\), or a percentage from 10 to 95 \(50 or "50%"\)/,
    );
  });

  it('notes that refresh_at is ignored when an ocspbot key is set', async () => {
    const { config } = await loadText('refresh_at: 0.7\nminimum_validity_percentage: 50\n');
    expect(config.settings.refreshAt).toBe(0.7);
    expect(config.settings.notes).toEqual([
      'refresh_at is ignored: minimum_validity or minimum_validity_percentage is set, and the ocspbot rule takes precedence',
    ]);
  });
});

describe('loadConfig: hooks', () => {
  it('reads the string, list and mapping forms', async () => {
    const { config } = await loadText(
      [
        'hooks:',
        '  on_change: systemctl reload nginx && echo done',
        '  on_failure: [/usr/local/bin/alert, --severity, high]',
        '  on_revoked:',
        '    command: [/usr/local/bin/page, oncall]',
        '    timeout: 2m',
      ].join('\n'),
    );
    expect(config.settings.hooks).toEqual({
      onChange: { kind: 'shell', command: ['systemctl reload nginx && echo done'], timeoutMs: DEFAULT_HOOK_TIMEOUT_MS },
      onFailure: { kind: 'argv', command: ['/usr/local/bin/alert', '--severity', 'high'], timeoutMs: 30_000 },
      onRevoked: { kind: 'argv', command: ['/usr/local/bin/page', 'oncall'], timeoutMs: 2 * M },
    });
  });

  it('reads a mapping with a shell string and the default timeout', async () => {
    const { config } = await loadText('hooks:\n  on_change: {command: "echo hi"}\n');
    expect(config.settings.hooks.onChange).toEqual({ kind: 'shell', command: ['echo hi'], timeoutMs: 30_000 });
  });

  it('reports the wrong part of a hook', async () => {
    expect((await loadError('hooks:\n  on_change: 5\n')).error.message).toBe(
      'staplekeeper.yaml:2:14 hooks.on_change: expected a command: a string (run by sh -c), a list of strings (run without a shell), or a mapping {command, timeout}',
    );
    expect((await loadError('hooks:\n  on_change: {command: x, timeout: 5}\n')).error.message).toBe(
      'staplekeeper.yaml:2:36 hooks.on_change.timeout: expected a duration with a unit, e.g. "5s" or "5m", got the number 5',
    );
    expect((await loadError('hooks:\n  on_change: [ok, 3]\n')).error.message).toBe(
      'staplekeeper.yaml:2:19 hooks.on_change[1]: expected a string, got the number 3',
    );
    expect((await loadError('hooks:\n  on_change: []\n')).error.message).toBe(
      'staplekeeper.yaml:2:14 hooks.on_change: must not be empty',
    );
    expect((await loadError('hooks:\n  on_change: {comand: x}\n')).error.message).toBe(
      'staplekeeper.yaml:2:15 hooks.on_change.comand: unknown key `comand`; did you mean `command`?',
    );
    expect((await loadError('hooks:\n  on_change: {timeout: 5s}\n')).error.message).toBe(
      'staplekeeper.yaml:2:3 hooks.on_change.command: required key `command` is missing',
    );
    expect((await loadError('hooks:\n  on_chnage: x\n')).error.message).toBe(
      'staplekeeper.yaml:2:3 hooks.on_chnage: unknown key `on_chnage`; did you mean `on_change`?',
    );
  });
});

describe('loadConfig: responders', () => {
  const files = { 'a.pem': '', 'b.pem': '', 'c.pem': '' };
  const domains = [
    'domains:',
    '  a: {cert: a.pem, ocsp: a.der}',
    '  b: {cert: b.pem, ocsp: b.der, ocsp_responder_uri: "http://ocsp.b.example/"}',
    '  c: {cert: c.pem, ocsp: c.der, ocsp_responder_uri: certificate}',
  ];

  it('sorts URL keys into URL overrides and domain keys onto their targets', async () => {
    const { config } = await loadText(
      [
        ...domains,
        'responders:',
        '  http://ocsp.ca.example: http://ocsp-proxy.internal/ca',
        '  https://old.example/ocsp: disabled',
        '  a: disabled',
        '  c: https://ocsp.c.example',
      ].join('\n'),
      files,
    );
    expect(config.settings.responderUrlOverrides).toEqual({
      'http://ocsp.ca.example': 'http://ocsp-proxy.internal/ca',
      'https://old.example/ocsp': 'disabled',
    });
    expect(config.settings.responderIdOverrides).toEqual({ a: 'disabled', c: 'https://ocsp.c.example' });
    expect(config.targets.map((t) => [t.id, t.responder])).toEqual([
      ['a', 'disabled'],
      ['b', 'http://ocsp.b.example/'],
      ['c', 'https://ocsp.c.example'],
    ]);
  });

  it('rejects an unknown domain key with a suggestion', async () => {
    const { error } = await loadError([...domains, 'responders:', '  d: disabled'].join('\n'), files);
    expect(error.message).toBe(
      'staplekeeper.yaml:6:3 responders.d: no domain has the identifier "d"; did you mean `a`? (a key here is either a responder URL from a certificate, starting with http:// or https://, or a domain identifier)',
    );
  });

  it('rejects a domain override that contradicts ocsp_responder_uri', async () => {
    const { error } = await loadError([...domains, 'responders:', '  b: disabled'].join('\n'), files);
    expect(error.message).toBe(
      'staplekeeper.yaml:6:3 responders.b: domain b already sets ocsp_responder_uri: http://ocsp.b.example/ at staplekeeper.yaml:3:53; keep one of the two',
    );
  });

  it('rejects values that are neither URL nor disabled', async () => {
    const { error } = await loadError('responders:\n  http://x.example: ftp://y.example\n');
    expect(error.message).toBe(
      'staplekeeper.yaml:2:21 responders.http://x.example: expected an http:// or https:// URL or "disabled", got the string "ftp://y.example"',
    );
    const uri = await loadError('domains:\n  a: {cert: a.pem, ocsp: a.der, ocsp_responder_uri: aia}\n', files);
    expect(uri.error.message).toBe(
      'staplekeeper.yaml:2:53 domains.a.ocsp_responder_uri: expected an http:// or https:// URL, "certificate" (use the certificate\'s AIA) or "disabled", got the string "aia"',
    );
  });

  it('accepts disabled as ocsp_responder_uri', async () => {
    const { config } = await loadText(
      'domains:\n  a: {cert: a.pem, ocsp: a.der, ocsp_responder_uri: disabled}\n',
      files,
    );
    expect(config.targets[0]?.responder).toBe('disabled');
  });
});

describe('loadConfig: includes', () => {
  it('reads *.yml and *.yaml from the include folder, not from cwd', async () => {
    const root = await tree({
      'conf.d/10-a.yaml': 'domains:\n  a:\n    cert: certs/a.pem\n    ocsp: a.der\n',
      'conf.d/20-scan.yml': 'scan_keys:\n  - folder: scanned\n',
      'conf.d/notes.txt': 'not yaml',
      'certs/a.pem': '',
      ...triple('scanned', 'b'),
      // A same-named file in cwd must not be what is read (ocspbot's bug).
      '10-a.yaml': 'this: would fail',
      'main/staplekeeper.yaml': `includes: [conf.d]\ndomains:\n  m: {cert: certs/a.pem, ocsp: m.der}\n`,
    });
    const config = await loadChecked('main/staplekeeper.yaml', { cwd: root });
    expect(config.targets.map((t) => [t.id, t.origin])).toEqual([
      ['m', `${path.join('main', 'staplekeeper.yaml')}:3:3`],
      ['a', `${path.join('conf.d', '10-a.yaml')}:2:3`],
      ['b', `${path.join('conf.d', '20-scan.yml')}:2:5`],
    ]);
    // Paths in included files resolve against cwd, like in the main file.
    expect(config.targets[1]?.certPath).toBe(path.join(root, 'certs/a.pem'));
    expect(config.scans.map((s) => s.folder)).toEqual([path.join(root, 'scanned')]);
  });

  it('skips the main file when an include folder contains it', async () => {
    const { config } = await loadText('includes: [.]\n', {
      'extra.yaml': 'domains:\n  x: {cert: x.pem, ocsp: x.der}\n',
      'x.pem': '',
    });
    expect(config.targets.map((t) => t.id)).toEqual(['x']);
  });

  it('rejects other keys in an included file', async () => {
    const { error } = await loadError('includes: [inc]\n', {
      'inc/a.yaml': 'domains: {}\nocsp_folder: /tmp\ndomian: {}\n',
    });
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toBe(
      [
        `${path.join('inc', 'a.yaml')}:2:1 ocsp_folder: \`ocsp_folder\` is not allowed in an included file, only \`domains\` and \`scan_keys\` are; move it to the main configuration file`,
        `${path.join('inc', 'a.yaml')}:3:1 domian: unknown key \`domian\`; did you mean \`domains\`?`,
      ].join('\n'),
    );
    expect((error.details.problems as ConfigProblem[])[0]).toEqual({
      file: path.join('inc', 'a.yaml'),
      line: 2,
      col: 1,
      path: 'ocsp_folder',
      message:
        '`ocsp_folder` is not allowed in an included file, only `domains` and `scan_keys` are; move it to the main configuration file',
    });
  });

  it('rejects a missing include folder and reports YAML errors in included files as CONFIG_YAML', async () => {
    const missing = await loadError('includes:\n  - nowhere\n');
    expect(missing.error.message).toBe(
      `staplekeeper.yaml:2:5 includes[0]: include folder not found: ${path.join(missing.root, 'nowhere')} (a relative path: resolved against the working directory ${missing.root}; cron and systemd start in /, so give an absolute path)`,
    );
    const broken = await loadError('includes: [inc]\n', { 'inc/bad.yml': 'domains: [\n' });
    expect(broken.error.code).toBe('CONFIG_YAML');
    expect(broken.error.message).toMatch(/^inc\/bad\.yml:\d+:\d+: YAML syntax error: /);
  });
});

describe('loadConfig: scan_keys', () => {
  const files = {
    ...triple('keys', 'top.example'),
    ...triple('keys/sub', 'a.example'),
    ...triple('keys/sub/deeper', 'b.example'),
    ...triple('keys/other', 'top.example'),
  };

  it('scans recursively and keeps the relative subfolder in id and staple name', async () => {
    const { config, root } = await loadText('ocsp_folder: out\nscan_keys:\n  - folder: keys\n', files);
    const k = (p: string): string => path.join(root, 'keys', p);
    expect(config.targets).toEqual([
      {
        id: 'top.example',
        certPath: k('top.example.pem'),
        chainPath: k('top.example-chain.pem'),
        rootchainPath: k('top.example-rootchain.pem'),
        staplePath: path.join(root, 'out/top.example.ocsp-resp'),
        responder: 'certificate',
        origin: 'staplekeeper.yaml:3:5',
      },
      {
        id: 'other/top.example',
        certPath: k('other/top.example.pem'),
        chainPath: k('other/top.example-chain.pem'),
        rootchainPath: k('other/top.example-rootchain.pem'),
        staplePath: path.join(root, 'out/other/top.example.ocsp-resp'),
        responder: 'certificate',
        origin: 'staplekeeper.yaml:3:5',
      },
      {
        id: 'sub/a.example',
        certPath: k('sub/a.example.pem'),
        chainPath: k('sub/a.example-chain.pem'),
        rootchainPath: k('sub/a.example-rootchain.pem'),
        staplePath: path.join(root, 'out/sub/a.example.ocsp-resp'),
        responder: 'certificate',
        origin: 'staplekeeper.yaml:3:5',
      },
      {
        id: 'sub/deeper/b.example',
        certPath: k('sub/deeper/b.example.pem'),
        chainPath: k('sub/deeper/b.example-chain.pem'),
        rootchainPath: k('sub/deeper/b.example-rootchain.pem'),
        staplePath: path.join(root, 'out/sub/deeper/b.example.ocsp-resp'),
        responder: 'certificate',
        origin: 'staplekeeper.yaml:3:5',
      },
    ]);
    expect(config.scans).toEqual([
      {
        folder: path.join(root, 'keys'),
        recursive: true,
        certMask: '{domain}.pem',
        chainMask: '{domain}-chain.pem',
        rootchainMask: '{domain}-rootchain.pem',
        ocspMask: '{domain}.ocsp-resp',
        origin: 'staplekeeper.yaml:3:5',
      },
    ]);
  });

  it('scans only the folder itself when recursive is false', async () => {
    const { config } = await loadText('scan_keys:\n  - folder: keys\n    recursive: false\n', files);
    expect(config.targets.map((t) => t.id)).toEqual(['top.example']);
  });

  it('scans cwd when folder is left out', async () => {
    const { config } = await loadText('scan_keys:\n  - {recursive: false}\n', triple('', 'here.example'));
    expect(config.targets.map((t) => t.id)).toEqual(['here.example']);
  });

  it('uses custom masks', async () => {
    const { config, root } = await loadText(
      [
        'scan_keys:',
        '  - folder: live',
        '    cert_mask: "{domain}.crt"',
        '    chain_mask: "{domain}.issuer.crt"',
        '    rootchain_mask: root.crt',
        '    ocsp_mask: "{domain}.crt.ocsp"',
      ].join('\n'),
      { 'live/www.crt': '', 'live/www.issuer.crt': '', 'live/root.crt': '' },
    );
    // `www.issuer.crt` and `root.crt` match the cert mask too, but have no chain of their own.
    expect(config.targets.map((t) => [t.id, t.chainPath, t.rootchainPath, t.staplePath])).toEqual([
      [
        'www',
        path.join(root, 'live/www.issuer.crt'),
        path.join(root, 'live/root.crt'),
        path.join(root, 'www.crt.ocsp'),
      ],
    ]);
  });

  it('requires the whole triple, so chain files are never taken for certificates', async () => {
    const { config } = await loadText('scan_keys:\n  - folder: k\n', {
      ...triple('k', 'full.example'),
      'k/nochain.example.pem': '',
      'k/nochain.example-rootchain.pem': '',
      'k/noroot.example.pem': '',
      'k/noroot.example-chain.pem': '',
    });
    // Not `full.example-chain` (needs full.example-chain-chain.pem), not the incomplete pairs.
    expect(config.targets.map((t) => t.id)).toEqual(['full.example']);
  });

  it('follows symbolic links to certificate files', async () => {
    const root = await tree({
      ...triple('archive', 'l.example'),
      'staplekeeper.yaml': 'scan_keys:\n  - folder: live\n',
    });
    await mkdir(path.join(root, 'live'));
    for (const name of ['l.example.pem', 'l.example-chain.pem', 'l.example-rootchain.pem']) {
      await symlink(path.join(root, 'archive', name), path.join(root, 'live', name));
    }
    const config = await loadChecked('staplekeeper.yaml', { cwd: root });
    expect(config.targets.map((t) => t.certPath)).toEqual([path.join(root, 'live/l.example.pem')]);
  });

  it('rejects a missing scan folder and masks without {domain}', async () => {
    const missing = await loadError('scan_keys:\n  - folder: gone\n');
    expect(missing.error.message).toBe(
      `staplekeeper.yaml:2:13 scan_keys[0].folder: scan folder not found: ${path.join(missing.root, 'gone')} (a relative path: resolved against the working directory ${missing.root}; cron and systemd start in /, so give an absolute path)`,
    );
    const masks = await loadError('scan_keys:\n  - cert_mask: cert.pem\n    ocsp_mask: staple.der\n');
    expect(masks.error.message).toBe(
      [
        'staplekeeper.yaml:2:16 scan_keys[0].cert_mask: the mask must contain {domain}',
        'staplekeeper.yaml:3:16 scan_keys[0].ocsp_mask: the mask must contain {domain}, or every certificate would share one staple file',
      ].join('\n'),
    );
  });

  it('applies id overrides in scanFolder, for daemon re-scans', async () => {
    const root = await tree(triple('k/s', 'x.example'));
    const targets = await scanFolder(
      {
        folder: path.join(root, 'k'),
        recursive: true,
        certMask: '{domain}.pem',
        chainMask: '{domain}-chain.pem',
        rootchainMask: '{domain}-rootchain.pem',
        ocspMask: '{domain}.ocsp-resp',
        origin: 'sk.yaml:3:5',
      },
      '/staples',
      { responderOverrides: { 's/x.example': 'disabled' } },
    );
    expect(targets.map((t) => [t.id, t.staplePath, t.responder])).toEqual([
      ['s/x.example', '/staples/s/x.example.ocsp-resp', 'disabled'],
    ]);
  });

  it('makes scanFolder throw CONFIG_INVALID for a missing folder', async () => {
    const scan = {
      folder: '/nonexistent/sk-scan',
      recursive: true,
      certMask: '{domain}.pem',
      chainMask: '{domain}-chain.pem',
      rootchainMask: '{domain}-rootchain.pem',
      ocspMask: '{domain}.ocsp-resp',
      origin: 'sk.yaml:3:5',
    };
    await expect(scanFolder(scan, '/staples')).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: 'sk.yaml:3:5 scan_keys: folder not found: /nonexistent/sk-scan',
    });
  });
});

describe('loadConfig: duplicate identifiers and clashing files', () => {
  it('names both places for a domain in the main file and in an include', async () => {
    const { error } = await loadError('includes: [inc]\ndomains:\n  a: {cert: a.pem, ocsp: a.der}\n', {
      'a.pem': '',
      'inc/x.yaml': '\ndomains:\n  a: {cert: a.pem, ocsp: a2.der}\n',
    });
    expect(error.message).toBe(
      `${path.join('inc', 'x.yaml')}:3:3 domains.a: duplicate domain identifier "a" (first defined at staplekeeper.yaml:3:3)`,
    );
  });

  it('names both places for a domain in two includes', async () => {
    const { error } = await loadError('includes: [inc]\n', {
      'a.pem': '',
      'inc/1.yaml': 'domains:\n  a: {cert: a.pem, ocsp: a1.der}\n',
      'inc/2.yaml': 'domains:\n  a: {cert: a.pem, ocsp: a2.der}\n',
    });
    expect(error.message).toBe(
      `${path.join('inc', '2.yaml')}:2:3 domains.a: duplicate domain identifier "a" (first defined at ${path.join('inc', '1.yaml')}:2:3)`,
    );
  });

  it('names both places for a domain repeated in one file', async () => {
    const { error } = await loadError(
      'domains:\n  a: {cert: a.pem, ocsp: a1.der}\n  a: {cert: a.pem, ocsp: a2.der}\n',
      {
        'a.pem': '',
      },
    );
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toBe(
      'staplekeeper.yaml:3:3 domains.a: duplicate domain identifier "a" (first defined at staplekeeper.yaml:2:3)',
    );
  });

  it('names both places for a domain and a scan result with the same id', async () => {
    const { error, root } = await loadError(
      'domains:\n  s.example: {cert: k/s.example.pem, ocsp: other.der}\nscan_keys:\n  - folder: k\n',
      triple('k', 's.example'),
    );
    expect(error.message).toBe(
      `staplekeeper.yaml:4:5 scan_keys[0]: the scan finds domain identifier "s.example" (${path.join(root, 'k/s.example.pem')}), already defined at staplekeeper.yaml:2:3`,
    );
  });

  it('rejects two targets sharing one staple file, and a staple that would overwrite a certificate', async () => {
    const { error, root } = await loadError(
      'domains:\n  a: {cert: a.pem, ocsp: same.der}\n  b: {cert: b.pem, ocsp: same.der}\n  c: {cert: c.pem, ocsp: a.pem}\n',
      { 'a.pem': '', 'b.pem': '', 'c.pem': '' },
    );
    expect(error.message).toBe(
      [
        `staplekeeper.yaml:3:26 domains.b.ocsp: staple file ${path.join(root, 'same.der')} of domain b is also the staple file of domain a (staplekeeper.yaml:2:3)`,
        `staplekeeper.yaml:4:26 domains.c.ocsp: staple file ${path.join(root, 'a.pem')} of domain c is a certificate file of domain a (staplekeeper.yaml:2:3); writing the staple would destroy it`,
      ].join('\n'),
    );
  });
});

describe('loadConfig: file checks', () => {
  it('names the missing certificate with its domain', async () => {
    const { error, root } = await loadError(
      'domains:\n  example.com:\n    cert: certs/example.com.pem\n    chain: certs/chain.pem\n    rootchain: certs\n    ocsp: x.der\n',
      { 'certs/.keep': '' },
    );
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toBe(
      [
        `staplekeeper.yaml:3:11 domains.example.com.cert: certificate file not found: ${path.join(root, 'certs/example.com.pem')} (domain example.com) (a relative path: resolved against the working directory ${root}; cron and systemd start in /, so give an absolute path)`,
        `staplekeeper.yaml:4:12 domains.example.com.chain: chain file not found: ${path.join(root, 'certs/chain.pem')} (domain example.com) (a relative path: resolved against the working directory ${root}; cron and systemd start in /, so give an absolute path)`,
        `staplekeeper.yaml:5:16 domains.example.com.rootchain: rootchain path is not a file: ${path.join(root, 'certs')} (domain example.com)`,
      ].join('\n'),
    );
    expect(error.details.problems).toHaveLength(3);
  });

  it('does not require the staple or its folder to exist', async () => {
    const { config, root } = await loadText('domains:\n  a: {cert: a.pem, ocsp: not/yet/there.der}\n', { 'a.pem': '' });
    expect(config.targets[0]?.staplePath).toBe(path.join(root, 'not/yet/there.der'));
  });

  it('rejects a missing CA folder', async () => {
    const { error, root } = await loadError('ca_dirs:\n  - cas\n');
    expect(error.message).toBe(
      `staplekeeper.yaml:2:5 ca_dirs[0]: CA folder not found: ${path.join(root, 'cas')} (a relative path: resolved against the working directory ${root}; cron and systemd start in /, so give an absolute path)`,
    );
  });

  it('rejects haproxy certificates that name no domain', async () => {
    const { error } = await loadError(
      'domains:\n  www: {cert: a.pem, ocsp: a.der}\nhaproxy:\n  - socket: /run/h.sock\n    certificates: [ww]\n',
      { 'a.pem': '' },
    );
    expect(error.message).toBe(
      'staplekeeper.yaml:5:20 haproxy[0].certificates[0]: no domain has the identifier "ww"; did you mean `www`?',
    );
  });
});

describe('loadConfig: shape errors', () => {
  it('suggests the closest key for an unknown key at every level', async () => {
    const { error } = await loadError(
      [
        'minimum_valdity: 3d', // 1
        'domains:', // 2
        '  a:', // 3
        '    cert: a.pem', // 4
        '    rootchian: r.pem', // 5
        '    ocsp: a.der', // 6
        'http:', // 7
        '  methd: get', // 8
        'daemon:', // 9
        '  status: {lisen: "x:1"}', // 10
        'frobnicate: 1', // 11
      ].join('\n'),
    );
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toBe(
      [
        'staplekeeper.yaml:1:1 minimum_valdity: unknown key `minimum_valdity`; did you mean `minimum_validity`?',
        'staplekeeper.yaml:5:5 domains.a.rootchian: unknown key `rootchian`; did you mean `rootchain`?',
        'staplekeeper.yaml:8:3 http.methd: unknown key `methd`; did you mean `method`?',
        'staplekeeper.yaml:10:12 daemon.status.lisen: unknown key `lisen`; did you mean `listen`?',
        'staplekeeper.yaml:11:1 frobnicate: unknown key `frobnicate`',
      ].join('\n'),
    );
  });

  it('reports a misspelt required key once, as the misspelling', async () => {
    const { error } = await loadError('domains:\n  a:\n    cret: a.pem\n    ocsp: a.der\n');
    expect(error.message).toBe('staplekeeper.yaml:3:5 domains.a.cret: unknown key `cret`; did you mean `cert`?');
  });

  it('lists the allowed keys when nothing is close', async () => {
    const { error } = await loadError('scan_keys:\n  - zzz: 1\n');
    expect(error.message).toBe(
      'staplekeeper.yaml:2:5 scan_keys[0].zzz: unknown key `zzz` (allowed here: folder, recursive, cert_mask, chain_mask, rootchain_mask, ocsp_mask)',
    );
  });

  it('reports type errors with file:line:col and the key path', async () => {
    const { error } = await loadError(
      [
        'minimum_validity: 3600', // 1
        'minimum_validity_percentage: "42"', // 2
        'parallel_threads: 0', // 3
        'stop_on_error: maybe', // 4
        'domains:', // 5
        '  a:', // 6
        '    cert: 5', // 7
        '    ocsp:', // 8
        '  b:', // 9
        '    ocsp: b.der', // 10
        'scan_keys: {folder: x}', // 11
        'http: {method: put, proxy: "socks5://p:1", timeout: 0s}', // 12
        'concurrency: 2.5', // 13
        'lock_timeout: soon', // 14
        'daemon: {status: {listen: 9100}}', // 15
      ].join('\n'),
    );
    expect(error.message.split('\n')).toEqual([
      'staplekeeper.yaml:1:19 minimum_validity: expected a duration with a unit, e.g. "3600s" or "3600m", got the number 3600',
      'staplekeeper.yaml:2:30 minimum_validity_percentage: expected a number, got the string "42"',
      'staplekeeper.yaml:3:19 parallel_threads: must be at least 1, got the number 0',
      'staplekeeper.yaml:4:16 stop_on_error: expected true or false, got the string "maybe"',
      'staplekeeper.yaml:7:11 domains.a.cert: expected a string, got the number 5',
      'staplekeeper.yaml:8:10 domains.a.ocsp: expected a string, got an empty value',
      'staplekeeper.yaml:9:3 domains.b.cert: required key `cert` is missing',
      'staplekeeper.yaml:11:12 scan_keys: expected a list, got a mapping',
      'staplekeeper.yaml:12:16 http.method: expected one of "auto", "get", "post", got the string "put"',
      'staplekeeper.yaml:12:28 http.proxy: expected an http:// or https:// URL, got the string "socks5://p:1"',
      'staplekeeper.yaml:12:53 http.timeout: must be longer than 0 seconds',
      'staplekeeper.yaml:13:14 concurrency: expected a whole number, got the number 2.5',
      'staplekeeper.yaml:14:15 lock_timeout: invalid duration "soon": cannot read "soon" (expected a number and a unit such as "3d")',
      'staplekeeper.yaml:15:27 daemon.status.listen: expected a string, got the number 9100',
    ]);
    expect((error.details.problems as ConfigProblem[])[0]).toEqual({
      file: 'staplekeeper.yaml',
      line: 1,
      col: 19,
      path: 'minimum_validity',
      message: 'expected a duration with a unit, e.g. "3600s" or "3600m", got the number 3600',
    });
  });

  it('rejects a percentage out of range and a bad listen address', async () => {
    expect((await loadError('minimum_validity_percentage: 101\n')).error.message).toBe(
      'staplekeeper.yaml:1:30 minimum_validity_percentage: must be at most 100, got the number 101',
    );
    expect((await loadError('daemon: {status: {listen: "localhost"}}\n')).error.message).toBe(
      'staplekeeper.yaml:1:27 daemon.status.listen: expected host:port such as "127.0.0.1:9100" or "[::1]:9100", got the string "localhost"',
    );
  });

  it('rejects a file that is not a mapping', async () => {
    const { error } = await loadError('- a\n- b\n');
    expect(error.message).toBe('staplekeeper.yaml:1:1: expected a mapping, got a list');
  });

  it('reports duplicate keys in one mapping with both places', async () => {
    const { error } = await loadError('http:\n  timeout: 5s\n  timeout: 6s\n');
    expect(error.message).toBe(
      'staplekeeper.yaml:3:3 http.timeout: duplicate key "timeout" (first defined at staplekeeper.yaml:2:3)',
    );
  });
});

describe('loadConfig: unreadable files and YAML syntax', () => {
  it('reports a YAML syntax error as CONFIG_YAML with its position', async () => {
    const { error } = await loadError('domains:\n  a: {cert: a.pem\nocsp_folder: x\n');
    expect(error.code).toBe('CONFIG_YAML');
    expect(error.message.split('\n')[0]).toMatch(/^staplekeeper\.yaml:\d+:\d+: YAML syntax error: \S/);
    expect(error.details.problems).toBeInstanceOf(Array);
  });

  it('reports a tab indentation error at its line', async () => {
    const { error } = await loadError('domains:\n\ta: x\n');
    expect(error.code).toBe('CONFIG_YAML');
    expect(error.message).toMatch(/^staplekeeper\.yaml:2:1: YAML syntax error: /);
  });

  it('reports a missing configuration file as CONFIG_YAML (ocspbot exits -2 for it)', async () => {
    const root = await tree({});
    await expect(loadChecked('ocspbot.yaml', { cwd: root })).rejects.toMatchObject({
      code: 'CONFIG_YAML',
      message: 'ocspbot.yaml: cannot read the configuration file: no such file',
    });
  });
});

describe('findDefaultConfig', () => {
  it('prefers staplekeeper.yaml, falls back to ocspbot.yaml, else undefined', async () => {
    const both = await tree({ 'staplekeeper.yaml': '', 'ocspbot.yaml': '' });
    expect(findDefaultConfig(both)).toBe(path.join(both, 'staplekeeper.yaml'));
    const legacy = await tree({ 'ocspbot.yaml': '' });
    expect(findDefaultConfig(legacy)).toBe(path.join(legacy, 'ocspbot.yaml'));
    const none = await tree({ 'staplekeeper.yaml/x': '' });
    expect(findDefaultConfig(none)).toBeUndefined();
  });
});
