//! Property tests for the SSE decoder (upstream streams, the gateway's streams to `warden connect`), the same
//! invariants as the `sse` fuzz target: however the stream is chunked, the
//! same events come out, with no framing left in them. Streams are assembled
//! from the lines MCP servers send and the ones that trip decoders.

use proptest::prelude::*;
use warden_core::sse::{Decoder, fuzz};

fn line() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n",
        "data:{\"a\":\n",
        "data: 1}\r\n",
        "data\n",
        "data:\n",
        "data:  two spaces\n",
        "event: message\n",
        "id: 9\n",
        ": comment\n",
        "\n",
        "\r\n",
        "\r\r\n",
        "data: a\rb\n",
        "data: \u{202e}\n",
    ])
}

proptest! {
    #[test]
    fn assembled_streams_decode_the_same_in_any_chunks(cuts in any::<u8>(), lines in prop::collection::vec(line(), 0..12)) {
        let mut bytes = vec![cuts];
        bytes.extend(lines.concat().bytes());
        fuzz::exercise(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz::exercise(&bytes);
    }

    #[test]
    fn every_event_is_its_data_lines_joined(values in prop::collection::vec("[ -~]{1,20}", 1..5)) {
        let stream: String = values.iter().map(|v| format!("data: {v}\n")).collect::<String>() + "\n";
        let events = Decoder::new(1 << 20).push(stream.as_bytes()).unwrap();
        prop_assert_eq!(events, vec![values.join("\n")]);
    }
}

/// Seeds of the fuzz corpus (and any input that once broke an invariant).
#[test]
fn the_fuzz_regression_inputs_keep_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/sse");
    let mut events = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        fuzz::exercise(&bytes);
        events += Decoder::new(usize::MAX).push(&bytes[1..]).unwrap().len();
    }
    assert!(events >= 3, "the seeds hold events");
}
