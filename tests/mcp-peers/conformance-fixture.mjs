// The server the official MCP conformance suite (@modelcontextprotocol/conformance)
// tests, directly and through Warden (conformance.test.mjs): every tool,
// resource, prompt and completion its server scenarios call, answering as
// each scenario's own description says, over streamable HTTP with stateful
// sessions, resumable SSE streams (an in-memory event store, so a client that
// reconnects with Last-Event-ID gets what it missed) and DNS rebinding
// protection (only loopback Host and Origin headers).
//
// Built on the official TypeScript SDK's low-level `Server` rather than
// `McpServer`: the scenarios spell exact JSON Schemas (json-schema-2020-12
// wants `$schema`, `$defs` and `additionalProperties` kept as written), which
// McpServer's Zod conversion would rewrite to draft-07.
//
// Usage: node conformance-fixture.mjs [PORT]   (or PORT=...; 0 picks one)
// Prints `conformance fixture listening on http://127.0.0.1:PORT/mcp`.
// Everything it returns is small and benign: a 1x1 PNG, a tenth of a second
// of silent WAV, short sentences.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema, CompleteRequestSchema, CreateMessageResultSchema, ElicitResultSchema, GetPromptRequestSchema,
  ListPromptsRequestSchema, ListResourceTemplatesRequestSchema, ListResourcesRequestSchema, ListToolsRequestSchema,
  ReadResourceRequestSchema, SetLevelRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema,
  isInitializeRequest, ErrorCode, McpError,
} from '@modelcontextprotocol/sdk/types.js';

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
const noArgs = { type: 'object', properties: {} };

const TOOLS = [
  { name: 'test_simple_text', description: 'Returns a simple text response', inputSchema: noArgs },
  { name: 'test_image_content', description: 'Returns a 1x1 PNG image', inputSchema: noArgs },
  { name: 'test_audio_content', description: 'Returns a tenth of a second of silent WAV audio', inputSchema: noArgs },
  { name: 'test_embedded_resource', description: 'Returns an embedded text resource', inputSchema: noArgs },
  { name: 'test_multiple_content_types', description: 'Returns text, an image and an embedded resource', inputSchema: noArgs },
  { name: 'test_tool_with_logging', description: 'Sends three log messages while it runs', inputSchema: noArgs },
  { name: 'test_error_handling', description: 'Always reports a tool error', inputSchema: noArgs },
  { name: 'test_tool_with_progress', description: 'Reports progress 0, 50 and 100 of 100', inputSchema: noArgs },
  {
    name: 'test_sampling', description: 'Asks the client\'s model to answer a prompt',
    inputSchema: { type: 'object', properties: { prompt: { type: 'string', description: 'The prompt to send to the LLM' } }, required: ['prompt'] },
  },
  {
    name: 'test_elicitation', description: 'Asks the user for a username and an email address',
    inputSchema: { type: 'object', properties: { message: { type: 'string', description: 'The message to show the user' } }, required: ['message'] },
  },
  { name: 'test_elicitation_sep1034_defaults', description: 'Elicitation with a default for each primitive type (SEP-1034)', inputSchema: noArgs },
  { name: 'test_elicitation_sep1330_enums', description: 'Elicitation with the five enum forms (SEP-1330)', inputSchema: noArgs },
  {
    name: 'json_schema_2020_12_tool', description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
  },
  { name: 'test_reconnection', description: 'Closes its SSE stream mid-call; the result follows when the client reconnects', inputSchema: noArgs },
];

const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', description: 'A static text resource', mimeType: 'text/plain' },
  { uri: 'test://static-binary', name: 'static-binary', description: 'A static binary resource (a 1x1 PNG)', mimeType: 'image/png' },
  { uri: 'test://watched-resource', name: 'watched-resource', description: 'A resource clients may subscribe to', mimeType: 'text/plain' },
];
const TEMPLATE = { uriTemplate: 'test://template/{id}/data', name: 'template-data', description: 'Data for an id', mimeType: 'application/json' };

const PROMPTS = [
  { name: 'test_simple_prompt', description: 'A prompt without arguments' },
  {
    name: 'test_prompt_with_arguments', description: 'A prompt with two arguments',
    arguments: [{ name: 'arg1', description: 'First test argument', required: true }, { name: 'arg2', description: 'Second test argument', required: true }],
  },
  {
    name: 'test_prompt_with_embedded_resource', description: 'A prompt that embeds a resource',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
  },
  { name: 'test_prompt_with_image', description: 'A prompt with an image' },
];
const COMPLETIONS = { arg1: ['paris', 'park', 'party'], arg2: ['red', 'green', 'blue'], id: ['123', '456'] };

const LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/** One MCP server for one session; `transport` is that session's. */
function sessionServer(transport) {
  const server = new Server({ name: 'warden-conformance-fixture', version: '1.0.0' }, {
    capabilities: { tools: {}, resources: { subscribe: true }, prompts: {}, logging: {}, completions: {} },
  });
  let minLevel = 'debug';
  const subscriptions = new Set();
  // A log message on the stream of the request it belongs to, if the
  // client's level lets it through.
  const log = (extra, level, data) => LEVELS.indexOf(level) < LEVELS.indexOf(minLevel) ? Promise.resolve()
    : extra.sendNotification({ method: 'notifications/message', params: { level, logger: 'conformance-fixture', data } });
  const elicit = async (extra, params) => {
    if (!server.getClientCapabilities()?.elicitation) throw new McpError(ErrorCode.InvalidRequest, 'the client does not offer elicitation');
    const r = await extra.sendRequest({ method: 'elicitation/create', params }, ElicitResultSchema);
    return { content: [text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
  };

  server.setRequestHandler(SetLevelRequestSchema, async ({ params }) => { minLevel = params.level; return {}; });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }));
  server.setRequestHandler(CallToolRequestSchema, async ({ params }, extra) => {
    const args = params.arguments ?? {};
    switch (params.name) {
      case 'test_simple_text':
        return { content: [text('This is a simple text response for testing.')] };
      case 'test_image_content':
        return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] };
      case 'test_audio_content':
        return { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] };
      case 'test_embedded_resource':
        return { content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }] };
      case 'test_multiple_content_types':
        return {
          content: [
            text('Multiple content types test:'),
            { type: 'image', data: PNG, mimeType: 'image/png' },
            { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) } },
          ],
        };
      case 'test_tool_with_logging':
        await log(extra, 'info', 'Tool execution started');
        await sleep(50);
        await log(extra, 'info', 'Tool processing data');
        await sleep(50);
        await log(extra, 'info', 'Tool execution completed');
        return { content: [text('Tool with logging executed successfully')] };
      case 'test_error_handling':
        return { isError: true, content: [text('This tool intentionally returns an error for testing')] };
      case 'test_tool_with_progress': {
        const progressToken = params._meta?.progressToken;
        for (const progress of [0, 50, 100]) {
          if (progressToken !== undefined) {
            await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } });
          }
          if (progress < 100) await sleep(50);
        }
        return { content: [text('Tool with progress executed successfully')] };
      }
      case 'test_sampling': {
        if (!server.getClientCapabilities()?.sampling) return { isError: true, content: [text('The client does not offer sampling')] };
        const r = await extra.sendRequest({
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: text(String(args.prompt ?? '')) }], maxTokens: 100 },
        }, CreateMessageResultSchema);
        return { content: [text(`LLM response: ${r.content.type === 'text' ? r.content.text : `[${r.content.type}]`}`)] };
      }
      case 'test_elicitation':
        return elicit(extra, {
          message: String(args.message ?? ''),
          requestedSchema: {
            type: 'object',
            properties: { username: { type: 'string', description: 'User\'s response' }, email: { type: 'string', description: 'User\'s email address' } },
            required: ['username', 'email'],
          },
        });
      case 'test_elicitation_sep1034_defaults':
        return elicit(extra, {
          message: 'Please review and update the form fields with defaults',
          requestedSchema: {
            type: 'object',
            properties: {
              name: { type: 'string', description: 'User name', default: 'John Doe' },
              age: { type: 'integer', description: 'User age', default: 30 },
              score: { type: 'number', description: 'User score', default: 95.5 },
              status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
              verified: { type: 'boolean', description: 'Verification status', default: true },
            },
          },
        });
      case 'test_elicitation_sep1330_enums':
        return elicit(extra, {
          message: 'Please choose from each list',
          requestedSchema: {
            type: 'object',
            properties: {
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
            },
          },
        });
      case 'json_schema_2020_12_tool':
        return { content: [text(`Received ${JSON.stringify(args)}`)] };
      case 'test_reconnection':
        // An event with an id first, so the client has a Last-Event-ID to
        // resume from; then the stream closes and the result is stored for
        // the client's GET.
        await log(extra, 'info', 'Closing the stream; the result follows when you reconnect');
        transport.closeSSEStream(extra.requestId);
        await sleep(100);
        return { content: [text('Reconnection test completed')] };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${params.name}`);
    }
  });

  server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: RESOURCES }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({ resourceTemplates: [TEMPLATE] }));
  server.setRequestHandler(ReadResourceRequestSchema, async ({ params: { uri } }) => {
    if (uri === 'test://static-text') return { contents: [{ uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] };
    if (uri === 'test://static-binary') return { contents: [{ uri, mimeType: 'image/png', blob: PNG }] };
    if (uri === 'test://watched-resource') return { contents: [{ uri, mimeType: 'text/plain', text: 'The watched resource has not changed.' }] };
    const m = uri.match(/^test:\/\/template\/([^/]+)\/data$/);
    if (m) return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` }) }] };
    throw new McpError(-32002, `Resource not found: ${uri}`);
  });
  server.setRequestHandler(SubscribeRequestSchema, async ({ params: { uri } }) => { subscriptions.add(uri); return {}; });
  server.setRequestHandler(UnsubscribeRequestSchema, async ({ params: { uri } }) => { subscriptions.delete(uri); return {}; });

  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }));
  server.setRequestHandler(GetPromptRequestSchema, async ({ params: { name, arguments: args = {} } }) => {
    const user = (content) => ({ role: 'user', content });
    switch (name) {
      case 'test_simple_prompt':
        return { messages: [user(text('This is a simple prompt for testing.'))] };
      case 'test_prompt_with_arguments':
        return { messages: [user(text(`Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'`))] };
      case 'test_prompt_with_embedded_resource':
        return {
          messages: [
            user({ type: 'resource', resource: { uri: String(args.resourceUri), mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
            user(text('Please process the embedded resource above.')),
          ],
        };
      case 'test_prompt_with_image':
        return { messages: [user({ type: 'image', data: PNG, mimeType: 'image/png' }), user(text('Please analyze the image above.'))] };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${name}`);
    }
  });
  server.setRequestHandler(CompleteRequestSchema, async ({ params: { argument } }) => {
    const values = (COMPLETIONS[argument.name] ?? []).filter((v) => v.startsWith(argument.value));
    return { completion: { values, total: values.length, hasMore: false } };
  });
  return server;
}

/** Every message sent on a stream, so a client reconnecting with
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
const sessions = new Map();
const eventStore = new MemoryEventStore();

const reply = (res, status, message) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
};

const http = createServer(async (req, res) => {
  if (new URL(req.url, 'http://x').pathname !== '/mcp') return reply(res, 404, 'Not found: the MCP endpoint is /mcp');
  let body;
  if (req.method === 'POST') {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { return reply(res, 400, 'Parse error: the body is not JSON'); }
  }
  const id = req.headers['mcp-session-id'];
  if (id) {
    const transport = sessions.get(id);
    if (!transport) return reply(res, 404, 'Session not found');
    return transport.handleRequest(req, res, body);
  }
  if (req.method !== 'POST' || !isInitializeRequest(body)) return reply(res, 400, 'Bad Request: no session; start with initialize');
  const { port: bound } = http.address();
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    eventStore,
    retryInterval: 500,
    enableDnsRebindingProtection: true,
    allowedHosts: ['127.0.0.1', 'localhost', '[::1]'].map((h) => `${h}:${bound}`),
    allowedOrigins: ['127.0.0.1', 'localhost', '[::1]'].map((h) => `http://${h}:${bound}`),
    onsessioninitialized: (sid) => sessions.set(sid, transport),
  });
  transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
  await sessionServer(transport).connect(transport);
  await transport.handleRequest(req, res, body);
});

http.listen(port, '127.0.0.1', () => {
  console.log(`conformance fixture listening on http://127.0.0.1:${http.address().port}/mcp`);
});
