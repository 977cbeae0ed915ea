//! Property tests for the JSON-RPC envelope parser, the same invariants as
//! the `jsonrpc` fuzz target: it never panics, and it accepts exactly the
//! objects `/mcp` accepts, as the message kind their members make them.
//! Objects are assembled from the members that decide it, right and wrong.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use warden_gateway::jsonrpc::{self, EnvelopeError, Message, fuzz};

/// A member value: the valid kinds and the wrong ones.
fn value() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        Value::Null,
        json!("2.0"),
        json!("1.0"),
        json!(2.0),
        json!(7),
        json!(-1.5),
        json!("tools/call"),
        json!(""),
        json!(true),
        json!([1]),
        json!({ "name": "x" }),
    ])
}

fn envelope() -> impl Strategy<Value = Map<String, Value>> {
    let member = (prop::sample::select(vec!["jsonrpc", "id", "method", "params", "result", "error", "extra"]), value());
    prop::collection::vec(member, 0..7).prop_map(|members| members.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn assembled_envelopes_are_classified_as_mcp_did(obj in envelope()) {
        fuzz::exercise(Value::Object(obj).to_string().as_bytes());
    }

    #[test]
    fn a_valid_request_keeps_its_members(id in prop_oneof![Just(Value::Null), any::<i64>().prop_map(Value::from), "[a-z0-9-]{0,12}".prop_map(Value::from)],
                                         method in "[a-z/_]{1,16}", params in value()) {
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        match jsonrpc::parse(body.to_string().as_bytes()) {
            Ok(Message::Request { id: i, method: m, params: p }) => prop_assert_eq!((i.to_value(), m, p), (id, method, params)),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz::exercise(&bytes);
    }

    #[test]
    fn anything_but_an_object_is_refused_with_invalid_request(v in value().prop_filter("not an object", |v| !v.is_object())) {
        let e = jsonrpc::parse(v.to_string().as_bytes()).unwrap_err();
        prop_assert!(matches!(e, EnvelopeError::Batch | EnvelopeError::NotObject), "{}", e);
        prop_assert_eq!(e.code(), -32600);
    }
}

/// Seeds of the fuzz corpus (and any input that once broke an invariant).
#[test]
fn the_fuzz_regression_inputs_keep_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/jsonrpc");
    let mut accepted = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        fuzz::exercise(&bytes);
        accepted += usize::from(jsonrpc::parse(&bytes).is_ok());
    }
    assert!(accepted >= 3, "the seeds include a request, a notification and a response");
}
