// The client the MCP conformance suite's client scenarios run
// (`conformance client --command "node conformance-client.mjs"`): an MCP
// host (the TypeScript SDK's stdio client) that reaches the suite's server
// only through `warden connect`, which does all the authorization. The
// suite passes the server URL as the last argument and the scenario's
// credentials in MCP_CONFORMANCE_CONTEXT; this writes them where `warden
// connect` reads them (a key file, a workload token file), connects, lists
// the tools, calls the first one, and exits 0 only when all of that worked.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const url = process.argv.at(-1);
const scenario = process.env.MCP_CONFORMANCE_SCENARIO;
const ctx = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? '{}');
const dir = mkdtempSync(join(tmpdir(), 'warden-conformance-client-'));
const secret = (name, value) => { const f = join(dir, name); writeFileSync(f, value, { mode: 0o600 }); return f; };

const args = ['connect', '--gateway', url];
// Where the suite says which authorization server to expect, nothing goes to any other.
if (ctx.issuer) args.push('--issuer', ctx.issuer);
if (ctx.private_key_pem) args.push('--agent', ctx.client_id, '--key', secret('agent.pem', ctx.private_key_pem));
else if (ctx.valid_jwt) args.push('--agent', ctx.client_id ?? 'conformance-client', '--workload-token', secret('workload.jwt', ctx.valid_jwt));
// A client id and secret are a machine client's in the SEP-1046
// client-credentials scenarios (as the SDKs' conformance clients, this
// one is configured per scenario), else a registered host's.
else if (ctx.client_secret && scenario.startsWith('auth/client-credentials-')) {
  args.push('--agent', ctx.client_id, '--client-secret-file', secret('client.secret', ctx.client_secret));
} else {
  // No machine credential: a host acting for its human, who signs in
  // through the browser, with the client id and secret the suite
  // registered for it, else the metadata document the suite's
  // authorization server expects (used only where it accepts CIMD).
  args.push('--sign-in', '--browser', `node ${join(import.meta.dirname, 'browser.mjs')}`);
  if (ctx.client_secret) args.push('--client-id', ctx.client_id, '--client-secret-file', secret('client.secret', ctx.client_secret));
  else args.push('--client-id', 'https://conformance-test.local/client-metadata.json');
}

const transport = new StdioClientTransport({ command: process.env.WARDEN_BIN, args, stderr: 'inherit' });
const client = new Client({ name: `conformance ${scenario}`, version: '1.0.0' });
try {
  await client.connect(transport);
  const { tools } = await client.listTools();
  if (tools.length) await client.callTool({ name: tools[0].name, arguments: {} });
  console.log(`${scenario}: connected through warden connect, ${tools.length} tool(s)`);
  await client.close();
} catch (e) {
  console.error(`${scenario}: ${e.message}`);
  await client.close().catch(() => {});
  process.exit(1);
}
