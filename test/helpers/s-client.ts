/**
 * `openssl s_client -status` as the TLS client of the server tests: what a
 * real client sees of the stapled OCSP response.
 */
import { spawn } from 'node:child_process';

/** What s_client printed about the stapled response. */
export interface StatusView {
  out: string;
  responseStatus?: string;
  certStatus?: string;
  thisUpdate?: Date;
  serial?: string;
  noResponse: boolean;
  /** How long the handshake and output took. */
  ms: number;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** OpenSSL's `Nov 22 10:50:58 2026 GMT`. */
export function parseOpensslTime(text: string): Date | undefined {
  const m = /^(\w{3})\s+(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4}) GMT$/.exec(text.trim());
  if (!m) return undefined;
  return new Date(
    Date.UTC(Number(m[6]), MONTHS.indexOf(m[1] as string), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])),
  );
}

/** Connects to 127.0.0.1:port with `-status` (and SNI when `servername` is given; `starttls: 'smtp'` for a mail server). */
export async function sClient(
  port: number,
  servername?: string,
  options: { starttls?: 'smtp' } = {},
): Promise<StatusView> {
  const started = Date.now();
  const args = [
    's_client',
    '-connect',
    `127.0.0.1:${port}`,
    ...(servername ? ['-servername', servername] : []),
    ...(options.starttls ? ['-starttls', options.starttls] : []),
    '-status',
  ];
  const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  child.stdin.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await new Promise((r) => child.once('close', r));
  clearTimeout(timer);
  const view: StatusView = { out, noResponse: /OCSP response: no response sent/.test(out), ms: Date.now() - started };
  const rs = /OCSP Response Status: (\w+)/.exec(out);
  if (rs) view.responseStatus = rs[1];
  const cs = /Cert Status: (\w+)/.exec(out);
  if (cs) view.certStatus = cs[1];
  const tu = /This Update: (.+)/.exec(out);
  if (tu) view.thisUpdate = parseOpensslTime(tu[1] as string);
  const sn = /OCSP Response Data:[\s\S]*?Serial Number: ([0-9A-F]+)/.exec(out);
  if (sn) view.serial = sn[1];
  return view;
}
