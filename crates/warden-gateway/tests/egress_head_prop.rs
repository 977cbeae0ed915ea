//! Property tests for the egress proxy's request head parser, the same
//! invariants as the `egress_head` fuzz target: it never panics, and an
//! accepted head re-serializes to bytes that parse again to the same request
//! with no bare CR/LF and exactly one framing. Heads are assembled from the
//! pieces smuggling attacks are made of, so most of them are close calls.

use proptest::prelude::*;
use warden_gateway::egress::head::{HeadError, fuzz, parse_request_head};

/// Header lines, well-formed and hostile.
fn header_line() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "Host",
        "host",
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Proxy-Connection",
        "Proxy-Authorization",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Expect",
        "Close",
        "X-A",
        "Accept",
        "X A",
        "",
    ]);
    let values = prop::sample::select(vec![
        "x.test",
        "x.test:80",
        "y.test",
        "5",
        "05",
        "5, 5",
        "-1",
        "chunked",
        "close, X-A",
        "keep-alive",
        "100-continue",
        "Bearer t",
        "a\nContent-Length: 9",
        "a\rb",
        "a\0b",
        "caf\u{e9}",
        " padded\t",
        "",
    ]);
    let seps = prop::sample::select(vec![": ", ":", " : ", ":\t"]);
    let ends = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n", "\r\n "]);
    (names, seps, values, ends).prop_map(|(n, s, v, e)| format!("{n}{s}{v}{e}"))
}

fn request_line() -> impl Strategy<Value = String> {
    let methods = prop::sample::select(vec!["GET", "POST", "CONNECT", "get", "G T"]);
    let targets = prop::sample::select(vec![
        "http://x.test/v1/a?q=1",
        "http://X.test:80/",
        "http://x.test:8080",
        "http://[::1]:81/p",
        "http://x.test?q",
        "/v1/a",
        "x.test:443",
        "http://u@x.test/",
        "http://x.test/#f",
        "https://x.test/",
    ]);
    let versions = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2"]);
    (methods, targets, versions).prop_map(|(m, t, v)| format!("{m} {t} {v}\r\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn assembled_heads_keep_the_invariants(line in request_line(), headers in prop::collection::vec(header_line(), 0..8)) {
        let head = format!("{line}{}\r\n", headers.concat());
        fuzz::exercise(head.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(prefix in request_line(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut head = prefix.into_bytes();
        head.extend_from_slice(&bytes);
        head.extend_from_slice(b"\r\n\r\n");
        fuzz::exercise(&head);
        fuzz::exercise(&bytes);
    }

    #[test]
    fn a_bare_line_feed_anywhere_is_refused(line in request_line(), headers in prop::collection::vec(header_line(), 0..4), at in any::<prop::sample::Index>()) {
        let mut head = format!("{line}{}\r\n", headers.concat()).into_bytes();
        // Right after a CR it leaves that CR's own LF bare (a bare CR it
        // would complete is left out).
        prop_assume!(head.windows(2).all(|w| w[0] != b'\r' || w[1] == b'\n'));
        head.insert(at.index(head.len()), b'\n');
        prop_assert_eq!(parse_request_head(&head).unwrap_err(), HeadError::BareLineBreak);
    }
}

/// Seeds of the fuzz corpus (and any input that once broke an invariant).
#[test]
fn the_fuzz_regression_inputs_keep_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/egress_head");
    let mut accepted = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        fuzz::exercise(&bytes);
        accepted += usize::from(parse_request_head(&bytes).is_ok());
    }
    assert!(accepted >= 2, "the seeds include accepted heads");
}
