#![no_main]
//! An upstream MCP server's SSE stream on arbitrary bytes: no panic, and the
//! same events however the stream is chunked (the first byte picks the
//! chunk sizes), with no framing left in them.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warden_core::sse::fuzz::exercise(data));
