// The 2026-07-28 side of the conformance fixture (conformance-fixture.mjs):
// stateless MCP (SEP-2575) over plain Node HTTP and JSON, since the 1.x SDK
// does not speak this revision. No sessions: every request carries its own
// `_meta` envelope (protocol version, client capabilities, optionally a log
// level and a progress token), mirrored into the MCP-Protocol-Version,
// Mcp-Method, Mcp-Name and Mcp-Param-* headers (SEP-2243), and is answered
// on its own, as one JSON body or, once the handler sends a notification,
// an SSE stream that ends with the response. A handler that needs the client
// (elicitation, sampling, roots) gets an InputRequiredResult back to it
// instead of a request on the stream, and runs again on the client's retry
// (MRTR, SEP-2322); the answers of earlier rounds travel in an HMAC-sealed
// requestState, so no round leaves anything behind on the server.
// `subscriptions/listen` answers with a stream that stays open and carries
// the tool and prompt list changes the client asked for (the fixture's
// resources never change, so it offers no resource notifications), until
// the client closes it or the fixture shuts down.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';

const SUPPORTED = ['2026-07-28'];
// Versions that open a session with `initialize` instead.
const INITIALIZE_ERA = ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25'];
const PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion';
const CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities';
const LOG_LEVEL = 'io.modelcontextprotocol/logLevel';
const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
const HEADER_MISMATCH = -32020;
const UNSUPPORTED_PROTOCOL_VERSION = -32022;

// listChanged: delivered on subscriptions/listen streams. No resources
// subscribe or listChanged: the fixture's resources never change.
const CAPABILITIES = { tools: { listChanged: true }, resources: {}, prompts: { listChanged: true }, completions: {}, logging: {} };
// Nothing the fixture returns depends on who asks; the tool and prompt lists
// change only when a test_trigger_* tool is called, and say so to listeners.
const CACHE = { ttlMs: 60_000, cacheScope: 'public' };
// The list changes a listen stream may ask for: the filter's field, the
// catalog's event, and the notification that tells of it.
const LIST_CHANGES = {
  toolsListChanged: ['tools', 'notifications/tools/list_changed'],
  promptsListChanged: ['prompts', 'notifications/prompts/list_changed'],
};
// A comment line this often keeps a quiet listen stream from looking idle to
// intermediaries, and finds out when its client has gone.
const KEEP_ALIVE_MS = 15_000;

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Whether a request without a session belongs here: it carries the
 * per-request `_meta` envelope, or names a protocol version newer than the
 * initialize era (a dual-era server picks the era from how the client opens). */
export function isStatelessRequest(req, body) {
  const version = req.headers['mcp-protocol-version'];
  return (version !== undefined && !INITIALIZE_ERA.includes(version)) || body?.params?._meta?.[PROTOCOL_VERSION] !== undefined;
}

const mismatch = (message) => new McpError(HEADER_MISMATCH, `Header mismatch: ${message}`);

/** A header value as meant: plain visible ASCII as it is, or the UTF-8 in
 * strict Base64 between `=?base64?` and `?=`; undefined when it is neither. */
function decoded(value) {
  if (!/^[\x20-\x7E\t]*$/.test(value)) return undefined;
  const wrapped = /^=\?base64\?(.*)\?=$/.exec(value);
  if (!wrapped) return value;
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(wrapped[1])) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(wrapped[1], 'base64'));
  } catch {
    return undefined;
  }
}

/** The request's `_meta`, once it has what every request needs and the
 * headers say the same as the body. */
function envelope(req, method, params) {
  const meta = params._meta;
  if (!isObject(meta) || typeof meta[PROTOCOL_VERSION] !== 'string' || !isObject(meta[CLIENT_CAPABILITIES])) {
    throw new McpError(ErrorCode.InvalidParams, `params._meta must carry ${PROTOCOL_VERSION} and ${CLIENT_CAPABILITIES}`);
  }
  const version = meta[PROTOCOL_VERSION];
  const header = req.headers['mcp-protocol-version'];
  if (header !== version) throw mismatch(header === undefined ? 'no MCP-Protocol-Version header' : `MCP-Protocol-Version is ${header}, _meta says ${version}`);
  if (!SUPPORTED.includes(version)) {
    throw new McpError(UNSUPPORTED_PROTOCOL_VERSION, `Unsupported protocol version: ${version}`, { supported: SUPPORTED, requested: version });
  }
  const named = req.headers['mcp-method'];
  if (named !== method) throw mismatch(named === undefined ? 'no Mcp-Method header' : `Mcp-Method is ${named}, the body's method is ${method}`);
  return meta;
}

/** Mcp-Name must be there, and say what the body does, for the methods that name something. */
function checkName(req, value) {
  const header = req.headers['mcp-name'];
  if (header === undefined) throw mismatch('no Mcp-Name header');
  if (decoded(header) !== value) throw mismatch(`Mcp-Name is ${header}, the body names ${value}`);
}

/** Each argument the tool's schema mirrors into a header (`x-mcp-header`;
 * the fixture annotates top-level properties only) must come with that
 * header, saying the same; an absent or null argument has none to check. */
function checkParamHeaders(req, tool, args) {
  for (const [property, schema] of Object.entries(tool?.inputSchema.properties ?? {})) {
    const name = schema['x-mcp-header'];
    const value = args?.[property];
    if (name === undefined || value === undefined || value === null) continue;
    const header = req.headers[`mcp-param-${name.toLowerCase()}`];
    if (header === undefined) throw mismatch(`no Mcp-Param-${name} header for arguments.${property}`);
    const meant = decoded(header);
    if (meant === undefined) throw mismatch(`Mcp-Param-${name} is neither plain ASCII nor valid =?base64?...?=`);
    if (typeof value === 'number' ? Number(meant) !== value : meant !== String(value)) throw mismatch(`Mcp-Param-${name} does not match arguments.${property}`);
  }
}

// requestState: the answers so far, bound to the request they belong to and
// a short lifetime, sealed with a key that lives as long as this process.
// There is no principal to bind it to: the fixture has no authentication.
const SECRET = randomBytes(32);
const STATE_LIFETIME_MS = 10 * 60_000;
const sign = (payload) => createHmac('sha256', SECRET).update(payload).digest('base64url');
/** What the requestState of a retry of this request must have been made for. */
const binding = (method, params) => createHash('sha256').update(JSON.stringify([method, params.name, params.arguments ?? {}])).digest('base64url');

function seal(bound, answers) {
  const payload = Buffer.from(JSON.stringify({ bound, answers, expires: Date.now() + STATE_LIFETIME_MS })).toString('base64url');
  return `${payload}.${sign(payload)}`;
}

function unseal(state, bound) {
  const invalid = (why) => new McpError(ErrorCode.InvalidParams, `Invalid requestState: ${why}`);
  const parts = typeof state === 'string' ? state.split('.') : [];
  if (parts.length !== 2) throw invalid('not one this server issued');
  const [payload, signature] = parts;
  const given = Buffer.from(signature);
  const expected = Buffer.from(sign(payload));
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid('it fails its integrity check');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  if (claims.bound !== bound) throw invalid('it was issued for another request');
  if (claims.expires < Date.now()) throw invalid('it has expired');
  return claims.answers;
}

/** Thrown by `ask` for the inputs the client still has to provide. */
class InputRequired {
  constructor(requests) { this.requests = requests; }
}

/** Runs `run(ask)` on a request that may need the client's input: `ask`
 * answers from the requestState's answers and the retry's inputResponses
 * (keys nobody asked for are ignored), or ends the round with an
 * InputRequiredResult for what is missing. */
async function withInputs(method, params, run) {
  const { inputResponses = {}, requestState } = params;
  if (!isObject(inputResponses)) throw new McpError(ErrorCode.InvalidParams, 'inputResponses must be an object');
  const bound = binding(method, params);
  const answers = requestState === undefined ? {} : unseal(requestState, bound);
  try {
    return await run(async (requests) => {
      const missing = {};
      for (const [key, request] of Object.entries(requests)) {
        if (Object.hasOwn(answers, key)) continue;
        if (Object.hasOwn(inputResponses, key)) answers[key] = inputResponses[key];
        else missing[key] = request;
      }
      if (Object.keys(missing).length) throw new InputRequired(missing);
      return Object.fromEntries(Object.keys(requests).map((key) => [key, answers[key]]));
    });
  } catch (e) {
    if (!(e instanceof InputRequired)) throw e;
    return { resultType: 'input_required', inputRequests: e.requests, requestState: seal(bound, answers) };
  }
}

const SSE = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };
const event = (message) => `data: ${JSON.stringify(message)}\n\n`;

/** Writes one answer: JSON, unless a notification came first and made it an
 * SSE stream. A client that closed the stream has cancelled the request:
 * nothing more is sent. */
function responder(res) {
  let streaming = false;
  return {
    notify(message) {
      if (res.destroyed) return;
      if (!streaming) res.writeHead(200, SSE);
      streaming = true;
      res.write(event(message));
    },
    finish(status, message) {
      if (res.destroyed) return;
      if (streaming) return res.end(event(message));
      res.writeHead(status, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(message));
    },
  };
}

// Every error is the client's request going wrong (400), but for the method
// it names not being here (404) and the fixture failing (500).
const statusOf = (code) => (code === ErrorCode.MethodNotFound ? 404 : code === ErrorCode.InternalError ? 500 : 400);

/** The request handler for `catalog`, the operations the fixture serves in
 * both eras; its `close()` ends the open listen streams gracefully and
 * resolves once their closing responses are sent. */
export function statelessHandler(catalog) {
  // How to end each open listen stream.
  const listening = new Set();

  /** subscriptions/listen: acknowledges the part of the filter the fixture
   * honours, then sends each change it asked for; every message carries the
   * subscription's id, the request's. */
  function listen(res, id, notifications) {
    if (!isObject(notifications)) throw new McpError(ErrorCode.InvalidParams, 'params.notifications must be an object');
    const tag = { [SUBSCRIPTION_ID]: id };
    const honoured = Object.keys(LIST_CHANGES).filter((field) => notifications[field] === true);
    const send = (message) => res.write(event({ jsonrpc: '2.0', ...message }));
    res.writeHead(200, SSE);
    send({ method: 'notifications/subscriptions/acknowledged', params: { _meta: tag, notifications: Object.fromEntries(honoured.map((f) => [f, true])) } });
    const listeners = honoured.map((field) => {
      const [list, method] = LIST_CHANGES[field];
      const changed = () => send({ method, params: { _meta: tag } });
      catalog.changes.on(list, changed);
      return [list, changed];
    });
    const keepAlive = setInterval(() => res.write(':\n\n'), KEEP_ALIVE_MS);
    const stop = () => {
      for (const [list, changed] of listeners) catalog.changes.off(list, changed);
      clearInterval(keepAlive);
      listening.delete(end);
    };
    // The server's own end of the subscription: its response to the request.
    const end = () => new Promise((resolve) => {
      stop();
      res.end(event({ jsonrpc: '2.0', id, result: { resultType: 'complete', _meta: { ...tag, [SERVER_INFO]: catalog.serverInfo } } }), resolve);
    });
    listening.add(end);
    // The client's: it closed the stream.
    res.on('close', stop);
  }

  // `named`: the param Mcp-Name mirrors; `inputs`: may answer with an
  // InputRequiredResult; `cacheable`: carries caching hints (SEP-2549).
  const METHODS = {
    'server/discover': { run: () => ({ supportedVersions: SUPPORTED, capabilities: CAPABILITIES }), cacheable: true },
    'tools/list': { run: catalog.listTools, cacheable: true },
    'tools/call': { run: catalog.callTool, named: 'name', inputs: true },
    'resources/list': { run: catalog.listResources, cacheable: true },
    'resources/templates/list': { run: catalog.listResourceTemplates, cacheable: true },
    'resources/read': { run: catalog.readResource, named: 'uri', cacheable: true },
    'prompts/list': { run: catalog.listPrompts, cacheable: true },
    'prompts/get': { run: catalog.getPrompt, named: 'name', inputs: true },
    'completion/complete': { run: catalog.complete },
  };

  const handler = async (req, res, body) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' });
      return res.end();
    }
    const out = responder(res);
    const id = typeof body?.id === 'string' || typeof body?.id === 'number' ? body.id : undefined;
    try {
      if (!isObject(body) || body.jsonrpc !== '2.0' || typeof body.method !== 'string') throw new McpError(ErrorCode.InvalidRequest, 'The body must be one JSON-RPC request');
      // This revision defines no notifications from the client over HTTP.
      if (body.id === undefined) {
        res.writeHead(202);
        return res.end();
      }
      const { method } = body;
      const params = isObject(body.params) ? body.params : {};
      const meta = envelope(req, method, params);
      if (method === 'subscriptions/listen') return listen(res, id, params.notifications);
      const entry = METHODS[method];
      if (!entry) throw new McpError(ErrorCode.MethodNotFound, `Method not found: ${method}`);
      if (entry.named) checkName(req, params[entry.named]);
      if (method === 'tools/call') checkParamHeaders(req, catalog.listTools().tools.find((t) => t.name === params.name), params.arguments);
      const channel = {
        capabilities: meta[CLIENT_CAPABILITIES],
        logLevel: meta[LOG_LEVEL],
        progressToken: meta.progressToken,
        notify: async (notification) => out.notify({ jsonrpc: '2.0', ...notification }),
      };
      const result = await (entry.inputs ? withInputs(method, params, (ask) => entry.run(params, { ...channel, ask })) : entry.run(params, channel));
      out.finish(200, {
        jsonrpc: '2.0',
        id,
        result: {
          ...result,
          resultType: result.resultType ?? 'complete',
          ...(entry.cacheable && CACHE),
          _meta: { ...result._meta, [SERVER_INFO]: catalog.serverInfo },
        },
      });
    } catch (e) {
      const code = Number.isInteger(e?.code) ? e.code : ErrorCode.InternalError;
      const error = { code, message: e?.message ?? String(e), ...(e?.data !== undefined && { data: e.data }) };
      out.finish(statusOf(code), { jsonrpc: '2.0', ...(id !== undefined && { id }), error });
    }
  };
  handler.close = () => Promise.all([...listening].map((end) => end()));
  return handler;
}
