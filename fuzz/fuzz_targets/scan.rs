#![no_main]
//! Every scanner and the redactor on arbitrary bytes: no panic, spans in
//! bounds and on character boundaries, JSON stays JSON.

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use warden_inspect::Inspector;

static INSPECTOR: LazyLock<Inspector> = LazyLock::new(Inspector::default);

fuzz_target!(|data: &[u8]| warden_inspect::fuzz::exercise(&INSPECTOR, data));
