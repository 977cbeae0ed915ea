// Acceptance test: the official MCP SDKs' own private_key_jwt clients,
// unmodified, connect to the real `warden` binary. The TypeScript SDK's
// `PrivateKeyJwtProvider` and the Python SDK's `PrivateKeyJWTOAuthProvider`
// discover Warden from its 401 challenge (RFC 9728, RFC 8414 metadata), get a
// token with a client assertion signed by the agent's ES256 or RS256 key and
// call a tool with it as a bearer token, which Warden accepts only for agents
// an operator registered with `--token-binding bearer`. Neither SDK signs
// DPoP proofs: for an agent registered for DPoP-bound tokens (the default)
// they are refused with a message saying what to change.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { PrivateKeyJwtProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { ROOT as root, startGateway } from './agent.mjs';

const PYTHON = process.env.WARDEN_PYTHON;

let gw;
let base;
let dir;

const warden = (...args) => gw.warden(...args);

before(async () => {
  gw = await startGateway('sdk-oauth');
  ({ base, dir } = gw);
  warden('tool', 'set', 'everything/echo', '--sensitivity', 'low', '--action-class', 'read');
  warden('tool', 'approve', 'everything/echo');
});

after(() => gw?.stop());

/** Register `name` with a generated key of `alg` and a token binding; returns [SPIFFE id, private key PEM]. */
async function register(name, alg, binding) {
  const pem = join(dir, `${name}.pem`);
  const id = warden('agent', 'register', name, '--owner', 'alice@example.com', '--purpose', 'SDK private_key_jwt test',
    '--tools', 'everything/echo', '--generate-key', pem, '--key-alg', alg, '--token-binding', binding).trim();
  // The server refreshes its registry every 20 ms.
  await new Promise((r) => setTimeout(r, 200));
  return [id, pem];
}

/** The TypeScript SDK's own client and private_key_jwt provider, as its documentation shows them. */
async function tsConnect(id, pem, algorithm) {
  const authProvider = new PrivateKeyJwtProvider({ clientId: id, privateKey: readFileSync(pem, 'utf8'), algorithm, expectedIssuer: base });
  const client = new Client({ name: 'warden-sdk-oauth', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { authProvider }));
  return client;
}

/**
 * The Python SDK's client (tests/py-peers/private_key_jwt.py): its JSON
 * answer, or null when no Python peer is installed outside CI (the test
 * reports itself skipped; scripts/test always installs one, and a CI run
 * without it fails).
 */
function pyCall(t, id, pem, alg) {
  if (!PYTHON) {
    const why = 'WARDEN_PYTHON is not set: run `bash scripts/py-peers target/py-peers` and set WARDEN_PYTHON=target/py-peers/bin/python';
    assert.ok(!process.env.CI, why);
    t.skip(why);
    return null;
  }
  const out = execFileSync(PYTHON, [join(root, 'tests/py-peers/private_key_jwt.py'), `${base}/mcp`, base, id, pem, alg,
    'everything__echo', JSON.stringify({ message: 'hello from python' })], { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out.trim().split('\n').pop());
}

const refusal = (name) => new RegExp(`requires DPoP-bound tokens \\(token binding dpop\\).*warden agent set-binding ${name} bearer`);

test('the TypeScript SDK PrivateKeyJwtProvider connects to a bearer-enabled ES256 agent and calls a tool', async () => {
  const [id, pem] = await register('ts-bearer', 'es256', 'bearer');
  const client = await tsConnect(id, pem, 'ES256');
  const r = await client.callTool({ name: 'everything__echo', arguments: { message: 'hello from typescript' } });
  assert.equal(r.content[0].text, 'Echo: hello from typescript');
  await client.close();
  const issued = warden('audit', 'query', '--agent', 'ts-bearer', '--json').trim().split('\n').map(JSON.parse);
  assert.ok(issued.some((a) => a.event.kind === 'token_issued' && a.event.token_binding === 'bearer'), 'the token record names its binding');
  assert.ok(issued.some((a) => a.event.kind === 'tool_call' && a.event.tool === 'everything/echo' && a.event.token_binding === 'bearer'), 'so do calls');
});

test('the TypeScript SDK PrivateKeyJwtProvider is refused for a DPoP-only agent, told how to enable bearer', async () => {
  const [id, pem] = await register('ts-strict', 'es256', 'dpop');
  await assert.rejects(tsConnect(id, pem, 'ES256'), (e) => {
    assert.match(e.message, refusal('ts-strict'));
    return true;
  });
});

test('the Python SDK PrivateKeyJWTOAuthProvider connects to a bearer-enabled RS256 agent and calls a tool', async (t) => {
  const [id, pem] = await register('py-bearer', 'rs256', 'bearer');
  const r = pyCall(t, id, pem, 'RS256');
  if (r) assert.deepEqual(r, { ok: true, text: 'Echo: hello from python' });
});

test('the Python SDK PrivateKeyJWTOAuthProvider is refused for a DPoP-only agent, told how to enable bearer', async (t) => {
  const [id, pem] = await register('py-strict', 'rs256', 'dpop');
  const r = pyCall(t, id, pem, 'RS256');
  if (r) {
    assert.equal(r.ok, false);
    assert.match(r.error, refusal('py-strict'));
  }
});
