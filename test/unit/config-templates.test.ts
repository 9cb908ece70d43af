/**
 * Output naming templates (README.md "Configuration"): `domains.*.ocsp` and `scan_keys[].ocsp_mask`
 * may use {cert}, {cert_dir}, {cert_name}, {cert_stem} and {domain}, so that
 * HAProxy's `<cert file>.ocsp` beside the certificate is `ocsp: "{cert}.ocsp"`
 * and nginx or Exim get any name, while values without these placeholders
 * keep ocspbot's meaning. Also: the `haproxy` socket path resolution.
 */
import path from 'node:path';
import { loadError, loadText, triple } from '../helpers/config-load.js';
import { describe, expect, it } from 'vitest';
import { expandOutputTemplate, scanTargets } from '../../src/config/load.js';
import { scanFolder } from '../../src/config/scan.js';
import type { StapleError } from '../../src/core/errors.js';
import type { LoadedConfig } from '../../src/config/types.js';

/** The error of a configuration that must not load. */
const errorOf = async (yaml: string, files: Record<string, string> = {}): Promise<StapleError> =>
  (await loadError(yaml, files)).error;

const staples = (config: LoadedConfig): Record<string, string> =>
  Object.fromEntries(config.targets.map((t) => [t.id, t.staplePath]));

describe('expandOutputTemplate', () => {
  const vars = { certPath: '/etc/ssl/site/example.com.pem', domain: 'example.com' };
  it('fills every placeholder, every time it occurs', () => {
    expect(expandOutputTemplate('{cert}.ocsp', vars)).toBe('/etc/ssl/site/example.com.pem.ocsp');
    expect(expandOutputTemplate('{cert_dir}/{cert_stem}.der', vars)).toBe('/etc/ssl/site/example.com.der');
    expect(expandOutputTemplate('{cert_name}.ocsp', vars)).toBe('example.com.pem.ocsp');
    expect(expandOutputTemplate('{domain}/{domain}.der', vars)).toBe('example.com/example.com.der');
    expect(expandOutputTemplate('plain.der', vars)).toBe('plain.der');
  });
  it('strips only the last extension for {cert_stem}', () => {
    expect(expandOutputTemplate('{cert_stem}', { certPath: '/c/fullchain.pem', domain: 'x' })).toBe('fullchain');
    expect(expandOutputTemplate('{cert_stem}', { certPath: '/c/a.b.crt', domain: 'x' })).toBe('a.b');
    expect(expandOutputTemplate('{cert_stem}', { certPath: '/c/noext', domain: 'x' })).toBe('noext');
  });
  it('substitutes in one pass: a value holding a placeholder is not expanded again', () => {
    expect(expandOutputTemplate('{domain}-{cert_name}', { certPath: '/c/{domain}.pem', domain: 'd{cert}' })).toBe(
      'd{cert}-{domain}.pem',
    );
  });
});

describe('domains: ocsp templates', () => {
  it('puts HAProxy staples beside the certificate ({cert}.ocsp, absolute after substitution)', async () => {
    const { config, root } = await loadText(
      [
        'ocsp_folder: /var/lib/staples',
        'domains:',
        '  site:',
        '    cert: certs/site.pem',
        '    ocsp: "{cert}.ocsp"',
      ].join('\n'),
      { 'certs/site.pem': 'cert' },
    );
    expect(staples(config)).toEqual({ site: path.join(root, 'certs/site.pem.ocsp') });
  });

  it('resolves a relative result against ocsp_folder, as a name without placeholders', async () => {
    const { config, root } = await loadText(
      [
        'ocsp_folder: staples',
        'domains:',
        '  a.example:',
        '    cert: certs/a.pem',
        '    ocsp: "{domain}.der"',
        '  b:',
        '    cert: certs/b.crt',
        '    ocsp: "nginx/{cert_stem}.ocsp"',
        '  c:',
        '    cert: certs/c.pem',
        '    ocsp: "{cert_dir}/ocsp/{cert_name}.der"',
      ].join('\n'),
      { 'certs/a.pem': 'a', 'certs/b.crt': 'b', 'certs/c.pem': 'c' },
    );
    expect(staples(config)).toEqual({
      'a.example': path.join(root, 'staples/a.example.der'),
      b: path.join(root, 'staples/nginx/b.ocsp'),
      c: path.join(root, 'certs/ocsp/c.pem.der'),
    });
  });

  it('keeps ocspbot semantics for names without placeholders', async () => {
    const { config, root } = await loadText(
      [
        'ocsp_folder: staples',
        'domains:',
        '  rel:',
        '    cert: a.pem',
        '    ocsp: rel.ocsp-resp',
        '  abs:',
        '    cert: b.pem',
        '    ocsp: /srv/ocsp/abs.der',
      ].join('\n'),
      { 'a.pem': 'a', 'b.pem': 'b' },
    );
    expect(staples(config)).toEqual({ rel: path.join(root, 'staples/rel.ocsp-resp'), abs: '/srv/ocsp/abs.der' });
  });

  it('rejects an unknown placeholder with its position and a suggestion', async () => {
    const e = await errorOf(['domains:', '  site:', '    cert: a.pem', '    ocsp: "{cert_nam}.der"'].join('\n'), {
      'a.pem': 'a',
    });
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(
      /^staplekeeper\.yaml:4:11 domains\.site\.ocsp: unknown placeholder \{cert_nam\}; did you mean \{cert_name\}\? \(placeholders: \{cert\} \{cert_dir\} \{cert_name\} \{cert_stem\} \{domain\}\)$/,
    );
  });

  it('refuses a template that names the certificate itself', async () => {
    const e = await errorOf(['domains:', '  site:', '    cert: a.pem', '    ocsp: "{cert}"'].join('\n'), {
      'a.pem': 'a',
    });
    expect(e.message).toContain('is a certificate file of domain site');
    expect(e.message).toContain('writing the staple would destroy it');
  });

  it('refuses two domains whose templates give one file', async () => {
    const e = await errorOf(
      [
        'domains:',
        '  one:',
        '    cert: certs/a.pem',
        '    ocsp: "{cert_dir}/staple.der"',
        '  two:',
        '    cert: certs/b.pem',
        '    ocsp: "{cert_dir}/staple.der"',
      ].join('\n'),
      { 'certs/a.pem': 'a', 'certs/b.pem': 'b' },
    );
    expect(e.message).toMatch(
      /domains\.two\.ocsp: staple file .*certs\/staple\.der of domain two is also the staple file of domain one/,
    );
  });
});

describe('scan_keys: ocsp_mask templates', () => {
  const files = { ...triple('certs', 'a.example'), ...triple('certs/sub', 'b.example') };

  it('puts each staple beside its certificate with {cert}.ocsp (HAProxy)', async () => {
    const { config, root } = await loadText(
      ['ocsp_folder: staples', 'scan_keys:', '  - folder: certs', '    ocsp_mask: "{cert}.ocsp"'].join('\n'),
      files,
    );
    expect(staples(config)).toEqual({
      'a.example': path.join(root, 'certs/a.example.pem.ocsp'),
      'sub/b.example': path.join(root, 'certs/sub/b.example.pem.ocsp'),
    });
  });

  it('keeps the subfolder below ocsp_folder for a relative result, as ocspbot does', async () => {
    const { config, root } = await loadText(
      ['ocsp_folder: staples', 'scan_keys:', '  - folder: certs', '    ocsp_mask: "{cert_stem}.der"'].join('\n'),
      files,
    );
    expect(staples(config)).toEqual({
      'a.example': path.join(root, 'staples/a.example.der'),
      'sub/b.example': path.join(root, 'staples/sub/b.example.der'),
    });
  });

  it('leaves masks with only {domain} exactly as ocspbot names them', async () => {
    const { config, root } = await loadText(
      ['ocsp_folder: staples', 'scan_keys:', '  - folder: certs'].join('\n'),
      files,
    );
    expect(staples(config)).toEqual({
      'a.example': path.join(root, 'staples/a.example.ocsp-resp'),
      'sub/b.example': path.join(root, 'staples/sub/b.example.ocsp-resp'),
    });
  });

  it('accepts {cert_dir} together with a per-certificate placeholder', async () => {
    const { config, root } = await loadText(
      ['scan_keys:', '  - folder: certs', '    ocsp_mask: "{cert_dir}/{domain}.der"'].join('\n'),
      files,
    );
    expect(staples(config)).toEqual({
      'a.example': path.join(root, 'certs/a.example.der'),
      'sub/b.example': path.join(root, 'certs/sub/b.example.der'),
    });
  });

  it('covers a HAProxy crt folder of self-contained PEM bundles (the documented masks)', async () => {
    const { config, root } = await loadText(
      [
        'scan_keys:',
        '  - folder: haproxy/certs',
        '    cert_mask: "{domain}.pem"',
        '    chain_mask: "{domain}.pem"',
        '    rootchain_mask: "{domain}.pem"',
        '    ocsp_mask: "{cert}.ocsp"',
      ].join('\n'),
      {
        'haproxy/certs/a.example.pem': 'bundle',
        'haproxy/certs/b.example.pem': 'bundle',
        'haproxy/certs/a.example.pem.ocsp': 'staple',
      },
    );
    expect(staples(config)).toEqual({
      'a.example': path.join(root, 'haproxy/certs/a.example.pem.ocsp'),
      'b.example': path.join(root, 'haproxy/certs/b.example.pem.ocsp'),
    });
  });

  it('refuses a mask that would give every certificate one staple', async () => {
    const e = await errorOf(
      ['scan_keys:', '  - folder: certs', '    ocsp_mask: "{cert_dir}/staple.der"'].join('\n'),
      files,
    );
    expect(e.message).toMatch(
      /^staplekeeper\.yaml:3:16 scan_keys\[0\]\.ocsp_mask: the mask must contain \{domain\} \(or \{cert\}, \{cert_name\} or \{cert_stem\}\), or every certificate would share one staple file$/,
    );
  });

  it('rejects unknown placeholders in a mask', async () => {
    const e = await errorOf(['scan_keys:', '  - folder: certs', '    ocsp_mask: "{domian}.der"'].join('\n'), files);
    expect(e.message).toContain('scan_keys[0].ocsp_mask: unknown placeholder {domian}; did you mean {domain}?');
  });

  it('names staples in a re-scan (scanTargets, for the daemon) exactly as loadConfig did', async () => {
    const { config } = await loadText(
      ['ocsp_folder: staples', 'scan_keys:', '  - folder: certs', '    ocsp_mask: "{cert}.ocsp"'].join('\n'),
      files,
    );
    const scan = config.scans[0]!;
    expect(await scanTargets(scan, config.settings.ocspFolder)).toEqual(config.targets);
    // scanFolder itself only knows {domain}: the daemon must call scanTargets
    const raw = await scanFolder(scan, config.settings.ocspFolder);
    expect(raw.map((t) => t.staplePath)).not.toEqual(config.targets.map((t) => t.staplePath));
  });
});

describe('haproxy socket paths', () => {
  it('resolves a unix socket path against the working directory and keeps host:port', async () => {
    const { config, root } = await loadText(
      [
        'domains:',
        '  site:',
        '    cert: a.pem',
        '    ocsp: "{cert}.ocsp"',
        'haproxy:',
        '  - socket: run/admin.sock',
        '    certificates: [site]',
        '  - socket: /run/haproxy/admin.sock',
        '  - socket: 127.0.0.1:9999',
        '  - socket: "[::1]:9999"',
        '  - socket: unix@run/other.sock',
      ].join('\n'),
      { 'a.pem': 'a' },
    );
    expect(config.settings.haproxy).toEqual([
      { socket: path.join(root, 'run/admin.sock'), certificates: ['site'] },
      { socket: '/run/haproxy/admin.sock', certificates: [] },
      { socket: '127.0.0.1:9999', certificates: [] },
      { socket: '[::1]:9999', certificates: [] },
      { socket: `unix@${path.join(root, 'run/other.sock')}`, certificates: [] },
    ]);
  });
});
