/**
 * The `fleet:` section (docs/fleet.md): defaults, rediss:// and passwords,
 * and one located error per mistake. Every load runs with and without the
 * configuration cache (helpers/config-load.ts), so the cache keeps working
 * with the section.
 */
import { describe, expect, it } from 'vitest';
import { loadError, loadText } from '../helpers/config-load.js';

const base = 'domains:\n  a:\n    cert: a.pem\n    ocsp: a.der\n';
const files = { 'a.pem': 'cert' };

describe('fleet configuration', () => {
  it('is absent unless configured', async () => {
    const { config } = await loadText(base, files);
    expect(config.settings.fleet).toBeUndefined();
  });

  it('takes the defaults: prefix "staplekeeper:", fetch true', async () => {
    const { config } = await loadText(`${base}fleet:\n  redis: redis://127.0.0.1:6379/0\n`, files);
    expect(config.settings.fleet).toEqual({ redis: 'redis://127.0.0.1:6379/0', prefix: 'staplekeeper:', fetch: true });
  });

  it('accepts rediss://, a password, a prefix and fetch: false', async () => {
    const { config } = await loadText(
      `${base}fleet:\n  redis: "rediss://:s3cret@redis.internal:6380/2"\n  prefix: "sk:"\n  fetch: false\n`,
      files,
    );
    expect(config.settings.fleet).toEqual({
      redis: 'rediss://:s3cret@redis.internal:6380/2',
      prefix: 'sk:',
      fetch: false,
    });
  });

  it.each([
    ['fleet:\n  redis: http://127.0.0.1:6379\n', /fleet\.redis: expected a redis:\/\/ or rediss:\/\/ URL/],
    ['fleet:\n  redis: not a url\n', /fleet\.redis: expected a redis:\/\/ or rediss:\/\/ URL such as/],
    ['fleet:\n  redis: redis://127.0.0.1:6379/zero\n', /fleet\.redis: the database in the Redis URL must be a number/],
    ['fleet:\n  redis: redis://127.0.0.1:6379/0?x=1\n', /fleet\.redis: the Redis URL must not carry a query/],
    ['fleet:\n  prefix: "sk:"\n', /fleet\.redis: required key `redis` is missing/],
    [
      'fleet:\n  redis: redis://127.0.0.1\n  fetsh: false\n',
      /fleet\.fetsh: unknown key `fetsh`; did you mean `fetch`\?/,
    ],
    [
      'fleet:\n  redis: redis://127.0.0.1\n  fetch: "no"\n',
      /fleet\.fetch: expected true or false, got the string "no"/,
    ],
    ['fleet:\n  redis: redis://127.0.0.1\n  prefix: ""\n', /fleet\.prefix: must not be empty/],
    ['fleet: redis://127.0.0.1\n', /fleet: expected a mapping/],
  ])('%j is a located configuration error', async (yaml, re) => {
    const { error } = await loadError(`${base}${yaml}`, files);
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toMatch(/staplekeeper\.yaml:\d+:\d+ /);
    expect(error.message).toMatch(re);
  });

  it('never repeats a password in an error', async () => {
    const { error } = await loadError(`${base}fleet:\n  redis: "redis://:hunter2@host/notanumber"\n`, files);
    expect(error.message).not.toContain('hunter2');
  });
});
