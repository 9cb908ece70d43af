/**
 * Issuer discovery (RFC 5280 §4.2.2.1 for caIssuers): the CertID needs the issuer's name and
 * key, and the verifier needs the issuer to authorise the signer. Sources, in
 * order: an explicit issuer file, the other certificates of the same bundle,
 * the chain file, the root chain file, directories of CA certificates
 * (matched by Authority/Subject Key Identifier, then by name), and the AIA
 * caIssuers URL (DER or PKCS#7, size-capped, cached per URL). A candidate is
 * accepted only if its signature over the certificate verifies.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Certificate, findIssuer, isSignedBy, loadCertificates } from '../core/certs.js';
import { StapleError } from '../core/errors.js';
import type { SignatureMemo } from '../core/signature.js';
import { readInputFile } from '../io/files.js';
import { assertHttpUrl, type HttpTransport } from '../io/http.js';

/** The cap for a caIssuers download: a certificate or a small PKCS#7 bundle. */
export const MAX_CA_ISSUERS_BYTES = 256 * 1024;

/**
 * Picks the end-entity certificate of a bundle given in any order: the first
 * certificate that issued none of the others.
 */
export function pickLeaf(certs: Certificate[]): { leaf: Certificate; rest: Certificate[] } {
  const issuesAnother = (c: Certificate): boolean =>
    certs.some((o) => o !== c && !o.issuerDer.equals(o.subjectDer) && o.issuerDer.equals(c.subjectDer));
  const leaf = certs.find((c) => !issuesAnother(c)) ?? (certs[0] as Certificate);
  return { leaf, rest: certs.filter((c) => c !== leaf) };
}

/** What the resolvers made by {@link IssuerResolver.withTransport} share. */
interface ResolverCaches {
  /** CA directory listings, until {@link IssuerResolver.refresh}. */
  dirs: Map<string, Promise<Certificate[]>>;
  /** caIssuers downloads that succeeded (and the ones in flight). */
  urls: Map<string, Promise<Certificate[]>>;
}

/**
 * Finds issuers, with shared caches: a CA directory is read once until
 * {@link refresh} (the daemon calls it at each sweep, so a CA certificate
 * added later is found), a caIssuers URL is downloaded once. A failure — an
 * unreadable directory, a download that failed — is never remembered: the
 * next certificate that needs it tries again.
 */
export class IssuerResolver {
  /** Not readonly: {@link withTransport} shares them. */
  private caches: ResolverCaches;
  private readonly caDirs: string[];
  private readonly transport: HttpTransport | undefined;

  constructor(options: { caDirs?: string[]; transport?: HttpTransport } = {}) {
    this.caDirs = options.caDirs ?? [];
    this.transport = options.transport;
    this.caches = { dirs: new Map(), urls: new Map() };
  }

  /**
   * The same resolver (same directories, same caches) downloading through
   * `transport`: the daemon passes the transport that keeps its per-host
   * backoff, the one its responder requests go through.
   */
  withTransport(transport: HttpTransport): IssuerResolver {
    const r = new IssuerResolver({ caDirs: this.caDirs, transport });
    r.caches = this.caches;
    return r;
  }

  /** Forgets the CA directory listings, so that they are read again when next needed. */
  refresh(): void {
    this.caches.dirs.clear();
  }

  /** Remembers `p` under `key` while it is pending or once it succeeded; a failure is forgotten. */
  private static remember(cache: Map<string, Promise<Certificate[]>>, key: string, p: Promise<Certificate[]>): void {
    cache.set(key, p);
    p.catch(() => {
      if (cache.get(key) === p) cache.delete(key);
    });
  }

  /** All certificates from a CA directory (`*.pem`, `*.crt`, `*.cer`, `*.der`); unreadable files are skipped. */
  private loadDir(dir: string): Promise<Certificate[]> {
    let p = this.caches.dirs.get(dir);
    if (!p) {
      p = (async () => {
        let names: string[];
        try {
          names = await readdir(dir);
        } catch (e) {
          throw new StapleError('FILE_UNREADABLE', `${dir}: cannot read the CA directory: ${(e as Error).message}`, {
            cause: e,
          });
        }
        const out: Certificate[] = [];
        for (const n of names.sort()) {
          if (!/\.(pem|crt|cer|der)$/i.test(n)) continue;
          try {
            out.push(...loadCertificates(await readInputFile(join(dir, n), 'CA certificate'), join(dir, n)));
          } catch {
            // not a certificate file: ignore, a CA directory may hold other things
          }
        }
        return out;
      })();
      IssuerResolver.remember(this.caches.dirs, dir, p);
    }
    return p;
  }

  private fetchUrl(url: string): Promise<Certificate[]> {
    let p = this.caches.urls.get(url);
    if (!p) {
      const transport = this.transport;
      p = (async () => {
        assertHttpUrl(url, 'caIssuers URL');
        if (!transport) throw new StapleError('NO_ISSUER', 'no HTTP transport for caIssuers');
        const res = await transport.send({ method: 'GET', url, maxBytes: MAX_CA_ISSUERS_BYTES });
        if (res.status !== 200) throw new StapleError('HTTP_STATUS', `${url}: HTTP ${res.status}`);
        // core/asn1.ts (and @peculiar) only when a caIssuers answer has to be read
        const { parseCaIssuersContent } = await import('../core/asn1.js');
        return parseCaIssuersContent(res.body, url);
      })();
      IssuerResolver.remember(this.caches.urls, url, p);
    }
    return p;
  }

  /**
   * Finds the issuer of `cert`. `explicit` (an --issuer file) must have signed
   * it, else `ISSUER_MISMATCH`; the other sources are searched in order.
   * Throws `NO_ISSUER` with the list of places searched. `signatures`: checks
   * made before (core/signature.ts), the answer is the same without.
   */
  async resolve(
    cert: Certificate,
    sources: { explicit?: Certificate[]; bundle?: Certificate[]; chain?: Certificate[]; rootchain?: Certificate[] },
    signatures?: SignatureMemo,
  ): Promise<Certificate> {
    if (sources.explicit && sources.explicit.length > 0) {
      const found = findIssuer(cert, sources.explicit, signatures);
      if (found) return found;
      throw new StapleError(
        'ISSUER_MISMATCH',
        `the given issuer did not sign the certificate "${cert.subject}" (its issuer is "${cert.issuer}")`,
      );
    }
    const searched: string[] = [];
    for (const [name, list] of [
      ['the certificate bundle', sources.bundle],
      ['the chain file', sources.chain],
      ['the root chain file', sources.rootchain],
    ] as const) {
      if (!list || list.length === 0) continue;
      searched.push(name);
      const found = findIssuer(cert, list, signatures);
      if (found) return found;
    }
    for (const dir of this.caDirs) {
      searched.push(dir);
      const found = findIssuer(cert, await this.loadDir(dir), signatures);
      if (found) return found;
    }
    const urlErrors: string[] = [];
    for (const url of cert.caIssuersUrls) {
      searched.push(url);
      try {
        const list = await this.fetchUrl(url);
        const found = list.find((c) => isSignedBy(cert, c, signatures));
        if (found) return found;
      } catch (e) {
        urlErrors.push(`${url}: ${(e as Error).message}`);
      }
    }
    const where = searched.length ? ` (searched ${searched.join(', ')})` : '';
    const extra = urlErrors.length ? `; ${urlErrors.join('; ')}` : '';
    throw new StapleError(
      'NO_ISSUER',
      `no issuer found for "${cert.subject}" issued by "${cert.issuer}"${where}${extra}`,
    );
  }
}
