#![no_main]
//! The headers MCP 2026-07-28 mirrors from a request (SEP-2243) on
//! arbitrary bytes: a header value decodes or is refused without a panic,
//! and whatever the gateway encodes from a body reads back as it was.

use libfuzzer_sys::fuzz_target;
use warden_core::mcp_headers::{decoded, encoded, mirrored_headers};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = decoded(&text);
    assert_eq!(decoded(&encoded(&text)).as_deref(), Some(&*text));
    // A schema and arguments out of the same bytes, when they parse.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let params = serde_json::json!({ "name": "t", "arguments": v.get("arguments").cloned().unwrap_or_default() });
        for (name, value) in mirrored_headers("tools/call", &params, v.get("schema")) {
            assert!(name.is_ascii() && !value.contains('\n'), "{name}: {value:?}");
        }
    }
});
