#!/usr/bin/env node
// An HTTPS server that staples OCSP responses itself, with staplekeeper's embedded mode.
//
//   node examples/https-server.mjs <key.pem> <cert-bundle.pem> [port] [cache-dir]
//
// <cert-bundle.pem> holds the certificate followed by its issuer (as nginx's ssl_certificate
// does): Node hands the issuer to the 'OCSPRequest' event, and staplekeeper needs it to build
// the request and verify the answer. Try it with `openssl s_client -connect 127.0.0.1:8443 -status`.
//
// - The first staple is fetched before the server listens (stapling.add), so the first client
//   already gets one; with a cache folder, a restarted server staples at once from disk even
//   when the CA's responder is down.
// - SIGHUP re-reads the key and certificate and swaps them in without dropping connections
//   (server.setSecureContext); the new certificate gets its own staple automatically.
// - GET /.well-known/staple-status shows what is being stapled (keep such a page private in
//   production).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { attachStapling } from 'staplekeeper';

const [keyFile, certFile, portText = '8443', cacheDir] = process.argv.slice(2);
if (!keyFile || !certFile) {
  console.error('usage: node examples/https-server.mjs <key.pem> <cert-bundle.pem> [port] [cache-dir]');
  process.exit(2);
}

const tlsFiles = () => ({ key: readFileSync(keyFile), cert: readFileSync(certFile) });

let stapling;
const server = createServer(tlsFiles(), (req, res) => {
  if (req.url === '/.well-known/staple-status') {
    res.setHeader('content-type', 'application/json');
    res.end(`${JSON.stringify(stapling.status(), null, 2)}\n`);
    return;
  }
  res.end('hello, stapled world\n');
});

stapling = attachStapling(server, {
  ...(cacheDir ? { cacheDir } : {}),
  onEvent(e) {
    if (e.type === 'fetched')
      console.log(
        `staple for ${e.subject}: good until ${e.nextUpdate.toISOString()}, next refresh ${e.nextRefresh.toISOString()}`,
      );
    else if (e.type === 'error')
      console.error(
        `staple for ${e.subject}: ${e.error.code}: ${e.error.message} (retry at ${e.retryAt.toISOString()})`,
      );
    else if (e.type === 'revoked')
      console.error(`CERTIFICATE REVOKED: ${e.subject} (${e.revocationReason ?? 'no reason given'}); replace it now`);
    else console.log(`staple for ${e.subject}: ${e.type}`);
  },
});

// Fetch (or load from the cache) before accepting clients; a failure is not fatal: the server
// runs without a staple and keeps retrying in the background.
await stapling.add(readFileSync(certFile));

process.on('SIGHUP', () => {
  server.setSecureContext(tlsFiles());
  console.log('certificate reloaded');
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(); // also stops the stapling timers
    server.closeAllConnections();
  });
}

server.listen(Number(portText), '127.0.0.1', () =>
  console.log(`listening on https://127.0.0.1:${server.address().port}/`),
);
