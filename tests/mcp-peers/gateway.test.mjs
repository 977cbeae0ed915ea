// Interop test: the official MCP TypeScript SDK client talks to the real
// `warden` binary, which federates the reference server-everything over stdio
// and over streamable HTTP. Token acquisition (private_key_jwt, RFC 7523) and
// DPoP proofs (RFC 9449) are implemented independently with node:crypto (agent.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { Agent, EVERYTHING, freePort, startGateway, waitFor } from './agent.mjs';

const children = [];
let gw;
let base;
let dir;

const warden = (...args) => gw.warden(...args);

before(async () => {
  const port = await freePort();
  const http = spawn('node', [EVERYTHING, 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(http);
  await waitFor(http, new RegExp(`${port}`), 'server-everything (streamableHttp)');
  gw = await startGateway('sdk', `
[[upstream]]
name = "everything-http"
transport = "http"
url = "http://127.0.0.1:${port}/mcp"
`);
  ({ base, dir } = gw);
  for (const tool of ['everything/echo', 'everything-http/echo', 'everything/get-sum']) {
    warden('tool', 'set', tool, '--sensitivity', 'low', '--action-class', 'read');
    warden('tool', 'approve', tool);
  }
});

after(() => { gw?.stop(); for (const c of children) c.kill('SIGKILL'); });

/** An agent with a token for `tools`, which an operator has classified as
 * low-sensitivity reads and approved. */
async function approvedAgent(name, tools) {
  for (const tool of tools) {
    warden('tool', 'set', tool, '--sensitivity', 'low', '--action-class', 'read');
    warden('tool', 'approve', tool);
  }
  const key = join(dir, `${name}.pem`);
  const id = warden('agent', 'register', name, '--owner', 'alice@example.com', '--purpose', 'interop test',
    '--tools', tools.join(','), '--autonomy', '1', '--generate-key', key).trim();
  const agent = new Agent(id, key, base);
  // The server refreshes its registry every 20 ms.
  await new Promise((r) => setTimeout(r, 200));
  await agent.fetchToken(tools.join(' '));
  return agent;
}

async function connect(agent) {
  const client = new Client({ name: 'warden-sdk-interop', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { fetch: agent.fetch });
  await client.connect(transport);
  return client;
}

test('SDK client lists and calls federated tools through the gateway (stdio and streamable HTTP upstreams)', async () => {
  const id = warden('agent', 'register', 'sdk-agent', '--owner', 'alice@example.com', '--purpose', 'interop test',
    '--tools', 'everything/echo,everything-http/echo,everything/get-sum,everything/get-env', '--autonomy', '1',
    '--generate-key', join(dir, 'sdk-agent.pem')).trim();
  const agent = new Agent(id, join(dir, 'sdk-agent.pem'), base);
  // The server refreshes its registry every 20 ms.
  await new Promise((r) => setTimeout(r, 200));
  const granted = await agent.fetchToken('everything/echo everything-http/echo everything/get-env');
  assert.equal(granted.scope, 'everything/echo everything-http/echo everything/get-env');
  const client = await connect(agent);

  const { tools } = await client.listTools();
  // get-env is in scope but was never approved by an operator: hidden.
  assert.deepEqual(tools.map((t) => t.name).sort(), ['everything-http__echo', 'everything__echo']);

  for (const name of ['everything__echo', 'everything-http__echo']) {
    const r = await client.callTool({ name, arguments: { message: `hello via ${name}` } });
    assert.equal(r.content[0].text, `Echo: hello via ${name}`);
  }

  // Outside the token's scope (the agent may use get-sum, this token may not).
  await assert.rejects(client.callTool({ name: 'everything__get-sum', arguments: { a: 1, b: 2 } }), (e) => {
    assert.match(String(e), /403|insufficient_scope|outside this token's scope/);
    return true;
  });
  // In scope but not approved: a JSON-RPC error naming the reason.
  await assert.rejects(client.callTool({ name: 'everything__get-env', arguments: {} }), (e) => {
    assert.match(e.message, /has not been approved by an operator/);
    return true;
  });
  await client.close();

  const denied = warden('audit', 'query', '--agent', 'sdk-agent', '--decision', 'deny', '--json').trim().split('\n').map(JSON.parse);
  assert.ok(denied.some((r) => r.event.tool === 'everything/get-sum'));
  assert.ok(denied.some((r) => r.event.tool === 'everything/get-env'));
  assert.match(warden('audit', 'verify'), /audit log OK/);
});

/** Every page of a listing, following the gateway's cursors. */
async function allPages(list, key) {
  const items = [];
  let cursor;
  do {
    const page = await list(cursor ? { cursor } : undefined);
    items.push(...page[key]);
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

test('SDK client lists and reads resources, gets prompts and completes their arguments through the gateway (stdio and HTTP upstreams)', async () => {
  const grants = ['everything', 'everything-http'].flatMap((s) => [`${s}/:resources`, `${s}/:prompts`]);
  const id = warden('agent', 'register', 'sdk-reader', '--owner', 'alice@example.com', '--purpose', 'interop test',
    '--tools', grants.join(','), '--autonomy', '1', '--generate-key', join(dir, 'sdk-reader.pem')).trim();
  const agent = new Agent(id, join(dir, 'sdk-reader.pem'), base);
  await new Promise((r) => setTimeout(r, 200));
  await agent.fetchToken(grants.join(' '));
  const client = await connect(agent);
  assert.ok(client.getServerCapabilities().resources && client.getServerCapabilities().prompts);

  const resources = await allPages((p) => client.listResources(p), 'resources');
  for (const server of ['everything', 'everything-http']) {
    assert.ok(resources.some((r) => r.uri.startsWith(`${server}+demo://resource/static/document/`)), `${server}'s documents are listed`);
  }
  const templates = await allPages((p) => client.listResourceTemplates(p), 'resourceTemplates');
  assert.ok(templates.some((t) => t.uriTemplate === 'everything-http+demo://resource/dynamic/text/{resourceId}'));
  for (const server of ['everything', 'everything-http']) {
    const uri = `${server}+demo://resource/dynamic/text/3`;
    const { contents } = await client.readResource({ uri });
    assert.equal(contents[0].uri, uri, 'the answer names the resource as the gateway does');
    assert.match(contents[0].text, /3/);
  }
  await assert.rejects(client.readResource({ uri: 'demo://resource/dynamic/text/3' }), /named SERVER\+URI/);

  const prompts = await allPages((p) => client.listPrompts(p), 'prompts');
  assert.ok(prompts.some((p) => p.name === 'everything__simple-prompt') && prompts.some((p) => p.name === 'everything-http__completable-prompt'));
  const simple = await client.getPrompt({ name: 'everything-http__simple-prompt' });
  assert.equal(simple.messages[0].content.text, 'This is a simple prompt without arguments.');
  const embedded = await client.getPrompt({ name: 'everything__resource-prompt', arguments: { resourceType: 'Text', resourceId: '2' } });
  assert.ok(embedded.messages.some((m) => m.content.type === 'resource' && m.content.resource.uri === 'everything+demo://resource/dynamic/text/2'), JSON.stringify(embedded));

  const ref = { type: 'ref/prompt', name: 'everything__completable-prompt' };
  const departments = await client.complete({ ref, argument: { name: 'department', value: 'Eng' } });
  assert.deepEqual(departments.completion.values, ['Engineering']);
  const team = await client.complete({ ref, argument: { name: 'name', value: '' }, context: { arguments: { department: 'Sales' } } });
  assert.deepEqual(team.completion.values, ['David', 'Eve', 'Frank'], 'the context reaches the upstream');
  await client.close();

  const reads = warden('audit', 'query', '--agent', 'sdk-reader', '--json').trim().split('\n').map(JSON.parse).filter((r) => r.event.action === 'resources/read');
  assert.ok(reads.some((r) => r.event.tool === 'everything-http/:resources' && r.event.decision === 'allow'));
  assert.match(warden('audit', 'verify'), /audit log OK/);
});

test('SDK client gets progress notifications (stdio and HTTP upstreams) and cancels a call upstream (HTTP upstream) through the gateway', async () => {
  const tools = ['everything', 'everything-http'].map((s) => `${s}/trigger-long-running-operation`);
  const client = await connect(await approvedAgent('sdk-progress', tools));

  for (const server of ['everything', 'everything-http']) {
    const progress = [];
    const r = await client.callTool({ name: `${server}__trigger-long-running-operation`, arguments: { duration: 1, steps: 4 } }, undefined,
      { onprogress: (p) => progress.push(p) });
    assert.match(r.content[0].text, /Long running operation completed/);
    assert.deepEqual(progress.map((p) => [p.progress, p.total]), [[1, 4], [2, 4], [3, 4], [4, 4]], `${server}: every step arrives, in order`);
  }

  // The SDK sends notifications/cancelled when its signal aborts; the
  // gateway passes it on to the upstream and ends the call there.
  const stop = new AbortController();
  await assert.rejects(
    client.callTool({ name: 'everything-http__trigger-long-running-operation', arguments: { duration: 10, steps: 10 } }, undefined,
      { signal: stop.signal, onprogress: () => stop.abort('the user pressed stop') }),
    /stop|abort|cancel/i);
  let records = [];
  for (let i = 0; i < 100 && !records.some((r) => /cancelled the request/.test(r.event.reason ?? '')); i++) {
    await new Promise((r) => setTimeout(r, 100));
    records = warden('audit', 'query', '--agent', 'sdk-progress', '--json').trim().split('\n').map(JSON.parse);
  }
  const cancelled = records.find((r) => /cancelled the request/.test(r.event.reason ?? ''));
  assert.ok(cancelled, 'the gateway recorded the cancellation');
  assert.equal(cancelled.event.tool, 'everything-http/trigger-long-running-operation');
  await client.close();
});

test('SDK client answers an upstream\'s sampling and elicitation requests through the gateway (stdio and HTTP upstreams)', async () => {
  const tools = ['everything', 'everything-http'].flatMap((s) => [`${s}/trigger-sampling-request`, `${s}/trigger-elicitation-request`]);
  const agent = await approvedAgent('sdk-sampler', tools);
  // A client that offers sampling and elicitation: its upstream sessions
  // declare them, so server-everything registers the tools that use them.
  const client = new Client({ name: 'warden-sdk-interop', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {} } });
  const asked = [];
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    asked.push(req.params.messages[0].content.text);
    return { role: 'assistant', model: 'test-model', content: { type: 'text', text: 'four' } };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { fetch: agent.fetch }));
  for (const server of ['everything', 'everything-http']) {
    const r = await client.callTool({ name: `${server}__trigger-sampling-request`, arguments: { prompt: 'what is two plus two?', maxTokens: 5 } });
    assert.match(r.content[0].text, /LLM sampling result:[\s\S]*four/, `${server}: the model's answer reached the server`);
    const e = await client.callTool({ name: `${server}__trigger-elicitation-request`, arguments: {} });
    assert.match(e.content[0].text, /declined/, `${server}: the user's answer reached the server`);
  }
  assert.equal(asked.length, 2);
  assert.match(asked[0], /what is two plus two\?/);
  await client.close();
  const relayed = warden('audit', 'query', '--agent', 'sdk-sampler', '--json').trim().split('\n').map(JSON.parse)
    .filter((r) => r.event.action === 'sampling/createMessage' || r.event.action === 'elicitation/create');
  assert.equal(relayed.length, 4, 'each relayed request is decided and recorded');
  assert.ok(relayed.every((r) => r.event.decision === 'allow'));
});

test('a client without a valid DPoP-bound token is turned away with a 401 challenge', async () => {
  const r = await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) });
  assert.equal(r.status, 401);
  const challenge = r.headers.get('www-authenticate');
  assert.match(challenge, /^Bearer resource_metadata=".*, DPoP algs="EdDSA ES256 RS256"/);
  const md = await (await fetch(challenge.match(/resource_metadata="([^"]+)"/)[1])).json();
  assert.equal(md.resource, `${base}/mcp`);
  assert.deepEqual(md.authorization_servers, [base]);
});
