// Runs PathCheck's SMART Health Card verifier (@pathcheck/shc-sdk, from the
// npm registry, unmodified) over the cards the test issued.
//
// stdin:  {"dir": "<install dir>", "iss": "https://127.0.0.1:PORT",
//          "cases": [{"name": "...", "qr": "shc:/..."}]}
// stdout: {"results": [{"name", "valid", "iss", "family", "given",
//          "birthDate", "doses", "messages": [...]}], "refused": [...]}
//
// The SDK resolves a card's key from its registry or from
// <iss>/.well-known/jwks.json. Each card's kid is handed to it as a
// placeholder without key material, which keeps it from downloading
// PathCheck's trust registry (off this machine) and makes it fetch the
// issuer's key set from the test's loopback server: a card verifies only
// with the key that server published.
'use strict';
const path = require('node:path');
const { createRequire } = require('node:module');

async function main() {
  const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
  const req = createRequire(path.join(input.dir, 'package.json'));
  const shc = req('@pathcheck/shc-sdk');

  const messages = [];
  for (const level of ['log', 'warn', 'error', 'info']) {
    console[level] = (...args) => messages.push(args.map(a => (a && a.stack) ? a.stack : String(a)).join(' '));
  }

  const results = [];
  for (const c of input.cases) {
    messages.length = 0;
    const r = { name: c.name, valid: false, messages: [] };
    try {
      const parts = await shc.debug(c.qr);
      const placeholder = { [input.iss]: { keys: [{ kid: parts.header.kid }] } };
      const out = await shc.unpackAndVerify(c.qr, placeholder);
      if (out && out.credential) {
        const cred = out.credential;
        const entries = cred.vc.credentialSubject.fhirBundle.entry;
        const patient = entries.find(e => e.resource.resourceType === 'Patient').resource;
        r.valid = true;
        r.iss = cred.iss;
        r.family = patient.name[0].family;
        r.given = patient.name[0].given;
        r.birthDate = patient.birthDate;
        r.doses = entries.filter(e => e.resource.resourceType === 'Immunization').length;
        r.keyFromIssuer = out.issuer && out.issuer.didDocument && out.issuer.didDocument.x !== undefined;
      }
    } catch (err) {
      messages.push(String(err && err.stack || err));
    }
    r.messages = messages.slice();
    results.push(r);
  }
  process.stdout.write(JSON.stringify({ results, refused: globalThis.__refusedConnections || [] }));
}

main().catch(err => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(2);
});
