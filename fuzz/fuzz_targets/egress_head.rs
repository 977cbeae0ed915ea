#![no_main]
//! The egress proxy's request head parser on arbitrary bytes: no panic, and
//! an accepted head re-serializes to bytes that parse again to the same
//! request, with no bare CR/LF and exactly one framing.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warden_gateway::egress::head::fuzz::exercise(data));
