/**
 * A test-only OCSP responder on 127.0.0.1 that answers however a test tells it
 * to, including in ways no real responder should: wrong statuses, damaged DER,
 * responses for other certificates or from unauthorised signers, endless or
 * trickling bodies, resets, redirect loops, silence.
 *
 * The server itself only knows how to *play* a {@link Behaviour}; what to play
 * is decided per request by a handler. {@link SCENARIOS} is the catalogue of
 * named misbehaviours, each with the staplekeeper error code a correct client
 * must report, so the hostile-responder tests can loop over it.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { ErrorCode } from '../../src/core/errors.js';
import {
  buildTestPki,
  certFacts,
  certIdFor,
  derLength,
  goodResponseFor,
  mintCert,
  mintOcspResponse,
  OID,
  readDer,
  sharedKey,
  tlv,
  type CertIdFields,
  type GoodResponseOverrides,
  type KeyType,
  type MintedCert,
  type TestPki,
} from './mint.js';

// ---------------------------------------------------------------------------
// What the server can play
// ---------------------------------------------------------------------------

/** One way of answering a request. */
export type Behaviour =
  /** An ordinary HTTP answer. Headers are sent exactly as given (no Content-Type is added). `chunked` omits Content-Length. */
  | { kind: 'respond'; status: number; headers?: Record<string, string>; body: Buffer | string; chunked?: boolean }
  /** 200 with a chunked body that never ends: `chunkSize` bytes every `intervalMs` (default 64 KiB every 5 ms). */
  | { kind: 'stream-forever'; contentType?: string; chunkSize?: number; intervalMs?: number }
  /** 200 with Content-Length of `bytes`, then one byte every `intervalMs` (default 1000). */
  | { kind: 'slow'; bytes: Buffer; intervalMs?: number; contentType?: string }
  /** Writes `before` raw onto the socket (may be a partial HTTP response, or nothing), then resets the connection. */
  | { kind: 'reset'; before?: Buffer }
  /** Reads the request and never answers; the socket stays open until the client gives up or close(). */
  | { kind: 'hang' }
  /** A redirect (default 302) to `location`, taken literally. */
  | { kind: 'redirect'; location: string; status?: number };

/** A request as the responder saw it. */
export interface EvilRequest {
  method: string;
  /** Path and query, as sent. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Raw request body (empty for GET). */
  body: Buffer;
  /** The OCSP request DER: the POST body, or the base64 decoded from a GET path; null if neither decodes. */
  der: Buffer | null;
}

export interface ResponderInfo {
  /** http://127.0.0.1:PORT (no trailing slash). */
  baseUrl: string;
}

export type EvilHandler = (req: EvilRequest, info: ResponderInfo) => Behaviour | Promise<Behaviour>;

export interface EvilResponder {
  /** Base URL with a path, suitable as an AIA OCSP URL: http://127.0.0.1:PORT/ocsp */
  url: string;
  port: number;
  /** Every request received, in order. */
  requests: EvilRequest[];
  /** Stops listening and destroys every open socket (hanging ones included). */
  close(): Promise<void>;
}

export const OCSP_CONTENT_TYPE = 'application/ocsp-response';

/**
 * Decodes the OCSP request from a GET path (RFC 6960 A.1: `{url}/{urlencode(base64(DER))}`).
 * The responder does not know the client's path prefix, and some clients leave
 * '/' in the base64 unescaped, so every suffix of the path starting after a '/'
 * is tried; the first that decodes to exactly one DER SEQUENCE wins.
 */
export function decodeGetPath(path: string): Buffer | null {
  const p = path.split('?')[0]!;
  for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) {
    let text: string;
    try {
      text = decodeURIComponent(p.slice(i + 1));
    } catch {
      continue;
    }
    if (!/^[A-Za-z0-9+/=_-]+$/.test(text)) continue;
    const der = Buffer.from(text, 'base64');
    try {
      const el = readDer(der, 0);
      if (el.tag === 0x30 && el.end === der.length) return der;
    } catch {
      // not this suffix
    }
  }
  return null;
}

/** Starts the responder on 127.0.0.1 with an ephemeral port. */
export async function startEvilResponder(handler: EvilHandler): Promise<EvilResponder> {
  const requests: EvilRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let closing = false;
  let baseUrl = '';

  // Timers are tracked so close() can stop trickling and endless bodies at once.
  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const play = (b: Behaviour, res: ServerResponse): void => {
    const socket = res.socket;
    switch (b.kind) {
      case 'respond': {
        const body = typeof b.body === 'string' ? Buffer.from(b.body) : b.body;
        if (b.chunked) {
          res.writeHead(b.status, b.headers ?? {});
          // Several writes before end() make Node use chunked encoding instead of Content-Length.
          for (let off = 0; off < body.length; off += 65_536) res.write(body.subarray(off, off + 65_536));
          res.end();
        } else {
          res.writeHead(b.status, { ...(b.headers ?? {}), 'content-length': String(body.length) });
          res.end(body);
        }
        return;
      }
      case 'stream-forever': {
        res.writeHead(200, { 'content-type': b.contentType ?? OCSP_CONTENT_TYPE });
        const chunk = Buffer.alloc(b.chunkSize ?? 65_536, 0x30);
        const pump = (): void => {
          if (closing || res.destroyed || res.writableEnded) return;
          // Respect back-pressure: a client that stopped reading must not make us buffer without bound.
          if (res.write(chunk)) later(b.intervalMs ?? 5, pump);
          else res.once('drain', () => later(b.intervalMs ?? 5, pump));
        };
        pump();
        return;
      }
      case 'slow': {
        res.writeHead(200, {
          'content-type': b.contentType ?? OCSP_CONTENT_TYPE,
          'content-length': String(b.bytes.length),
        });
        res.flushHeaders();
        let i = 0;
        const drip = (): void => {
          if (closing || res.destroyed) return;
          res.write(b.bytes.subarray(i, i + 1));
          i++;
          if (i >= b.bytes.length) res.end();
          else later(b.intervalMs ?? 1000, drip);
        };
        later(b.intervalMs ?? 1000, drip);
        return;
      }
      case 'reset': {
        if (!socket) return;
        const kill = (): void => {
          // resetAndDestroy sends a TCP RST (an abrupt failure the client must
          // classify as a network error), unlike destroy(), which closes with FIN.
          if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
          else socket.destroy();
        };
        if (b.before && b.before.length > 0) socket.write(b.before, () => later(20, kill));
        else kill();
        return;
      }
      case 'hang':
        return;
      case 'redirect':
        res.writeHead(b.status ?? 302, { location: b.location, 'content-length': '0' });
        res.end();
        return;
    }
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? '/';
      const method = req.method ?? 'GET';
      const er: EvilRequest = {
        method,
        path,
        headers: req.headers,
        body,
        der: method === 'POST' ? (body.length > 0 ? body : null) : decodeGetPath(path),
      };
      requests.push(er);
      Promise.resolve()
        .then(() => handler(er, { baseUrl }))
        .then(
          (b) => play(b, res),
          (e: unknown) => {
            // A throwing handler is a bug in the test; say so loudly instead of hanging.
            res.writeHead(599, { 'content-type': 'text/plain' });
            res.end(`evil-responder handler threw: ${String(e)}`);
          },
        );
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  // The default request/headers timeouts would cut a 'hang' short on their own schedule; tests decide.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 1000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  baseUrl = `http://127.0.0.1:${port}`;

  return {
    url: `${baseUrl}/ocsp`,
    port,
    requests,
    close: async () => {
      closing = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      sockets.clear();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/** What a scenario builder gets. */
export interface ScenarioContext {
  pki: TestPki;
  /** The certificate whose status is being asked. */
  leaf: MintedCert;
  /** Its issuer (pki.root). */
  issuer: MintedCert;
  /** The clock the response times are built around. */
  now: Date;
  /** A response that a correct client accepts at `now`, optionally bent. */
  good(overrides?: GoodResponseOverrides): Buffer;
  /** CertID fields (SHA-1) of `leaf`. */
  certId: CertIdFields;
  /** Absolute URL of the request being answered (set by {@link scenarioHandler}); redirect loops point here. */
  selfUrl: string;
}

export interface Scenario {
  name: string;
  /** The staplekeeper error code a correct client reports, or 'OK' when the answer must be accepted. */
  expectedCode: ErrorCode | 'OK';
  /** Loosely what part of the rules it attacks. */
  category: 'status' | 'structure' | 'certid' | 'signer' | 'signature' | 'time' | 'content' | 'http' | 'transport';
  /** True when the client only fails by running out of time: give it a short timeout in tests. */
  needsTimeout?: boolean;
  build(ctx: ScenarioContext): Behaviour;
}

/** Builds a context around a PKI; `leaf` defaults to the first leaf, `now` to the PKI's clock. */
export function makeScenarioContext(
  pki: TestPki,
  leaf: MintedCert = pki.leaves[0]!,
  now: Date = pki.now,
): ScenarioContext {
  return {
    pki,
    leaf,
    issuer: pki.root,
    now,
    good: (o) => goodResponseFor(pki, leaf, now, o),
    certId: certIdFor(leaf.der, pki.root.der),
    selfUrl: 'http://127.0.0.1/',
  };
}

/** Convenience: a fresh PKI of the given key type and its scenario context. */
export function scenarioContextFor(
  keyType: KeyType = 'ec-p256',
  delegated = true,
  now?: Date,
  ocspUrl?: string,
): ScenarioContext {
  return makeScenarioContext(
    buildTestPki({ keyType, delegated, ...(now ? { now } : {}), ...(ocspUrl ? { ocspUrl } : {}) }),
  );
}

/** A handler that plays `scenario` for every request, filling in `selfUrl`. */
export function scenarioHandler(scenario: Scenario, ctx: Omit<ScenarioContext, 'selfUrl'>): EvilHandler {
  return (req, info) => scenario.build({ ...ctx, selfUrl: `${info.baseUrl}${req.path}` });
}

/** Starts a responder that plays `scenario`. */
export function startScenarioResponder(
  scenario: Scenario,
  ctx: Omit<ScenarioContext, 'selfUrl'>,
): Promise<EvilResponder> {
  return startEvilResponder(scenarioHandler(scenario, ctx));
}

// -- byte-level damage ------------------------------------------------------

const ocsp = (body: Buffer): Behaviour => ({
  kind: 'respond',
  status: 200,
  headers: { 'content-type': OCSP_CONTENT_TYPE },
  body,
});

/** Recognisably not DER: starts with a tag no OCSP structure uses, then pseudo-random bytes. */
export const GARBAGE = Buffer.concat([
  Buffer.from([0xde, 0xad, 0xbe, 0xef]),
  ...Array.from({ length: 8 }, (_, i) => createHash('sha256').update(`garbage ${i}`).digest()),
]);

/** Same contents, but the outer element's length field says `len` (re-encoded in minimal form). */
export function withOuterLength(der: Buffer, len: number): Buffer {
  const el = readDer(der, 0);
  return Buffer.concat([Buffer.from([el.tag]), derLength(len), der.subarray(el.contentStart)]);
}

/** Same contents, outer length field 0x84 ff ff ff ff (4 GiB - 1), the classic allocation bomb. */
export function withHugeOuterLength(der: Buffer): Buffer {
  const el = readDer(der, 0);
  return Buffer.concat([Buffer.from([el.tag, 0x84, 0xff, 0xff, 0xff, 0xff]), der.subarray(el.contentStart)]);
}

/**
 * Makes the BasicOCSPResponse inside responseBytes claim `extra` more bytes than
 * the OCTET STRING around it holds. The outer structure stays valid, so only a
 * parser that checks nested lengths notices.
 */
export function withInnerOverrun(resp: Buffer, extra = 10): Buffer {
  const out = Buffer.from(resp);
  const top = readDer(out, 0);
  const status = readDer(out, top.contentStart);
  const wrapper = readDer(out, status.end); // [0] EXPLICIT
  const rb = readDer(out, wrapper.contentStart); // ResponseBytes SEQUENCE
  const type = readDer(out, rb.contentStart);
  const octets = readDer(out, type.end);
  const basic = readDer(out, octets.contentStart);
  const lenBytes = basic.contentStart - basic.start - 1;
  const newLen = basic.end - basic.contentStart + extra;
  if (lenBytes === 1) {
    if (newLen >= 0x80) throw new Error('withInnerOverrun: length form would change');
    out[basic.start + 1] = newLen;
  } else {
    // Long form: rewrite the n length octets in place.
    const n = lenBytes - 1;
    for (let i = 0; i < n; i++) out[basic.start + 2 + i] = Math.floor(newLen / 256 ** (n - 1 - i)) & 0xff;
  }
  return out;
}

function flipLastByte(b: Buffer): Buffer {
  const c = Buffer.from(b);
  c[c.length - 1]! ^= 0x01;
  return c;
}

function statusOnly(status: number): Buffer {
  // An OCSPResponse with just responseStatus: SEQUENCE { ENUMERATED status }.
  // Written by hand because the schema's enum would not let us say 4 or 99 by name.
  return tlv(0x30, tlv(0x0a, Buffer.from([status])));
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ago = (ctx: ScenarioContext, ms: number): Date => new Date(ctx.now.getTime() - ms);
const ahead = (ctx: ScenarioContext, ms: number): Date => new Date(ctx.now.getTime() + ms);

/** A good single response for `ctx.leaf`'s CertID with some fields changed. */
function bentSingle(ctx: ScenarioContext, certId: Partial<CertIdFields>) {
  return { single: { certId: { ...ctx.certId, ...certId } } };
}

/** A good response for our certificate, signed by `signer`, with its certificate included. */
function signedBy(ctx: ScenarioContext, signer: MintedCert): Behaviour {
  return ocsp(ctx.good({ signer, includeSignerCert: true }));
}

const HTML =
  '<!doctype html><html><head><title>503 Service Unavailable</title></head><body><h1>Oops</h1></body></html>';
const CRITICAL_UNKNOWN = { oid: '1.3.6.1.4.1.55555.1.1', critical: true, value: tlv(0x05, Buffer.alloc(0)) };

/**
 * The catalogue of misbehaviours. Codes follow src/core/errors.ts; where a
 * defect could be described two ways (an unknown CertID hash can never match
 * our CertID) the code is the one the verifier reaches first by the rules of
 * RFC 6960 §3.2 and §4.2.2.
 */
export const SCENARIOS: Scenario[] = [
  // -- responseStatus -------------------------------------------------------
  {
    name: 'status-malformedRequest',
    expectedCode: 'OCSP_MALFORMED_REQUEST',
    category: 'status',
    build: () => ocsp(statusOnly(1)),
  },
  {
    name: 'status-internalError',
    expectedCode: 'OCSP_INTERNAL_ERROR',
    category: 'status',
    build: () => ocsp(statusOnly(2)),
  },
  { name: 'status-tryLater', expectedCode: 'OCSP_TRY_LATER', category: 'status', build: () => ocsp(statusOnly(3)) },
  {
    name: 'status-sigRequired',
    expectedCode: 'OCSP_SIG_REQUIRED',
    category: 'status',
    build: () => ocsp(statusOnly(5)),
  },
  {
    name: 'status-unauthorized',
    expectedCode: 'OCSP_UNAUTHORIZED',
    category: 'status',
    build: () => ocsp(statusOnly(6)),
  },
  { name: 'status-undefined-4', expectedCode: 'OCSP_BAD_STATUS', category: 'status', build: () => ocsp(statusOnly(4)) },
  {
    name: 'status-undefined-99',
    expectedCode: 'OCSP_BAD_STATUS',
    category: 'status',
    build: () => ocsp(statusOnly(99)),
  },
  {
    name: 'successful-without-responseBytes',
    expectedCode: 'OCSP_NO_RESPONSE_BYTES',
    category: 'structure',
    build: () => ocsp(statusOnly(0)),
  },
  {
    name: 'unknown-response-type',
    expectedCode: 'OCSP_UNKNOWN_RESPONSE_TYPE',
    category: 'structure',
    build: (ctx) => ocsp(ctx.good({ responseType: '1.3.6.1.5.5.7.48.1.99' })),
  },
  // -- damaged DER ----------------------------------------------------------
  { name: 'garbage', expectedCode: 'OCSP_MALFORMED', category: 'structure', build: () => ocsp(GARBAGE) },
  {
    name: 'empty-body',
    expectedCode: 'OCSP_MALFORMED',
    category: 'structure',
    build: () => ocsp(Buffer.alloc(0)),
  },
  {
    name: 'truncated-der',
    expectedCode: 'OCSP_MALFORMED',
    category: 'structure',
    build: (ctx) => {
      const g = ctx.good();
      return ocsp(g.subarray(0, Math.floor(g.length / 2)));
    },
  },
  {
    name: 'trailing-bytes',
    expectedCode: 'OCSP_MALFORMED',
    category: 'structure',
    build: (ctx) => ocsp(Buffer.concat([ctx.good(), Buffer.from('trailing junk')])),
  },
  {
    name: 'overlong-outer-length',
    expectedCode: 'OCSP_MALFORMED',
    category: 'structure',
    build: (ctx) => {
      const g = ctx.good();
      const el = readDer(g, 0);
      return ocsp(withOuterLength(g, el.end - el.contentStart + 100));
    },
  },
  {
    name: 'huge-outer-length-0x84ffffffff',
    expectedCode: 'OCSP_MALFORMED',
    category: 'structure',
    build: (ctx) => ocsp(withHugeOuterLength(ctx.good())),
  },
  {
    name: 'inner-length-overrun',
    expectedCode: 'OCSP_MALFORMED',
    category: 'structure',
    build: (ctx) => ocsp(withInnerOverrun(ctx.good())),
  },
  {
    name: 'html-page-status-200',
    expectedCode: 'OCSP_MALFORMED',
    category: 'structure',
    build: () => ({
      kind: 'respond',
      status: 200,
      headers: { 'content-type': 'text/html; charset=utf-8' },
      body: HTML,
    }),
  },
  {
    name: 'wrong-content-type-garbage-body',
    expectedCode: 'OCSP_MALFORMED',
    category: 'structure',
    build: () => ({ kind: 'respond', status: 200, headers: { 'content-type': 'text/plain' }, body: GARBAGE }),
  },
  {
    // A missing Content-Type is only worth a warning; the body decides.
    name: 'missing-content-type-good-body',
    expectedCode: 'OK',
    category: 'http',
    build: (ctx) => ({ kind: 'respond', status: 200, headers: {}, body: ctx.good() }),
  },
  // -- CertID ---------------------------------------------------------------
  {
    name: 'wrong-serial',
    expectedCode: 'OCSP_CERTID_MISMATCH',
    category: 'certid',
    build: (ctx) => ocsp(ctx.good(bentSingle(ctx, { serial: flipLastByte(ctx.certId.serial) }))),
  },
  {
    name: 'wrong-issuer-name-hash',
    expectedCode: 'OCSP_CERTID_MISMATCH',
    category: 'certid',
    build: (ctx) => ocsp(ctx.good(bentSingle(ctx, { issuerNameHash: flipLastByte(ctx.certId.issuerNameHash) }))),
  },
  {
    name: 'wrong-issuer-key-hash',
    expectedCode: 'OCSP_CERTID_MISMATCH',
    category: 'certid',
    build: (ctx) => ocsp(ctx.good(bentSingle(ctx, { issuerKeyHash: flipLastByte(ctx.certId.issuerKeyHash) }))),
  },
  {
    // An unknown hash algorithm (with SHA-1 sized hashes) can never match the CertID we sent.
    name: 'unknown-certid-hash-algorithm',
    expectedCode: 'OCSP_CERTID_MISMATCH',
    category: 'certid',
    build: (ctx) => ocsp(ctx.good(bentSingle(ctx, { hashAlg: '1.2.3.4.5.6' }))),
  },
  {
    name: 'several-singles-none-ours',
    expectedCode: 'OCSP_CERTID_MISMATCH',
    category: 'certid',
    build: (ctx) => {
      const others = [0x11, 0x22, 0x33].map((b) =>
        Buffer.concat([Buffer.from([0x01, b]), ctx.certId.serial.subarray(2)]),
      );
      const thisUpdate = ago(ctx, HOUR);
      return ocsp(
        mintOcspResponse({
          signer: ctx.pki.signer,
          producedAt: thisUpdate,
          singles: others.map((serial) => ({
            certId: { ...ctx.certId, serial },
            status: 'good' as const,
            thisUpdate,
            nextUpdate: ahead(ctx, 7 * DAY),
          })),
        }),
      );
    },
  },
  // -- who signed -----------------------------------------------------------
  {
    name: 'signed-by-unrelated-ca',
    expectedCode: 'OCSP_UNAUTHORIZED_SIGNER',
    category: 'signer',
    build: (ctx) => signedBy(ctx, ctx.pki.otherRoot),
  },
  {
    name: 'delegate-without-ocsp-signing-eku',
    expectedCode: 'OCSP_UNAUTHORIZED_SIGNER',
    category: 'signer',
    build: (ctx) => signedBy(ctx, ctx.pki.responderNoEku),
  },
  {
    name: 'delegate-issued-by-other-ca',
    expectedCode: 'OCSP_UNAUTHORIZED_SIGNER',
    category: 'signer',
    build: (ctx) => signedBy(ctx, ctx.pki.responderOtherCa),
  },
  {
    name: 'delegate-expired',
    expectedCode: 'OCSP_UNAUTHORIZED_SIGNER',
    category: 'signer',
    build: (ctx) => signedBy(ctx, ctx.pki.responderExpired),
  },
  {
    name: 'delegate-not-yet-valid',
    expectedCode: 'OCSP_UNAUTHORIZED_SIGNER',
    category: 'signer',
    build: (ctx) => signedBy(ctx, ctx.pki.responderNotYetValid),
  },
  {
    // Properly signed by the legitimate signer, but the responder ID names someone else.
    name: 'responder-id-wrong-name',
    expectedCode: 'OCSP_RESPONDER_ID_MISMATCH',
    category: 'signer',
    build: (ctx) => ocsp(ctx.good({ responderId: { name: certFacts(ctx.pki.otherRoot.der).subjectDer } })),
  },
  {
    name: 'responder-id-wrong-key-hash',
    expectedCode: 'OCSP_RESPONDER_ID_MISMATCH',
    category: 'signer',
    build: (ctx) => ocsp(ctx.good({ responderId: { key: createHash('sha1').update('not the signer key').digest() } })),
  },
  // -- signature ------------------------------------------------------------
  {
    name: 'bad-signature-bit-flip',
    expectedCode: 'OCSP_BAD_SIGNATURE',
    category: 'signature',
    build: (ctx) => ocsp(ctx.good({ corruptSignature: true })),
  },
  {
    name: 'unsupported-signature-algorithm',
    expectedCode: 'OCSP_UNSUPPORTED_ALGORITHM',
    category: 'signature',
    build: (ctx) => ocsp(ctx.good({ sigAlg: '1.2.3.4' })),
  },
  // -- times ----------------------------------------------------------------
  {
    name: 'next-update-in-past',
    expectedCode: 'OCSP_STALE',
    category: 'time',
    build: (ctx) =>
      ocsp(
        ctx.good({
          producedAt: ago(ctx, 8 * DAY),
          single: { thisUpdate: ago(ctx, 8 * DAY), nextUpdate: ago(ctx, HOUR) },
        }),
      ),
  },
  {
    name: 'this-update-in-future',
    expectedCode: 'OCSP_NOT_YET_VALID',
    category: 'time',
    build: (ctx) =>
      ocsp(
        ctx.good({
          producedAt: ahead(ctx, HOUR),
          single: { thisUpdate: ahead(ctx, HOUR), nextUpdate: ahead(ctx, 7 * DAY) },
        }),
      ),
  },
  {
    name: 'no-next-update',
    expectedCode: 'OCSP_NO_NEXT_UPDATE',
    category: 'time',
    build: (ctx) => ocsp(ctx.good({ single: { nextUpdate: null } })),
  },
  // -- content --------------------------------------------------------------
  {
    name: 'unknown-critical-response-extension',
    expectedCode: 'OCSP_CRITICAL_EXTENSION',
    category: 'content',
    build: (ctx) => ocsp(ctx.good({ responseExtensions: [CRITICAL_UNKNOWN] })),
  },
  {
    name: 'unknown-critical-single-extension',
    expectedCode: 'OCSP_CRITICAL_EXTENSION',
    category: 'content',
    build: (ctx) => ocsp(ctx.good({ single: { singleExtensions: [CRITICAL_UNKNOWN] } })),
  },
  {
    name: 'status-unknown',
    expectedCode: 'OCSP_UNKNOWN_CERT',
    category: 'content',
    build: (ctx) => ocsp(ctx.good({ single: { status: 'unknown' } })),
  },
  {
    name: 'status-revoked',
    expectedCode: 'OCSP_REVOKED',
    category: 'content',
    build: (ctx) =>
      ocsp(ctx.good({ single: { status: 'revoked', revocationTime: ago(ctx, DAY), revocationReason: 1 } })),
  },
  // -- HTTP -----------------------------------------------------------------
  {
    name: 'http-404',
    expectedCode: 'HTTP_STATUS',
    category: 'http',
    build: () => ({ kind: 'respond', status: 404, headers: { 'content-type': 'text/plain' }, body: 'not found' }),
  },
  {
    name: 'http-500',
    expectedCode: 'HTTP_STATUS',
    category: 'http',
    build: () => ({
      kind: 'respond',
      status: 500,
      headers: { 'content-type': 'text/plain' },
      body: 'internal server error',
    }),
  },
  {
    // Content-Length announces 10 MB: a client may refuse before reading.
    name: 'body-10mb',
    expectedCode: 'HTTP_TOO_LARGE',
    category: 'http',
    build: (ctx) => ocsp(Buffer.concat([ctx.good(), Buffer.alloc(10 * 1024 * 1024)])),
  },
  {
    // The same without Content-Length: the cap must be enforced while reading.
    name: 'body-10mb-chunked',
    expectedCode: 'HTTP_TOO_LARGE',
    category: 'http',
    build: (ctx) => ({
      kind: 'respond',
      status: 200,
      headers: { 'content-type': OCSP_CONTENT_TYPE },
      body: Buffer.concat([ctx.good(), Buffer.alloc(10 * 1024 * 1024)]),
      chunked: true,
    }),
  },
  {
    // ~12 MB/s, so a 1 MiB cap is crossed within a fraction of a second, long before any timeout.
    name: 'body-never-ends',
    expectedCode: 'HTTP_TOO_LARGE',
    category: 'transport',
    build: () => ({ kind: 'stream-forever' }),
  },
  {
    name: 'one-byte-per-second',
    expectedCode: 'HTTP_TIMEOUT',
    category: 'transport',
    needsTimeout: true,
    build: (ctx) => ({ kind: 'slow', bytes: ctx.good(), intervalMs: 1000 }),
  },
  {
    name: 'accepts-never-answers',
    expectedCode: 'HTTP_TIMEOUT',
    category: 'transport',
    needsTimeout: true,
    build: () => ({ kind: 'hang' }),
  },
  {
    name: 'connection-reset-mid-body',
    expectedCode: 'HTTP_NETWORK',
    category: 'transport',
    build: (ctx) => {
      const g = ctx.good();
      const head = `HTTP/1.1 200 OK\r\nContent-Type: ${OCSP_CONTENT_TYPE}\r\nContent-Length: ${g.length}\r\n\r\n`;
      return { kind: 'reset', before: Buffer.concat([Buffer.from(head), g.subarray(0, Math.floor(g.length / 2))]) };
    },
  },
  {
    name: 'connection-reset-before-answer',
    expectedCode: 'HTTP_NETWORK',
    category: 'transport',
    build: () => ({ kind: 'reset' }),
  },
  {
    name: 'redirect-loop',
    expectedCode: 'HTTP_REDIRECT',
    category: 'http',
    build: (ctx) => ({ kind: 'redirect', location: ctx.selfUrl }),
  },
  {
    name: 'redirect-to-ftp',
    expectedCode: 'HTTP_REDIRECT',
    category: 'http',
    build: () => ({ kind: 'redirect', location: 'ftp://127.0.0.1/ocsp' }),
  },
  {
    name: 'redirect-to-file',
    expectedCode: 'HTTP_REDIRECT',
    category: 'http',
    build: () => ({ kind: 'redirect', location: 'file:///etc/passwd' }),
  },
];

/** Looks a scenario up by name (throws on a typo). */
export function scenario(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new Error(`no scenario named ${name}`);
  return s;
}

// ---------------------------------------------------------------------------
// Worse but valid (docs/SECURITY.md, "A staple only gets better"): answers that verify, but must not replace the staple on disk
// ---------------------------------------------------------------------------

/**
 * An answer that passes every acceptance rule of RFC 6960 §3.2 and §4.2.2 and yet is worse than
 * the staple on disk (core/compare.ts). The staple on disk these are built
 * against is {@link ctxStandardStaple}: thisUpdate an hour ago, nextUpdate in
 * 7 days, signed by the PKI's long-lived delegated responder.
 */
export interface WorseScenario {
  name: string;
  /** The comparison reason a correct client gives (core/compare.ts ComparisonReason). */
  reason: 'shorter' | 'not-newer' | 'multi-answer';
  build(ctx: ScenarioContext): Behaviour;
}

/** The staple on disk the {@link WORSE_SCENARIOS} are worse than: `ctx.good()`. */
export function ctxStandardStaple(ctx: ScenarioContext): Buffer {
  return ctx.good();
}

/** A delegated responder of `ctx.pki.root` that expires in an hour. */
export function shortLivedResponder(ctx: ScenarioContext): MintedCert {
  return mintCert({
    subjectCN: `short-lived responder ${ctx.pki.keyType}`,
    issuer: ctx.pki.root,
    key: sharedKey(ctx.pki.keyType, 'responder-short'),
    notBefore: new Date(ctx.now.getTime() - DAY),
    notAfter: new Date(ctx.now.getTime() + HOUR),
    eku: [OID.kpOcspSigning],
    keyUsage: ['digitalSignature'],
  });
}

export const WORSE_SCENARIOS: WorseScenario[] = [
  {
    // the same nextUpdate, an older thisUpdate: a CDN serving yesterday's copy
    name: 'older-thisUpdate',
    reason: 'not-newer',
    build: (ctx) => ocsp(ctx.good({ producedAt: ago(ctx, 2 * HOUR), single: { thisUpdate: ago(ctx, 2 * HOUR) } })),
  },
  {
    // the same answer again (a cache): not better either
    name: 'same-answer',
    reason: 'not-newer',
    build: (ctx) => ocsp(ctx.good()),
  },
  {
    // newer, but valid for two minutes where the staple on disk has 7 days left (the reproduction)
    name: 'shorter-nextUpdate',
    reason: 'shorter',
    build: (ctx) =>
      ocsp(ctx.good({ producedAt: ctx.now, single: { thisUpdate: ctx.now, nextUpdate: ahead(ctx, 2 * 60_000) } })),
  },
  {
    // newer, same nextUpdate, but its delegated signer expires in an hour: usable for an hour only
    name: 'signer-expiring-sooner',
    reason: 'shorter',
    build: (ctx) =>
      ocsp(
        ctx.good({
          signer: shortLivedResponder(ctx),
          includeSignerCert: true,
          producedAt: ctx.now,
          single: { thisUpdate: ctx.now },
        }),
      ),
  },
  {
    // newer and longer, but with answers for other certificates too: HAProxy refuses such a staple
    name: 'multi-answer',
    reason: 'multi-answer',
    build: (ctx) => {
      const other = ctx.pki.leaves[1] ?? ctx.leaf;
      return ocsp(
        mintOcspResponse({
          signer: ctx.pki.signer,
          producedAt: ctx.now,
          singles: [ctx.leaf, other].map((l) => ({
            certId: certIdFor(l.der, ctx.pki.root.der),
            status: 'good' as const,
            thisUpdate: ctx.now,
            nextUpdate: ahead(ctx, 8 * DAY),
          })),
        }),
      );
    },
  },
];

/** A better answer (newer and longer) with a `Cache-Control: max-age` of 10^20 seconds. */
export function hugeMaxAge(ctx: ScenarioContext): Behaviour {
  return {
    kind: 'respond',
    status: 200,
    headers: { 'content-type': OCSP_CONTENT_TYPE, 'cache-control': 'public, max-age=100000000000000000000' },
    body: ctx.good({ producedAt: ctx.now, single: { thisUpdate: ctx.now, nextUpdate: ahead(ctx, 8 * DAY) } }),
  };
}
