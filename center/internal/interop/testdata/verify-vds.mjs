// Runs PathCheck's ICAO VDS-NC verifier (@pathcheck/vds-sdk, from the npm
// registry, unmodified) over the proofs of vaccination the test signed.
// Its CommonJS entry does not load on Node 20, so its ES module source
// (lib/main.js) is imported directly; run with
// node --require loopback-only.cjs --import register-hooks.mjs.
//
// stdin:  {"dir": "<install dir>", "cases": [{"name": "...", "doc": "{...}"}]}
// stdout: {"results": [{"name", "valid", "name_on_doc", "uvci", "messages"}], "refused": [...]}
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const vds = await import(pathToFileURL(path.join(input.dir, 'node_modules/@pathcheck/vds-sdk/lib/main.js')).href);

const messages = [];
for (const level of ['log', 'warn', 'error', 'info']) {
  console[level] = (...args) => messages.push(args.map(a => (a && a.stack) ? a.stack : String(a)).join(' '));
}

const results = [];
for (const c of input.cases) {
  messages.length = 0;
  const r = { name: c.name, valid: false, messages: [] };
  try {
    const out = await vds.verify(JSON.parse(c.doc));
    if (out) {
      r.valid = true;
      r.nameOnDoc = out.data.msg.pid.n;
      r.uvci = out.data.msg.uvci;
    }
  } catch (err) {
    messages.push(String(err && err.stack || err));
  }
  r.messages = messages.slice();
  results.push(r);
}
process.stdout.write(JSON.stringify({ results, refused: globalThis.__refusedConnections || [] }));
