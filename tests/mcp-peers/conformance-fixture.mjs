// The server the official MCP conformance suite (@modelcontextprotocol/conformance)
// tests, directly and through Warden (conformance.test.mjs): every tool,
// resource, prompt and completion its server scenarios call, answering as
// each scenario's own description says, in both eras of the protocol on the
// one endpoint:
//
// - 2025-11-25 and earlier: streamable HTTP with stateful sessions
//   (`initialize`), resumable SSE streams (an in-memory event store per
//   session, so a client that reconnects with Last-Event-ID gets what it
//   missed), server-to-client requests (sampling, elicitation, roots) on the
//   call's stream, and tool and prompt list changes on the session's GET
//   stream.
// - 2026-07-28 (stateless, SEP-2575): a request that carries the per-request
//   `_meta` envelope (or names a newer protocol version) and no session is
//   served by conformance-fixture-2026.mjs, where those server-to-client
//   requests become InputRequiredResults and retries (MRTR, SEP-2322), and
//   list changes go to the subscriptions/listen streams that ask for them.
//
// Both eras serve the same catalog (below): a handler gets a `ctx` whose
// `log`, `progress` and `input` each era implements its own way. The tool
// and prompt lists change only when test_trigger_tool_change or
// test_trigger_prompt_change puts a harmless entry in or takes it out, and
// every client of either era that listens hears of it. Only
// loopback Host and Origin headers are accepted (DNS rebinding protection),
// whichever era a request belongs to.
//
// Built on the official TypeScript SDK's low-level `Server` rather than
// `McpServer`: the scenarios spell exact JSON Schemas (json-schema-2020-12
// wants `$schema`, `$defs`, `$anchor`, `allOf`, `if`... kept as written),
// which McpServer's Zod conversion would rewrite to draft-07.
//
// Usage: node conformance-fixture.mjs [PORT]   (or PORT=...; 0 picks one)
// Prints `conformance fixture listening on http://127.0.0.1:PORT/mcp`.
// Everything it returns is small and benign: a 1x1 PNG, a tenth of a second
// of silent WAV, short sentences.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema, CompleteRequestSchema, CreateMessageResultSchema, ElicitResultSchema, GetPromptRequestSchema,
  ListPromptsRequestSchema, ListResourceTemplatesRequestSchema, ListResourcesRequestSchema, ListRootsResultSchema,
  ListToolsRequestSchema, ReadResourceRequestSchema, SetLevelRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema,
  isInitializeRequest, ErrorCode, McpError,
} from '@modelcontextprotocol/sdk/types.js';
import { isStatelessRequest, statelessHandler } from './conformance-fixture-2026.mjs';

const SERVER_INFO = { name: 'warden-conformance-fixture', version: '1.0.0' };

// A 1x1 red pixel.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

/** 0.1 s of silence: 8 kHz, 8-bit mono PCM in a RIFF/WAVE container. */
function silentWav(samples = 800) {
  const b = Buffer.alloc(44 + samples, 0x80);
  b.write('RIFF', 0); b.writeUInt32LE(36 + samples, 4); b.write('WAVE', 8);
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(8000, 24); b.writeUInt32LE(8000, 28); b.writeUInt16LE(1, 32); b.writeUInt16LE(8, 34);
  b.write('data', 36); b.writeUInt32LE(samples, 40);
  return b.toString('base64');
}
const WAV = silentWav();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ type: 'text', text: t });
const says = (...content) => ({ content });
const noArgs = { type: 'object', properties: {} };

// What a handler may ask the client for through `ctx.input`: the client
// capability each request needs, and the shape of a valid answer.
const INPUTS = {
  'elicitation/create': { capability: 'elicitation', result: ElicitResultSchema },
  'sampling/createMessage': { capability: 'sampling', result: CreateMessageResultSchema },
  'roots/list': { capability: 'roots', result: ListRootsResultSchema },
};
// MissingRequiredClientCapabilityError's code in 2026-07-28. Earlier
// revisions define none, so sessions get it too: one code for both eras,
// which a gateway between them can pass on.
const MISSING_REQUIRED_CLIENT_CAPABILITY = -32021;

const form = (message, properties, required) => ({
  method: 'elicitation/create',
  params: { message, requestedSchema: { type: 'object', properties, ...(required && { required }) } },
});
const sampling = (prompt, maxTokens) => ({
  method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: text(prompt) }], maxTokens },
});
const ROOTS = { method: 'roots/list', params: {} };
const NAME = form('What is your name?', { name: { type: 'string' } }, ['name']);
const CONFIRM = form('Please confirm', { ok: { type: 'boolean' } }, ['ok']);

const elicited = (r) => `action=${r.action}, content=${JSON.stringify(r.content ?? {})}`;
const sampled = (r) => [r.content].flat().map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join(' ');
const rooted = (r) => r.roots.map((root) => root.uri).join(', ');
/** Asks the user to fill in `request`'s form and reports what came back. */
async function fills(input, request) {
  const { user } = await input({ user: request });
  return says(text(`Elicitation completed: ${elicited(user)}`));
}

async function logs({ log }) {
  await log('info', 'Tool execution started');
  await sleep(50);
  await log('info', 'Tool processing data');
  await sleep(50);
  await log('info', 'Tool execution completed');
  return says(text('Tool with logging executed successfully'));
}

// "state-ok" is what input-required-result-request-state looks for: the
// answer reached the handler's continuation, within the call in a session,
// or statelessly on a retry whose requestState (when it carries one) passed
// the HMAC check.
async function confirms({ input }) {
  const { confirm } = await input({ confirm: CONFIRM });
  return says(text(`state-ok: ${elicited(confirm)}`));
}

// What test_trigger_tool_change and test_trigger_prompt_change switch: whether
// test_dynamic_tool and test_dynamic_prompt are listed. `changes` emits
// 'tools' or 'prompts' after each switch; the sessions listen, and so does
// each open listen stream of the 2026 side, as many as clients open.
const changes = new EventEmitter().setMaxListeners(0);
const added = { tools: false, prompts: false };
/** Puts `list`'s dynamic entry in, or takes it out, and says which. */
function toggle(list) {
  added[list] = !added[list];
  changes.emit(list);
  return added[list] ? 'added to' : 'removed from';
}

// `run(ctx)` answers a call; `sessionOnly` tools need what only a 2025-era
// session has (a resumable stream) and are not offered statelessly.
const TOOLS = [
  { name: 'test_simple_text', description: 'Returns a simple text response', inputSchema: noArgs, run: () => says(text('This is a simple text response for testing.')) },
  { name: 'test_image_content', description: 'Returns a 1x1 PNG image', inputSchema: noArgs, run: () => says({ type: 'image', data: PNG, mimeType: 'image/png' }) },
  { name: 'test_audio_content', description: 'Returns a tenth of a second of silent WAV audio', inputSchema: noArgs, run: () => says({ type: 'audio', data: WAV, mimeType: 'audio/wav' }) },
  {
    name: 'test_embedded_resource', description: 'Returns an embedded text resource', inputSchema: noArgs,
    run: () => says({ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }),
  },
  {
    name: 'test_multiple_content_types', description: 'Returns text, an image and an embedded resource', inputSchema: noArgs,
    run: () => says(
      text('Multiple content types test:'),
      { type: 'image', data: PNG, mimeType: 'image/png' },
      { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) } },
    ),
  },
  { name: 'test_tool_with_logging', description: 'Sends three log messages while it runs', inputSchema: noArgs, run: logs },
  // The name server-stateless calls to check that nothing is logged unless the request asks for a level.
  { name: 'test_logging_tool', description: 'Sends three log messages while it runs', inputSchema: noArgs, run: logs },
  { name: 'test_error_handling', description: 'Always reports a tool error', inputSchema: noArgs, run: () => ({ isError: true, ...says(text('This tool intentionally returns an error for testing')) }) },
  {
    name: 'test_tool_with_progress', description: 'Reports progress 0, 50 and 100 of 100', inputSchema: noArgs,
    run: async ({ progress }) => {
      for (const done of [0, 50, 100]) {
        await progress(done, 100);
        if (done < 100) await sleep(50);
      }
      return says(text('Tool with progress executed successfully'));
    },
  },
  {
    name: 'test_sampling', description: 'Asks the client\'s model to answer a prompt',
    inputSchema: { type: 'object', properties: { prompt: { type: 'string', description: 'The prompt to send to the LLM' } }, required: ['prompt'] },
    run: async ({ args, input }) => {
      const { answer } = await input({ answer: sampling(String(args.prompt ?? ''), 100) });
      return says(text(`LLM response: ${sampled(answer)}`));
    },
  },
  {
    name: 'test_elicitation', description: 'Asks the user for a username and an email address',
    inputSchema: { type: 'object', properties: { message: { type: 'string', description: 'The message to show the user' } }, required: ['message'] },
    run: ({ args, input }) => fills(input, form(String(args.message ?? ''), {
      username: { type: 'string', description: 'User\'s response' }, email: { type: 'string', description: 'User\'s email address' },
    }, ['username', 'email'])),
  },
  {
    name: 'test_elicitation_sep1034_defaults', description: 'Elicitation with a default for each primitive type (SEP-1034)', inputSchema: noArgs,
    run: ({ input }) => fills(input, form('Please review and update the form fields with defaults', {
      name: { type: 'string', description: 'User name', default: 'John Doe' },
      age: { type: 'integer', description: 'User age', default: 30 },
      score: { type: 'number', description: 'User score', default: 95.5 },
      status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
      verified: { type: 'boolean', description: 'Verification status', default: true },
    })),
  },
  {
    name: 'test_elicitation_sep1330_enums', description: 'Elicitation with the five enum forms (SEP-1330)', inputSchema: noArgs,
    run: ({ input }) => fills(input, form('Please choose from each list', {
      untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
      titledSingle: {
        type: 'string',
        oneOf: [{ const: 'value1', title: 'First Option' }, { const: 'value2', title: 'Second Option' }, { const: 'value3', title: 'Third Option' }],
      },
      legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
      untitledMulti: { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
      titledMulti: {
        type: 'array',
        items: { anyOf: [{ const: 'value1', title: 'First Choice' }, { const: 'value2', title: 'Second Choice' }, { const: 'value3', title: 'Third Choice' }] },
      },
    })),
  },
  {
    name: 'json_schema_2020_12_tool', description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: { address: { $anchor: 'addressDef', type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
      properties: {
        name: { type: 'string' },
        address: { $ref: '#/$defs/address' },
        contactMethod: { type: 'string', enum: ['phone', 'email'] },
        phone: { type: 'string' },
        email: { type: 'string' },
      },
      allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
      if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
      then: { required: ['phone'] },
      else: { required: ['email'] },
      additionalProperties: false,
    },
    run: ({ args }) => says(text(`Received ${JSON.stringify(args)}`)),
  },
  {
    name: 'test_reconnection', description: 'Closes its SSE stream mid-call; the result follows when the client reconnects', inputSchema: noArgs, sessionOnly: true,
    // An event with an id first, so the client has a Last-Event-ID to
    // resume from; then the stream closes and the result is stored for the
    // client's GET.
    run: async ({ log, closeStream }) => {
      await log('info', 'Closing the stream; the result follows when you reconnect');
      closeStream();
      await sleep(100);
      return says(text('Reconnection test completed'));
    },
  },
  {
    name: 'test_mcp_param_header', description: 'Echoes a region that the client mirrors into the Mcp-Param-Region header (SEP-2243)',
    inputSchema: {
      type: 'object',
      properties: { region: { type: 'string', description: 'A region name', 'x-mcp-header': 'Region' } },
      required: ['region'],
    },
    run: ({ args }) => says(text(`Region: ${args.region}`)),
  },
  {
    name: 'test_missing_capability', description: 'Needs the client\'s sampling capability, and fails without it', inputSchema: noArgs,
    run: async ({ input }) => {
      const { answer } = await input({ answer: sampling('Reply with one word.', 10) });
      return says(text(`The model replied: ${sampled(answer)}`));
    },
  },
  {
    name: 'test_streaming_elicitation', description: 'Logs, then asks the user to confirm', inputSchema: noArgs,
    run: async ({ log, input }) => {
      await log('info', 'Asking the user to confirm');
      const { confirm } = await input({ confirm: CONFIRM });
      return says(text(`Confirmation: ${elicited(confirm)}`));
    },
  },
  {
    name: 'test_input_required_result_elicitation', description: 'Asks the user for their name, then greets them', inputSchema: noArgs,
    run: async ({ input }) => {
      const { user_name } = await input({ user_name: NAME });
      return says(text(user_name.action === 'accept' ? `Hello, ${user_name.content?.name}!` : `No name given (${user_name.action})`));
    },
  },
  {
    name: 'test_input_required_result_sampling', description: 'Asks the client\'s model for the capital of France', inputSchema: noArgs,
    run: async ({ input }) => {
      const { capital_question } = await input({ capital_question: sampling('What is the capital of France?', 100) });
      return says(text(`The model answered: ${sampled(capital_question)}`));
    },
  },
  {
    name: 'test_input_required_result_list_roots', description: 'Asks the client for its roots and lists them', inputSchema: noArgs,
    run: async ({ input }) => {
      const { client_roots } = await input({ client_roots: ROOTS });
      return says(text(`Client roots: ${rooted(client_roots)}`));
    },
  },
  { name: 'test_input_required_result_request_state', description: 'Asks the user to confirm, and says so once the answer is back', inputSchema: noArgs, run: confirms },
  { name: 'test_input_required_result_tampered_state', description: 'Asks the user to confirm, and says so once the answer is back', inputSchema: noArgs, run: confirms },
  {
    name: 'test_input_required_result_multiple_inputs', description: 'Asks for a name, a model-written greeting and the client\'s roots at once', inputSchema: noArgs,
    run: async ({ input }) => {
      const { user_name, greeting, client_roots } = await input({ user_name: NAME, greeting: sampling('Generate a greeting', 50), client_roots: ROOTS });
      return says(text(`${sampled(greeting)} ${user_name.content?.name} (roots: ${rooted(client_roots)})`));
    },
  },
  {
    name: 'test_input_required_result_multi_round', description: 'Asks for a name, then for a favourite colour', inputSchema: noArgs,
    run: async ({ input }) => {
      const { step1 } = await input({ step1: form('Step 1: What is your name?', { name: { type: 'string' } }, ['name']) });
      const { step2 } = await input({ step2: form('Step 2: What is your favorite color?', { color: { type: 'string' } }, ['color']) });
      return says(text(`${step1.content?.name} likes ${step2.content?.color}`));
    },
  },
  // The hooks server-stateless calls while a subscriptions/listen stream is open.
  { name: 'test_trigger_tool_change', description: 'Adds test_dynamic_tool to the tool list, or takes it out again', inputSchema: noArgs, run: () => says(text(`test_dynamic_tool ${toggle('tools')} the tool list`)) },
  { name: 'test_trigger_prompt_change', description: 'Adds test_dynamic_prompt to the prompt list, or takes it out again', inputSchema: noArgs, run: () => says(text(`test_dynamic_prompt ${toggle('prompts')} the prompt list`)) },
  // Not a scenario's: a call that takes long enough for Warden's own test
  // (conformance.test.mjs) to cancel it.
  { name: 'test_slow_tool', description: 'Answers after three seconds', inputSchema: noArgs, run: async () => { await sleep(3000); return says(text('slow answer')); } },
  // Not a scenario's: what Warden's own test (conformance.test.mjs) shows
  // its policy refuses, a server asking the user for a credential.
  {
    name: 'test_input_required_result_sign_in', description: 'Asks the user to sign in to their account, then says whether they did', inputSchema: noArgs,
    run: async ({ input }) => {
      const { sign_in } = await input({ sign_in: form('Sign in to continue', { username: { type: 'string' }, password: { type: 'string', format: 'password' } }, ['username', 'password']) });
      return says(text(`Signed in: ${sign_in.action === 'accept'}`));
    },
  },
  {
    name: 'test_input_required_result_capabilities', description: 'Asks for a name and a greeting through whichever of elicitation and sampling the client offers', inputSchema: noArgs,
    run: async ({ capabilities, input }) => {
      const wanted = { ...(capabilities.elicitation && { user_name: NAME }), ...(capabilities.sampling && { greeting: sampling('Generate a greeting', 50) }) };
      // With neither, asking for the name fails with the missing capability.
      const answers = await input(Object.keys(wanted).length ? wanted : { user_name: NAME });
      return says(text(`Got ${Object.keys(answers).join(' and ')}`));
    },
  },
];

// Listed, and callable, only while test_trigger_tool_change has added it.
const DYNAMIC_TOOL = {
  name: 'test_dynamic_tool', description: 'Echoes its message back',
  inputSchema: { type: 'object', properties: { message: { type: 'string', description: 'What to echo' } } },
  run: ({ args }) => says(text(`Echo: ${args.message ?? ''}`)),
};

const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', description: 'A static text resource', mimeType: 'text/plain' },
  { uri: 'test://static-binary', name: 'static-binary', description: 'A static binary resource (a 1x1 PNG)', mimeType: 'image/png' },
  { uri: 'test://watched-resource', name: 'watched-resource', description: 'A resource clients may subscribe to', mimeType: 'text/plain' },
];
const TEMPLATE = { uriTemplate: 'test://template/{id}/data', name: 'template-data', description: 'Data for an id', mimeType: 'application/json' };

/** What resources/read returns for `uri`, or undefined for a resource there is not. */
function contents(uri) {
  if (uri === 'test://static-text') return { uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' };
  if (uri === 'test://static-binary') return { uri, mimeType: 'image/png', blob: PNG };
  if (uri === 'test://watched-resource') return { uri, mimeType: 'text/plain', text: 'The watched resource has not changed.' };
  const m = uri.match(/^test:\/\/template\/([^/]+)\/data$/);
  if (m) return { uri, mimeType: 'application/json', text: JSON.stringify({ id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` }) };
  return undefined;
}

const user = (content) => ({ role: 'user', content });
const PROMPTS = [
  { name: 'test_simple_prompt', description: 'A prompt without arguments', run: () => ({ messages: [user(text('This is a simple prompt for testing.'))] }) },
  {
    name: 'test_prompt_with_arguments', description: 'A prompt with two arguments',
    arguments: [{ name: 'arg1', description: 'First test argument', required: true }, { name: 'arg2', description: 'Second test argument', required: true }],
    run: ({ args }) => ({ messages: [user(text(`Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'`))] }),
  },
  {
    name: 'test_prompt_with_embedded_resource', description: 'A prompt that embeds a resource',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
    run: ({ args }) => ({
      messages: [
        user({ type: 'resource', resource: { uri: String(args.resourceUri), mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
        user(text('Please process the embedded resource above.')),
      ],
    }),
  },
  {
    name: 'test_prompt_with_image', description: 'A prompt with an image',
    run: () => ({ messages: [user({ type: 'image', data: PNG, mimeType: 'image/png' }), user(text('Please analyze the image above.'))] }),
  },
  {
    name: 'test_input_required_result_prompt', description: 'A prompt that first asks the user what context to use',
    run: async ({ input }) => {
      const { user_context } = await input({ user_context: form('What context should the prompt use?', { context: { type: 'string' } }, ['context']) });
      return { messages: [user(text(`Answer with this context in mind: ${user_context.content?.context}`))] };
    },
  },
];
// Listed, and served, only while test_trigger_prompt_change has added it.
const DYNAMIC_PROMPT = { name: 'test_dynamic_prompt', description: 'A prompt that comes and goes', run: () => ({ messages: [user(text('This prompt comes and goes.'))] }) };
const COMPLETIONS = { arg1: ['paris', 'park', 'party'], arg2: ['red', 'green', 'blue'], id: ['123', '456'] };

const LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/**
 * The `ctx` a tool or prompt handler gets, from what its era's `channel`
 * provides: the client's `capabilities`, the `logLevel` it wants messages
 * from (none without one), the request's `progressToken`, `notify` to send
 * a notification about the request, `ask` to get the client's answers to
 * server-to-client requests, and (sessions only) `closeStream`.
 * `input(requests)` takes `{ key: request }` and resolves to `{ key: result }`,
 * after checking that the client declared the capability each request needs
 * (MissingRequiredClientCapability, -32021, naming them, otherwise) and
 * before the handler sees a malformed answer (-32602).
 */
function context(args, { capabilities, logLevel, progressToken, notify, ask, closeStream }) {
  return {
    args, capabilities, closeStream,
    log: async (level, data) => {
      if (LEVELS.includes(logLevel) && LEVELS.indexOf(level) >= LEVELS.indexOf(logLevel)) {
        await notify({ method: 'notifications/message', params: { level, logger: 'conformance-fixture', data } });
      }
    },
    progress: async (progress, total) => {
      if (progressToken !== undefined) await notify({ method: 'notifications/progress', params: { progressToken, progress, total } });
    },
    input: async (requests) => {
      const lacking = [...new Set(Object.values(requests).map((r) => INPUTS[r.method].capability))].filter((c) => !capabilities[c]);
      if (lacking.length) {
        throw new McpError(MISSING_REQUIRED_CLIENT_CAPABILITY, `This needs the client's ${lacking.join(' and ')} capability`, {
          requiredCapabilities: Object.fromEntries(lacking.map((c) => [c, {}])),
        });
      }
      const answers = await ask(requests);
      for (const [key, { method }] of Object.entries(requests)) {
        if (!INPUTS[method].result.safeParse(answers[key]).success) throw new McpError(ErrorCode.InvalidParams, `The answer to ${key} is not a valid ${method} result`);
      }
      return answers;
    },
  };
}

const listed = ({ run, sessionOnly, ...definition }) => definition;

/** The operations both eras serve, on a request's params (and, where a
 * handler runs, its era's channel); each era adds its own envelope, and
 * hears of list changes from `changes`. `notFound` is the code for a
 * resource there is not: -32002 up to 2025-11-25, -32602 from 2026-07-28
 * (SEP-2164). */
function catalog(tools, notFound) {
  const toolList = () => (added.tools ? [...tools, DYNAMIC_TOOL] : tools);
  const promptList = () => (added.prompts ? [...PROMPTS, DYNAMIC_PROMPT] : PROMPTS);
  const find = (list, name, kind) => {
    const entry = list.find((e) => e.name === name);
    if (!entry) throw new McpError(ErrorCode.InvalidParams, `Unknown ${kind}: ${name}`);
    return entry;
  };
  return {
    serverInfo: SERVER_INFO,
    changes,
    listTools: () => ({ tools: toolList().map(listed) }),
    callTool: ({ name, arguments: args = {} }, channel) => find(toolList(), name, 'tool').run(context(args, channel)),
    listResources: () => ({ resources: RESOURCES }),
    listResourceTemplates: () => ({ resourceTemplates: [TEMPLATE] }),
    readResource: ({ uri }) => {
      const found = contents(uri);
      if (!found) throw new McpError(notFound, `Resource not found: ${uri}`, { uri });
      return { contents: [found] };
    },
    listPrompts: () => ({ prompts: promptList().map(listed) }),
    getPrompt: ({ name, arguments: args = {} }, channel) => find(promptList(), name, 'prompt').run(context(args, channel)),
    complete: ({ argument }) => {
      const values = (COMPLETIONS[argument.name] ?? []).filter((v) => v.startsWith(argument.value));
      return { completion: { values, total: values.length, hasMore: false } };
    },
  };
}
const SESSION = catalog(TOOLS, -32002);
const STATELESS = catalog(TOOLS.filter((t) => !t.sessionOnly), ErrorCode.InvalidParams);

/** One MCP server for one session; `transport` is that session's. */
function sessionServer(transport) {
  const server = new Server(SERVER_INFO, {
    capabilities: { tools: { listChanged: true }, resources: { subscribe: true }, prompts: { listChanged: true }, logging: {}, completions: {} },
  });
  let minLevel = 'debug';
  const subscriptions = new Set();
  // Notifications and server-to-client requests go on the stream of the
  // request they belong to.
  const channel = ({ params }, extra) => ({
    capabilities: server.getClientCapabilities() ?? {},
    logLevel: minLevel,
    progressToken: params._meta?.progressToken,
    notify: (notification) => extra.sendNotification(notification),
    ask: async (requests) => {
      const answers = {};
      for (const [key, request] of Object.entries(requests)) answers[key] = await extra.sendRequest(request, INPUTS[request.method].result);
      return answers;
    },
    closeStream: () => transport.closeSSEStream(extra.requestId),
  });

  server.setRequestHandler(SetLevelRequestSchema, async ({ params }) => { minLevel = params.level; return {}; });
  server.setRequestHandler(ListToolsRequestSchema, SESSION.listTools);
  server.setRequestHandler(CallToolRequestSchema, (request, extra) => SESSION.callTool(request.params, channel(request, extra)));
  server.setRequestHandler(ListResourcesRequestSchema, SESSION.listResources);
  server.setRequestHandler(ListResourceTemplatesRequestSchema, SESSION.listResourceTemplates);
  server.setRequestHandler(ReadResourceRequestSchema, ({ params }) => SESSION.readResource(params));
  server.setRequestHandler(SubscribeRequestSchema, async ({ params: { uri } }) => { subscriptions.add(uri); return {}; });
  server.setRequestHandler(UnsubscribeRequestSchema, async ({ params: { uri } }) => { subscriptions.delete(uri); return {}; });
  server.setRequestHandler(ListPromptsRequestSchema, SESSION.listPrompts);
  server.setRequestHandler(GetPromptRequestSchema, (request, extra) => SESSION.getPrompt(request.params, channel(request, extra)));
  server.setRequestHandler(CompleteRequestSchema, ({ params }) => SESSION.complete(params));
  return server;
}

/** Every message sent on a session's streams, so a client reconnecting with
 * Last-Event-ID gets the ones after it (the SDK's EventStore interface). */
class MemoryEventStore {
  streams = new Map();
  async storeEvent(streamId, message) {
    const events = this.streams.get(streamId) ?? [];
    this.streams.set(streamId, events);
    const eventId = `${streamId}_${events.length}`;
    events.push({ eventId, message });
    return eventId;
  }
  async getStreamIdForEventId(eventId) {
    const streamId = eventId.slice(0, eventId.lastIndexOf('_'));
    return this.streams.has(streamId) ? streamId : undefined;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const streamId = await this.getStreamIdForEventId(lastEventId);
    if (!streamId) return '';
    const events = this.streams.get(streamId);
    const from = events.findIndex((e) => e.eventId === lastEventId);
    if (from < 0) return '';
    for (const { eventId, message } of events.slice(from + 1)) await send(eventId, message);
    return streamId;
  }
}

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
/** Each live session's transport and server, by session id. */
const sessions = new Map();
const stateless = statelessHandler(STATELESS);

// A change to the tool or prompt list goes to every session's client, on its
// GET stream (not to sessions whose initialize failed, nor to closed ones).
changes.on('tools', () => { for (const { server } of sessions.values()) server.sendToolListChanged(); });
changes.on('prompts', () => { for (const { server } of sessions.values()) server.sendPromptListChanged(); });

// On shutdown each open subscriptions/listen stream first gets its closing
// response (a graceful end); then the signal does what it would have done.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => stateless.close().then(() => process.kill(process.pid, signal)));
}

const reply = (res, status, message) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
};

// DNS rebinding protection for both eras: the Host must be this server's
// loopback address, and an Origin, when there is one, a page served from it.
const LOOPBACK = ['127.0.0.1', 'localhost', '[::1]'];
function rebound({ headers: { host, origin } }) {
  const { port: bound } = http.address();
  if (!LOOPBACK.some((h) => host === `${h}:${bound}`)) return `Invalid Host header: ${host}`;
  if (origin !== undefined && !LOOPBACK.some((h) => origin === `http://${h}:${bound}`)) return `Invalid Origin header: ${origin}`;
  return undefined;
}

const http = createServer(async (req, res) => {
  const refused = rebound(req);
  if (refused) return reply(res, 403, refused);
  if (new URL(req.url, 'http://x').pathname !== '/mcp') return reply(res, 404, 'Not found: the MCP endpoint is /mcp');
  let body;
  if (req.method === 'POST') {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { return reply(res, 400, 'Parse error: the body is not JSON'); }
  }
  const id = req.headers['mcp-session-id'];
  if (!id && isStatelessRequest(req, body)) return stateless(req, res, body);
  if (id) {
    const session = sessions.get(id);
    if (!session) return reply(res, 404, 'Session not found');
    return session.transport.handleRequest(req, res, body);
  }
  if (req.method !== 'POST' || !isInitializeRequest(body)) return reply(res, 400, 'Bad Request: no session; start with initialize');
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    // One store per session: the SDK names every session's GET stream alike,
    // so a shared one would replay one session's list changes to another.
    eventStore: new MemoryEventStore(),
    retryInterval: 500,
    onsessioninitialized: (sid) => sessions.set(sid, { transport, server }),
  });
  transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
  const server = sessionServer(transport);
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
});

http.listen(port, '127.0.0.1', () => {
  console.log(`conformance fixture listening on http://127.0.0.1:${http.address().port}/mcp`);
});
