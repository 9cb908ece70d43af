/**
 * The HAProxy push never hands HAProxy a staple worse than the one it was
 * given (docs/SECURITY.md, "A staple only gets better"): against a stand-in runtime API socket that
 * records what it is sent and answers as HAProxy does.
 */
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushToHaproxy } from '../../src/outputs/haproxy.js';
import { buildTestPki, certIdFor, goodResponseFor, mintOcspResponse } from '../helpers/mint.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

let dir: string;
let server: Server;
let socket: string;
const received: Buffer[] = [];

beforeAll(async () => {
  dir = await tempDir('sk-haproxy-mono-');
  socket = join(dir, 'admin.sock');
  server = createServer((c) => {
    let text = '';
    c.on('data', (d: Buffer) => (text += d.toString()));
    c.on('end', () => {
      const m = /^set ssl ocsp-response (\S+)/.exec(text.trim());
      if (m) received.push(Buffer.from(m[1] as string, 'base64'));
      c.end(m ? 'OCSP Response updated!\n' : 'Unknown command\n');
    });
  });
  await new Promise<void>((r) => server.listen(socket, () => r()));
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await cleanUp();
});

describe('pushToHaproxy: a staple only gets better at HAProxy too', () => {
  const now = new Date();
  const pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now });
  const leaf = pki.leaves[0]!;
  const H = 3_600_000;
  const staple = (thisUpdateH: number, nextUpdateH: number): Buffer =>
    goodResponseFor(pki, leaf, now, {
      producedAt: new Date(now.getTime() + thisUpdateH * H),
      single: {
        thisUpdate: new Date(now.getTime() + thisUpdateH * H),
        nextUpdate: new Date(now.getTime() + nextUpdateH * H),
      },
    });

  it('pushes a better staple, not a worse or multi-answer one, and the same bytes again only when forced', async () => {
    const path = join(dir, 'site.der');
    const targets = [{ socket, certificates: [] }];
    const items = [{ id: 'site', staplePath: path }];
    const opts = { stateDir: dir };

    const first = staple(-2, 168);
    await writeFile(path, first);
    expect((await pushToHaproxy(targets, items, opts)).pushed).toHaveLength(1);
    expect(received.at(-1)).toEqual(first);

    // an older backup put back on disk: not pushed, reported
    await writeFile(path, staple(-5, 100));
    const older = await pushToHaproxy(targets, items, opts);
    expect(older.pushed).toHaveLength(0);
    expect(older.kept).toHaveLength(1);
    expect(older.kept[0]?.message).toMatch(
      /not pushed to HAProxy .*kept: .* is shorter than the staple HAProxy was given/,
    );
    expect(received).toHaveLength(1);

    // a multi-answer response, however long: HAProxy would refuse it, and it is not better
    await writeFile(
      path,
      mintOcspResponse({
        signer: pki.signer,
        producedAt: now,
        singles: pki.leaves.map((l) => ({
          certId: certIdFor(l.der, pki.root.der),
          status: 'good' as const,
          thisUpdate: now,
          nextUpdate: new Date(now.getTime() + 300 * H),
        })),
      }),
    );
    expect((await pushToHaproxy(targets, items, opts)).kept).toHaveLength(1);
    expect(received).toHaveLength(1);

    // a newer one goes through
    const newer = staple(-1, 169);
    await writeFile(path, newer);
    expect((await pushToHaproxy(targets, items, opts)).pushed).toHaveLength(1);
    expect(received.at(-1)).toEqual(newer);

    // exactly these bytes again: unchanged, or pushed again when forced (a restarted HAProxy)
    expect((await pushToHaproxy(targets, items, opts)).unchanged).toBe(1);
    expect((await pushToHaproxy(targets, items, { ...opts, force: true })).pushed).toHaveLength(1);

    // another certificate under the same id (a replaced certificate) is never compared with the old one
    const other = goodResponseFor(pki, pki.leaves[1]!, now, {
      single: { nextUpdate: new Date(now.getTime() + 2 * H) },
    });
    await writeFile(path, other);
    expect((await pushToHaproxy(targets, items, opts)).pushed).toHaveLength(1);
    expect(received.at(-1)).toEqual(other);
  });
});
