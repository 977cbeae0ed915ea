//! Property tests for identifier parsing: no panics, and what parses
//! round-trips; federated tool names split back to the same tool.

use proptest::prelude::*;
use warden_core::{AgentId, ToolRef, canonical_json};

proptest! {
    #[test]
    fn parsers_never_panic_and_round_trip(s in ".{0,200}") {
        if let Ok(id) = s.parse::<AgentId>() {
            prop_assert_eq!(id.as_str(), s.as_str());
        }
        if let Ok(t) = s.parse::<ToolRef>() {
            prop_assert_eq!(t.to_string(), s.clone());
        }
        let _ = ToolRef::from_federated_name(&s);
    }

    #[test]
    fn federated_names_are_unambiguous(server in "[a-z0-9][a-z0-9.-]{0,20}", tool in "[A-Za-z0-9_.-]{1,40}") {
        prop_assume!(!server.contains("__") && tool != "*");
        let t = ToolRef::new(&server, &tool).unwrap();
        prop_assert_eq!(ToolRef::from_federated_name(&t.federated_name()), Some(t));
    }

    #[test]
    fn canonical_json_is_stable_and_parses(v in any::<std::collections::BTreeMap<String, (i64, String, bool)>>()) {
        let json = serde_json::to_value(&v).unwrap();
        let text = canonical_json(&json);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &json);
        prop_assert_eq!(canonical_json(&back), text);
    }
}
