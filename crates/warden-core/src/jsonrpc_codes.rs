//! JSON-RPC error codes Warden answers with beyond the standard ones, the
//! same at the gateway and at `warden connect`, so a host sees one meaning
//! per code.

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL: i64 = -32603;
pub const DENIED: i64 = -32001;
pub const NEEDS_APPROVAL: i64 = -32002;
pub const OUT_OF_SCOPE: i64 = -32003;
pub const UNAUTHENTICATED: i64 = -32004;

// MCP 2026-07-28 reserves -32020 to -32099 for the specification's own.
/// The HTTP headers do not match the request body (or a required one is
/// missing or malformed).
pub const HEADER_MISMATCH: i64 = -32020;
/// The request needs a client capability its `_meta` did not declare.
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// The request's protocol version is not one the server speaks.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
