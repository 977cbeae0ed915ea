//! Logs written by earlier releases keep verifying: the fixture is the audit
//! log of `warden demo` as written at commit 0221ba5 (before the decision
//! became a typed `Verdict`), exactly as its SQLite rows stored it. Every
//! record must read back into today's types and serialize to the very bytes
//! it was stored as (so its hash still holds), and the chain and signatures
//! must verify with the gateway's public key.

use warden_audit::{ChainHead, parse_line, verify_jsonl};
use warden_identity::PublicKey;

const LOG: &str = include_str!("fixtures/demo-log-0221ba5.jsonl");
const KEY: &str = include_str!("fixtures/demo-log-0221ba5.pub.pem");

#[test]
fn every_stored_record_serializes_back_to_its_stored_bytes() {
    let mut decisions = std::collections::BTreeSet::new();
    for (i, line) in LOG.lines().enumerate() {
        let rec = parse_line(i, line).unwrap_or_else(|e| panic!("record {}: {e}", i + 1));
        assert_eq!(serde_json::to_string(&rec).unwrap(), line, "record {} no longer serializes to its stored bytes", i + 1);
        assert!(rec.content_matches_hash(), "record {} no longer hashes to its stored hash", i + 1);
        decisions.insert(rec.event.decision.as_str());
    }
    assert_eq!(LOG.lines().count(), 213);
    // The fixture covers the verdicts the gateway writes.
    assert_eq!(decisions.into_iter().collect::<Vec<_>>(), ["allow", "contain", "deny", "needs_approval"]);
}

#[test]
fn the_stored_log_verifies_with_the_gateways_public_key() {
    let key = PublicKey::parse(KEY).unwrap();
    let report = verify_jsonl(LOG, &key, ChainHead::default(), None, &[]).unwrap();
    assert_eq!((report.records, report.head.seq), (213, 213));
    let edited = LOG.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
    assert!(verify_jsonl(&edited, &key, ChainHead::default(), None, &[]).is_err(), "a rewritten verdict is caught");
}
