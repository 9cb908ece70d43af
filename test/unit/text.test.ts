import { describe, expect, it } from 'vitest';
import { escapeControls, escapeLines } from '../../src/core/text.js';

describe('escapeControls (docs/SECURITY.md "File names cannot forge log lines")', () => {
  it('escapes C0, DEL and C1 controls and leaves printable text alone', () => {
    expect(escapeControls('x\n[other] renewed')).toBe('x\\n[other] renewed');
    expect(escapeControls('a\rb\tc\u0000d\u001b[2Ke\u007ff\u0085g')).toBe('a\\rb\\tc\\x00d\\x1b[2Ke\\x7ff\\x85g');
    expect(escapeControls('café – ünïcode 证书')).toBe('café – ünïcode 证书');
    expect(escapeControls('')).toBe('');
  });

  it('escapeLines keeps the newlines between lines', () => {
    expect(escapeLines('one\ntwo\u001b')).toBe('one\ntwo\\x1b');
  });
});

describe('daemon text log (docs/SECURITY.md "File names cannot forge log lines")', () => {
  it('a file name with a newline or an ESC stays on one line, escaped', async () => {
    const { createLogger } = await import('../../src/cli/daemon.js');
    const written: string[] = [];
    const sink = { write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream;
    const log = createLogger({ stdout: sink, stderr: sink }, { format: 'text', verbose: true, journald: true });
    log({ level: 'warn', id: 'x\n<6>[other] renewed', code: 'HTTP_NETWORK', msg: 'cert x\u001b[2K\r.pem failed' });
    expect(written).toEqual(['<4>[x\\n<6>[other] renewed] warning HTTP_NETWORK: cert x\\x1b[2K\\r.pem failed\n']);
  });
});
