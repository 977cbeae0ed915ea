// The dashboard in real headless Chromium (Debian `chromium`, driven by
// playwright-core): sign in, see an agent, approve a held call (seeing the
// destination in clear) and see the agent's call complete, press the kill
// switch and see the next call denied; all under the dashboard's CSP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, waitFor } from './agent.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const WARDEN = process.env.WARDEN_BIN ?? join(root, 'target/debug/warden');
const CHROMIUM = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);

const dir = mkdtempSync(join(tmpdir(), 'warden-dashboard-'));
const cfg = join(dir, 'warden.toml');
const warden = (...args) => execFileSync(WARDEN, ['--config', cfg, ...args], { encoding: 'utf8' });
let gw, base, browser;

before(async () => {
  assert.ok(CHROMIUM, 'headless Chromium is needed for the dashboard tests: apt-get install chromium (or set CHROMIUM)');
  writeFileSync(cfg, `listen = "127.0.0.1:0"
policy_dir = ${JSON.stringify(join(root, 'policies'))}
refresh_ms = 20
[approvals]
hold_secs = 50
[[upstream]]
name = "onboarding"
transport = "stdio"
command = ${JSON.stringify(WARDEN)}
args = ["demo-server"]
`);
  gw = spawn(WARDEN, ['--config', cfg, 'serve'], { stdio: ['ignore', 'pipe', 'pipe'] });
  [, base] = await waitFor(gw, /serving MCP on (http:\/\/[0-9.:]+)\/mcp/, 'warden');
  warden('tool', 'set', 'onboarding/payment_transfer', '--sensitivity', 'high', '--action-class', 'financial');
  warden('tool', 'approve', 'onboarding/payment_transfer');
  warden('tool', 'set', 'onboarding/customer_lookup', '--sensitivity', 'low', '--action-class', 'read');
  warden('tool', 'approve', 'onboarding/customer_lookup');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  gw?.kill('SIGKILL');
});

async function connect(agent) {
  const client = new Client({ name: 'warden-dashboard-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { fetch: agent.fetch }));
  return client;
}

test('an operator approves a held call and presses the kill switch in the dashboard', async () => {
  const id = warden('agent', 'register', 'treasury-bot', '--owner', 'bob@example.com', '--purpose', 'pay suppliers',
    '--tools', 'onboarding/payment_transfer,onboarding/customer_lookup', '--autonomy', '3', '--generate-key', join(dir, 'bot.pem')).trim();
  const token = warden('operator', 'add', 'ada', '--role', 'admin').trim();
  await new Promise((r) => setTimeout(r, 200));

  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) problems.push(m.text()); });
  page.on('dialog', (d) => d.accept());
  // A link carrying a session (someone else's, or any token) signs nobody
  // in: the dashboard takes an SSO session only with its own tab's nonce.
  const planted = await browser.newPage();
  await planted.goto(`${base}/dashboard#sso=${token}&n=${'0'.repeat(48)}`);
  await planted.locator('#login-error', { hasText: 'not started from this page' }).waitFor();
  assert.equal(await planted.locator('#app').isHidden(), true);
  assert.equal(await planted.evaluate(() => sessionStorage.getItem('warden-token')), null);
  await planted.close();

  await page.goto(`${base}/dashboard`);
  await page.fill('#token', token);
  await page.click('#login-form button');
  const row = page.locator('tr[data-agent="treasury-bot"]');
  await row.waitFor();
  assert.match(await row.innerText(), /bob@example\.com[\s\S]*active[\s\S]*3/);
  await page.locator('#audit-status.allow').waitFor();

  // A payment above 1000 is held until someone approves it.
  const agent = new Agent(id, join(dir, 'bot.pem'), base);
  await agent.fetchToken('onboarding/payment_transfer onboarding/customer_lookup', 'pay invoice 7');
  const client = await connect(agent);
  const held = client.callTool({ name: 'onboarding__payment_transfer', arguments: { amount: 4200, currency: 'EUR', to: 'DE89370400440532013000' } });
  const card = page.locator('.approval', { hasText: 'onboarding/payment_transfer' });
  await card.waitFor();
  assert.match(await card.innerText(), /payments above 1000 need human approval/);
  assert.match(await card.innerText(), /4200/);
  assert.match(await card.innerText(), /DE89370400440532013000/, 'an approver sees the destination in clear');
  await card.locator('button.approve').click();
  const paid = await held;
  assert.match(paid.content[0].text, /4200/);
  await page.locator('#approvals', { hasText: 'none' }).waitFor();
  await page.locator('#feed div', { hasText: 'approval_decided' }).first().waitFor();

  // The kill switch: the agent's next call is denied.
  assert.ok((await client.callTool({ name: 'onboarding__customer_lookup', arguments: { customer_id: 'c-1001' } })).content);
  await row.locator('button.kill-agent').click();
  await page.locator('#kills .kill', { hasText: 'treasury-bot' }).waitFor();
  await page.locator('tr[data-agent="treasury-bot"] td.status-suspended').waitFor();
  await assert.rejects(client.callTool({ name: 'onboarding__customer_lookup', arguments: { customer_id: 'c-1001' } }), /contained|suspended|revoked|403|401/);
  assert.deepEqual(problems, [], 'no script errors or CSP violations in the page');

  const events = warden('audit', 'query', '--kind', 'containment', '--json').trim().split('\n').map(JSON.parse);
  assert.ok(events.some((e) => e.event.subject === 'operator:ada'), JSON.stringify(events));
  assert.match(warden('audit', 'verify'), /audit log OK/);
});
