/**
 * A minimal, strict DER reader.
 *
 * It gives byte-exact slices of encoded values, which OCSP needs in several
 * places: the issuer name hash is computed over the exact DER of the Name
 * (RFC 6960 §4.1.1), the signature covers the exact bytes of
 * tbsResponseData (§4.2.1), and a fast read path must not re-encode anything.
 * It never throws anything but {@link StapleError} with the code chosen by
 * the caller, so hostile input always becomes a coded rejection.
 */
import { StapleError, type ErrorCode } from './errors.js';

/** One decoded TLV. `start`/`end` delimit the whole element; `valueStart` the contents. */
export interface Tlv {
  /** The full first identifier octet (class, constructed bit and tag number < 31). */
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

/** Tag constants for the universal types we read. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8: 0x0c,
  SEQUENCE: 0x30,
  SET: 0x31,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
} as const;

/** A cursor over a DER buffer that reads one element at a time. */
export class DerReader {
  readonly buf: Buffer;
  pos: number;
  readonly limit: number;
  private readonly code: ErrorCode;

  constructor(buf: Buffer, start = 0, end = buf.length, code: ErrorCode = 'OCSP_MALFORMED') {
    this.buf = buf;
    this.pos = start;
    this.limit = end;
    this.code = code;
  }

  /** A reader over the contents of `tlv`. */
  static inside(buf: Buffer, tlv: Tlv, code: ErrorCode = 'OCSP_MALFORMED'): DerReader {
    return new DerReader(buf, tlv.valueStart, tlv.end, code);
  }

  fail(what: string): never {
    throw new StapleError(this.code, `${messageFor(this.code)}: ${what}`);
  }

  /** True when no elements are left. */
  get done(): boolean {
    return this.pos >= this.limit;
  }

  /** The tag of the next element without consuming it, or -1 at the end. */
  peekTag(): number {
    return this.pos < this.limit ? (this.buf[this.pos] as number) : -1;
  }

  /** Reads the next element, checking that its length fits inside the limit. */
  next(expectedTag?: number): Tlv {
    const { buf, limit } = this;
    const start = this.pos;
    if (start >= limit) this.fail('unexpected end of data');
    const tag = buf[start] as number;
    if ((tag & 0x1f) === 0x1f) this.fail('high tag numbers are not used in OCSP');
    if (expectedTag !== undefined && tag !== expectedTag) {
      this.fail(`expected tag 0x${expectedTag.toString(16)}, found 0x${tag.toString(16)} at offset ${start}`);
    }
    let p = start + 1;
    if (p >= limit) this.fail('truncated length');
    const first = buf[p++] as number;
    let len: number;
    if (first < 0x80) {
      len = first;
    } else {
      const n = first & 0x7f;
      if (n === 0) this.fail('indefinite length is not DER');
      if (n > 4) this.fail(`length field of ${n} bytes is too long`);
      if (p + n > limit) this.fail('truncated length');
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + (buf[p++] as number);
      if (len < 0x80 || (n > 1 && buf[p - n] === 0)) this.fail('length is not minimally encoded');
    }
    if (len > limit - p) this.fail(`length ${len} at offset ${start} runs past the end of the data`);
    this.pos = p + len;
    return { tag, start, valueStart: p, end: p + len };
  }

  /** Reads the next element if it has `tag`, else returns undefined. */
  optional(tag: number): Tlv | undefined {
    return this.peekTag() === tag ? this.next(tag) : undefined;
  }

  /** Fails unless everything was consumed. */
  end(what: string): void {
    if (this.pos !== this.limit) this.fail(`unexpected trailing data after ${what}`);
  }
}

function messageFor(code: ErrorCode): string {
  switch (code) {
    case 'NOT_A_CERTIFICATE':
      return 'not a valid certificate';
    case 'OCSP_MALFORMED':
      return 'malformed OCSP response';
    default:
      return 'malformed data';
  }
}

/** The bytes of an element's contents. */
export function contents(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.valueStart, tlv.end);
}

/** The bytes of a whole element (tag, length and contents). */
export function whole(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.start, tlv.end);
}

/**
 * Decodes an OBJECT IDENTIFIER's contents to dotted form. Built as a string
 * directly (measured: faster than the memo by contents it replaces).
 */
export function decodeOid(bytes: Buffer): string {
  let out = '';
  let value = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    value = value * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      if (out === '') {
        const first = value < 80 ? Math.floor(value / 40) : 2;
        out = `${first}.${value - first * 40}`;
      } else {
        out += `.${value}`;
      }
      value = 0;
    }
  }
  return out;
}

/** Parses a UTCTime or GeneralizedTime (DER forms, `Z` suffix) into a Date. */
export function decodeTime(buf: Buffer, tlv: Tlv, code: ErrorCode = 'OCSP_MALFORMED'): Date {
  return decodeTimeFast(buf, tlv) ?? decodeTimeGeneral(buf, tlv, code);
}

/**
 * {@link decodeTime} the general way (every form, every error message);
 * exported for the test that compares the fast path with it.
 */
export function decodeTimeGeneral(buf: Buffer, tlv: Tlv, code: ErrorCode = 'OCSP_MALFORMED'): Date {
  const s = buf.toString('latin1', tlv.valueStart, tlv.end);
  let m: RegExpExecArray | null;
  let year: number;
  if (tlv.tag === TAG.UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw new StapleError(code, `${messageFor(code)}: bad UTCTime "${s}"`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy; // RFC 5280 §4.1.2.5.1
  } else if (tlv.tag === TAG.GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d+))?Z$/.exec(s);
    if (!m) throw new StapleError(code, `${messageFor(code)}: bad GeneralizedTime "${s}"`);
    year = Number(m[1]);
  } else {
    throw new StapleError(code, `${messageFor(code)}: expected a time at offset ${tlv.start}`);
  }
  const frac = m[7] ? Number(`0.${m[7]}`) * 1000 : 0;
  const [month, day, hour, minute, second] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day); // not Date.UTC: it maps years 0-99 to 1900-1999
  d.setUTCHours(hour, minute, second, 0);
  // Date rolls month 13, day 32 or hour 24 over into the next unit; a time that does not
  // read back as written is not a time (RFC 5280 §4.1.2.5 fields are all in range).
  if (
    !Number.isFinite(d.getTime()) ||
    d.getUTCFullYear() !== year ||
    d.getUTCMonth() !== month - 1 ||
    d.getUTCDate() !== day ||
    d.getUTCHours() !== hour ||
    d.getUTCMinutes() !== minute ||
    d.getUTCSeconds() !== second
  ) {
    throw new StapleError(code, `${messageFor(code)}: invalid time "${s}"`);
  }
  return new Date(d.getTime() + Math.floor(frac));
}

/** `n` ASCII digits at `at` as a number, or -1 if any is not a digit. */
function digits(buf: Buffer, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const d = (buf[i] as number) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * The common forms — `YYMMDDHHMMSSZ` and `YYYYMMDDHHMMSSZ` with a year from
 * 100 on and every field in range — without a string, a regular expression
 * or a Date to check against; undefined for anything else, which
 * {@link decodeTime} then reads (and rejects) the general way. Same results:
 * test/unit/der.test.ts compares the two.
 */
function decodeTimeFast(buf: Buffer, tlv: Tlv): Date | undefined {
  const len = tlv.end - tlv.valueStart;
  let p = tlv.valueStart;
  let year: number;
  if (tlv.tag === TAG.UTC_TIME && len === 13) {
    const yy = digits(buf, p, 2);
    if (yy < 0) return undefined;
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    p += 2;
  } else if (tlv.tag === TAG.GENERALIZED_TIME && len === 15) {
    year = digits(buf, p, 4);
    if (year < 100) return undefined;
    p += 4;
  } else {
    return undefined;
  }
  if (buf[p + 10] !== 0x5a) return undefined; // 'Z'
  const month = digits(buf, p, 2);
  const day = digits(buf, p + 2, 2);
  const hour = digits(buf, p + 4, 2);
  const minute = digits(buf, p + 6, 2);
  const second = digits(buf, p + 8, 2);
  if (month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59) return undefined;
  if (second < 0 || second > 59) return undefined;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > (month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number))) return undefined;
  return new Date(Date.UTC(year, month - 1, day, hour, minute, second));
}

/** Encodes a DER length. */
export function encodeLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Encodes one TLV. */
export function encodeTlv(tag: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}
