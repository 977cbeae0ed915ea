#![no_main]
//! The JSON-RPC envelope of a POST to `/mcp` on arbitrary bytes: no panic,
//! and exactly the objects `/mcp` accepts are accepted, as the message kind
//! their members make them.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warden_gateway::jsonrpc::fuzz::exercise(data));
