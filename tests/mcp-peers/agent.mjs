// Shared helpers for the interop and dashboard tests: a gateway in front of
// server-everything, an agent that gets DPoP-bound tokens (private_key_jwt,
// RFC 7523; DPoP, RFC 9449) with node:crypto, free ports, and waiting for a
// child process's output.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, sign, randomUUID, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '../..');
export const WARDEN = process.env.WARDEN_BIN ?? join(ROOT, 'target/debug/warden');
export const EVERYTHING = join(here, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');

/** `warden serve` in a new directory, federating server-everything over
 * stdio as `everything` (and what `extra` adds to its config, `settings` to
 * its top-level keys; `beforeStart` may write files there first). Returns
 * its base URL, the directory, a CLI runner on its config, and `stop`. */
export async function startGateway(name, extra = '', { beforeStart, settings = '' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), `warden-${name}-`));
  const cfg = join(dir, 'warden.toml');
  writeFileSync(cfg, `listen = "127.0.0.1:0"
policy_dir = ${JSON.stringify(join(ROOT, 'policies'))}
refresh_ms = 20
${settings}
[[upstream]]
name = "everything"
transport = "stdio"
command = "node"
args = [${JSON.stringify(EVERYTHING)}, "stdio"]
${extra}`);
  beforeStart?.(dir);
  const child = spawn(WARDEN, ['--config', cfg, 'serve'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const [, base] = await waitFor(child, /serving MCP on (http:\/\/[0-9.:]+)\/mcp/, 'warden');
  const warden = (...args) => execFileSync(WARDEN, ['--config', cfg, ...args], { encoding: 'utf8' });
  return { dir, cfg, base, warden, stop: () => child.kill('SIGKILL') };
}

export const b64u = (buf) => Buffer.from(buf).toString('base64url');

export function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

export function waitFor(child, pattern, what) {
  return new Promise((res, rej) => {
    let seen = '';
    const timer = setTimeout(() => rej(new Error(`${what} did not start: ${seen}`)), 60000);
    const onData = (d) => {
      seen += d.toString();
      const m = seen.match(pattern);
      if (m) { clearTimeout(timer); res(m); }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', (code) => rej(new Error(`${what} exited with ${code}: ${seen}`)));
  });
}

function jws(privateKey, header, claims) {
  const input = `${b64u(JSON.stringify({ ...header, alg: 'EdDSA' }))}.${b64u(JSON.stringify(claims))}`;
  return `${input}.${b64u(sign(null, Buffer.from(input), privateKey))}`;
}

export class Agent {
  constructor(id, pemPath, base) {
    this.id = id;
    this.base = base;
    this.key = createPrivateKey(readFileSync(pemPath));
    const { kty, crv, x } = createPublicKey(this.key).export({ format: 'jwk' });
    this.jwk = { kty, crv, x };
  }
  proof(method, url, token) {
    const claims = { jti: randomUUID(), htm: method, htu: url, iat: Math.floor(Date.now() / 1000) };
    if (token) claims.ath = b64u(createHash('sha256').update(token).digest());
    return jws(this.key, { typ: 'dpop+jwt', jwk: this.jwk }, claims);
  }
  async fetchToken(scope, task = 'sdk-interop') {
    const url = `${this.base}/oauth/token`;
    const now = Math.floor(Date.now() / 1000);
    const assertion = jws(this.key, { typ: 'JWT' }, { iss: this.id, sub: this.id, aud: url, iat: now, exp: now + 60, jti: randomUUID() });
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
      scope,
      task,
    });
    const r = await fetch(url, { method: 'POST', headers: { dpop: this.proof('POST', url) }, body });
    const json = await r.json();
    assert.equal(r.status, 200, JSON.stringify(json));
    assert.equal(json.token_type, 'DPoP');
    this.token = json.access_token;
    return json;
  }
  // A fetch for the SDK transport that signs a DPoP proof for every request.
  fetch = (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const method = (init.method ?? 'GET').toUpperCase();
    const headers = new Headers(init.headers);
    headers.set('authorization', `DPoP ${this.token}`);
    headers.set('dpop', this.proof(method, `${url.origin}${url.pathname}`, this.token));
    return fetch(input, { ...init, headers });
  };
}
