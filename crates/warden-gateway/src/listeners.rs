//! The notification streams of stateless clients (`subscriptions/listen`,
//! MCP 2026-07-28): which agent holds each, what it asked to hear, and
//! where its notifications go; bounded per agent and in all. No IO: the
//! front door (`mcp/listen.rs`) owns the streams, and upstream notices and
//! the gateway's own catalog changes are routed through here.

use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use tokio::sync::mpsc;

/// Streams one agent may hold open; one more is refused (the client closes
/// one it no longer reads).
pub(crate) const MAX_PER_AGENT: usize = 16;
/// Streams open at once on one gateway.
pub(crate) const MAX_LISTENERS: usize = 4_096;
/// Resources one stream may subscribe to.
pub(crate) const MAX_RESOURCES: usize = 64;

/// The `_meta` key naming the stream a notification belongs to.
pub(crate) const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// What a stream asked to hear (a request's `params.notifications`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
    /// The resources whose updates it wants, as the client names them.
    pub uris: BTreeSet<String>,
    /// Whether it named any resources (the acknowledgment then lists those
    /// the gateway took, even none).
    pub named_resources: bool,
}

impl Filter {
    /// The filter of a `subscriptions/listen` request; `Err` says what is
    /// wrong with it.
    pub fn parse(notifications: Option<&Value>) -> Result<Self, String> {
        let Some(Value::Object(n)) = notifications else {
            return Err("subscriptions/listen needs params.notifications, an object".into());
        };
        let flag = |field: &str| match n.get(field) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("params.notifications.{field} must be a boolean")),
        };
        let mut f =
            Self { tools: flag("toolsListChanged")?, prompts: flag("promptsListChanged")?, resources: flag("resourcesListChanged")?, ..Self::default() };
        match n.get("resourceSubscriptions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(uris)) if uris.len() <= MAX_RESOURCES => {
                f.named_resources = true;
                for uri in uris {
                    let uri = uri.as_str().filter(|u| !u.is_empty()).ok_or("params.notifications.resourceSubscriptions must hold URIs (strings)")?;
                    f.uris.insert(uri.to_string());
                }
            }
            Some(Value::Array(_)) => return Err(format!("params.notifications.resourceSubscriptions names more than {MAX_RESOURCES} resources")),
            Some(_) => return Err("params.notifications.resourceSubscriptions must be an array of URIs".into()),
        }
        Ok(f)
    }

    /// The acknowledgment's `notifications`: what the gateway honours of it.
    pub fn acknowledged(&self) -> Value {
        let mut a = serde_json::Map::new();
        for (field, on) in [("toolsListChanged", self.tools), ("promptsListChanged", self.prompts), ("resourcesListChanged", self.resources)] {
            if on {
                a.insert(field.into(), true.into());
            }
        }
        if self.named_resources {
            a.insert("resourceSubscriptions".into(), self.uris.iter().cloned().collect::<Vec<_>>().into());
        }
        Value::Object(a)
    }
}

/// Something a stream may be told about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    /// The gateway's listing of these servers' tools may differ.
    Tools { servers: &'a BTreeSet<String> },
    /// A server's prompts list changed.
    Prompts { server: &'a str },
    /// A server's resources list changed.
    Resources { server: &'a str },
    /// A resource, as the client names it, changed (its agent's own
    /// upstream subscription said so).
    Updated { agent: &'a str, uri: &'a str },
}

impl Change<'_> {
    /// The notification, before it is tagged with a stream's id.
    pub fn notification(&self) -> Value {
        match self {
            Change::Tools { .. } => json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {} }),
            Change::Prompts { .. } => json!({ "jsonrpc": "2.0", "method": "notifications/prompts/list_changed", "params": {} }),
            Change::Resources { .. } => json!({ "jsonrpc": "2.0", "method": "notifications/resources/list_changed", "params": {} }),
            Change::Updated { uri, .. } => json!({ "jsonrpc": "2.0", "method": "notifications/resources/updated", "params": { "uri": uri } }),
        }
    }
}

/// One open stream.
#[derive(Debug)]
pub(crate) struct Listener {
    pub agent: String,
    /// The servers its token grants something of: list changes of others
    /// are not its business.
    pub servers: BTreeSet<String>,
    pub filter: Filter,
    /// The resources subscribed to upstream for it (what its end may
    /// unsubscribe): only those whose subscription went through.
    held: BTreeSet<String>,
    /// The `subscriptions/listen` request's id, which tags its notifications.
    pub id: Value,
    tx: mpsc::Sender<Value>,
}

impl Listener {
    pub fn new(agent: String, servers: BTreeSet<String>, filter: Filter, id: Value, tx: mpsc::Sender<Value>) -> Self {
        Self { agent, servers, filter, held: BTreeSet::new(), id, tx }
    }

    /// Whether it wants or holds `uri`'s subscription.
    fn needs(&self, agent: &str, uri: &str) -> bool {
        self.agent == agent && (self.filter.uris.contains(uri) || self.held.contains(uri))
    }

    /// The resources it wants or holds.
    pub fn resources(&self) -> impl Iterator<Item = &String> {
        self.filter.uris.union(&self.held)
    }

    fn wants(&self, change: &Change<'_>) -> bool {
        match change {
            Change::Tools { servers } => self.filter.tools && !self.servers.is_disjoint(servers),
            Change::Prompts { server } => self.filter.prompts && self.servers.contains(*server),
            Change::Resources { server } => self.filter.resources && self.servers.contains(*server),
            Change::Updated { agent, uri } => self.agent == *agent && self.filter.uris.contains(*uri),
        }
    }
}

/// Every stream at full capacity, or the agent's share of them taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    Agent,
    Gateway,
}

#[derive(Debug, Default)]
pub(crate) struct Listeners {
    by_key: HashMap<u64, Listener>,
    next: u64,
    /// The shutdown began: no stream opens any more.
    ended: bool,
}

impl Listeners {
    /// Register a stream; its key closes it.
    pub fn open(&mut self, l: Listener) -> Result<u64, Full> {
        if self.ended {
            return Err(Full::Gateway);
        }
        if self.by_key.values().filter(|o| o.agent == l.agent).count() >= MAX_PER_AGENT {
            return Err(Full::Agent);
        }
        if self.by_key.len() >= MAX_LISTENERS {
            return Err(Full::Gateway);
        }
        self.next += 1;
        self.by_key.insert(self.next, l);
        Ok(self.next)
    }

    /// A resource's subscription went through upstream for stream `key`.
    pub fn hold(&mut self, key: u64, uri: &str) {
        if let Some(l) = self.by_key.get_mut(&key) {
            l.held.insert(uri.to_string());
        }
    }

    /// Keep, of the resources a stream asked for, those `taken` (it is
    /// registered with all of them before it subscribes, so that an update
    /// the upstream sends as it subscribes is not missed).
    pub fn keep_uris(&mut self, key: u64, taken: &BTreeSet<String>) {
        if let Some(l) = self.by_key.get_mut(&key) {
            l.filter.uris.retain(|u| taken.contains(u));
        }
    }

    /// Close a stream; returns its agent and the resources it held upstream
    /// that no other stream of the agent wants or holds (to unsubscribe).
    pub fn close(&mut self, key: u64) -> Option<(String, Vec<String>)> {
        let l = self.by_key.remove(&key)?;
        let orphaned = l.held.iter().filter(|u| !self.needed(&l.agent, u)).cloned().collect();
        Some((l.agent, orphaned))
    }

    /// Whether a stream of `agent` wants or holds `uri`'s subscription.
    pub fn needed(&self, agent: &str, uri: &str) -> bool {
        self.by_key.values().any(|o| o.needs(agent, uri))
    }

    /// End every stream `close` selects (a kill switch; its agent's
    /// upstream session lost): their senders go, so each stream sees its
    /// end.
    pub fn close_where(&mut self, close: impl Fn(&Listener) -> bool) {
        self.by_key.retain(|_, l| !close(l));
    }

    /// End every stream, and open none any more (the shutdown).
    pub fn end(&mut self) {
        self.ended = true;
        self.by_key.clear();
    }

    /// Tell every stream that asked for it; returns how many were told. A
    /// stream that does not keep up misses it (notifications are hints to
    /// list or read again, not data).
    pub fn deliver(&self, change: Change<'_>) -> usize {
        let base = change.notification();
        let mut told = 0;
        for l in self.by_key.values().filter(|l| l.wants(&change)) {
            if l.tx.try_send(tagged(base.clone(), &l.id)).is_ok() {
                told += 1;
            }
        }
        told
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// A notification of the stream opened by request `id`.
pub(crate) fn tagged(mut notification: Value, id: &Value) -> Value {
    if !notification.get("params").is_some_and(Value::is_object) {
        notification["params"] = json!({});
    }
    notification["params"]["_meta"] = json!({ SUBSCRIPTION_ID: id });
    notification
}

/// The upstream session in which a stateless client's requests travel
/// where they need one (one per agent, so no state crosses agents).
pub(crate) fn stateless_session(agent: &str) -> String {
    format!("{STATELESS_PREFIX}{agent}")
}

/// The agent whose stateless requests' upstream session `session` is.
pub(crate) fn stateless_agent(session: &str) -> Option<&str> {
    session.strip_prefix(STATELESS_PREFIX)
}

/// Gateway sessions are hex ids, so none starts so.
const STATELESS_PREFIX: &str = "stateless:";

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(agent: &str, filter: Filter, id: i64) -> (Listener, mpsc::Receiver<Value>) {
        let (tx, rx) = mpsc::channel(4);
        (Listener::new(agent.into(), ["crm".to_string()].into(), filter, json!(id), tx), rx)
    }

    #[test]
    fn a_filter_is_parsed_strictly_and_acknowledged_as_honoured() {
        let f = Filter::parse(Some(&json!({ "toolsListChanged": true, "promptsListChanged": false, "resourceSubscriptions": ["crm+file:///a"] }))).unwrap();
        assert!(f.tools && !f.prompts && !f.resources);
        assert_eq!(f.acknowledged(), json!({ "toolsListChanged": true, "resourceSubscriptions": ["crm+file:///a"] }));
        let mut none_taken = f.clone();
        none_taken.uris.clear();
        assert_eq!(none_taken.acknowledged(), json!({ "toolsListChanged": true, "resourceSubscriptions": [] }), "a refused resource is left out");
        assert!(Filter::parse(None).is_err());
        assert!(Filter::parse(Some(&json!([]))).is_err());
        assert!(Filter::parse(Some(&json!({ "toolsListChanged": "yes" }))).is_err());
        assert!(Filter::parse(Some(&json!({ "resourceSubscriptions": [1] }))).is_err());
        let many: Vec<String> = (0..=MAX_RESOURCES).map(|i| format!("crm+file:///{i}")).collect();
        assert!(Filter::parse(Some(&json!({ "resourceSubscriptions": many }))).is_err());
        assert_eq!(Filter::parse(Some(&json!({}))).unwrap().acknowledged(), json!({}), "every field is optional");
    }

    #[test]
    fn only_streams_that_asked_are_told_each_under_its_own_id() {
        let mut ls = Listeners::default();
        let (tools, mut tools_rx) = listener("a", Filter { tools: true, ..Filter::default() }, 1);
        let (prompts, mut prompts_rx) = listener("a", Filter { prompts: true, ..Filter::default() }, 2);
        ls.open(tools).unwrap();
        ls.open(prompts).unwrap();
        let elsewhere: BTreeSet<String> = ["other".to_string()].into();
        assert_eq!(ls.deliver(Change::Tools { servers: &elsewhere }), 0, "a change of tools its token grants nothing of is not its business");
        assert_eq!(ls.deliver(Change::Tools { servers: &["crm".to_string(), "other".to_string()].into() }), 1);
        let got = tools_rx.try_recv().unwrap();
        assert_eq!(got["method"], "notifications/tools/list_changed");
        assert_eq!(got["params"]["_meta"][SUBSCRIPTION_ID], 1);
        assert!(prompts_rx.try_recv().is_err(), "a stream filtered to prompts hears no tool change");
        assert_eq!(ls.deliver(Change::Prompts { server: "other" }), 0, "nor a change of a server its token grants nothing of");
        assert_eq!(ls.deliver(Change::Prompts { server: "crm" }), 1);
        assert_eq!(prompts_rx.try_recv().unwrap()["params"]["_meta"][SUBSCRIPTION_ID], 2);
    }

    #[test]
    fn a_resource_update_reaches_only_its_own_agents_subscribers() {
        let mut ls = Listeners::default();
        let uris: BTreeSet<String> = ["crm+file:///a".to_string()].into();
        let (mine, mut mine_rx) = listener("a", Filter { uris: uris.clone(), ..Filter::default() }, 1);
        let (theirs, mut theirs_rx) = listener("b", Filter { uris, ..Filter::default() }, 1);
        ls.open(mine).unwrap();
        ls.open(theirs).unwrap();
        assert_eq!(ls.deliver(Change::Updated { agent: "a", uri: "crm+file:///a" }), 1);
        assert_eq!(mine_rx.try_recv().unwrap()["params"]["uri"], "crm+file:///a");
        assert!(theirs_rx.try_recv().is_err(), "another agent's subscription is its own upstream session's");
        assert_eq!(ls.deliver(Change::Updated { agent: "a", uri: "crm+file:///b" }), 0);
    }

    #[test]
    fn closing_unsubscribes_only_what_went_through_and_no_other_stream_of_the_agent_needs() {
        let mut ls = Listeners::default();
        let asked: BTreeSet<String> = ["x".to_string(), "y".to_string(), "z".to_string()].into();
        let (first, _r1) = listener("a", Filter { uris: asked, ..Filter::default() }, 1);
        let (second, _r2) = listener("a", Filter { uris: ["y".to_string()].into(), ..Filter::default() }, 2);
        let (other, _r3) = listener("b", Filter { uris: ["x".to_string()].into(), ..Filter::default() }, 3);
        let k1 = ls.open(first).unwrap();
        ls.open(second).unwrap();
        let k3 = ls.open(other).unwrap();
        ls.hold(k1, "x");
        ls.hold(k1, "y");
        ls.hold(k3, "x");
        // z was asked for and never went through (refused, or the stream
        // went before it was subscribed): nothing to unsubscribe.
        assert_eq!(ls.close(k1), Some(("a".to_string(), vec!["x".to_string()])), "y is still wanted; b's x is b's own session's");
        assert_eq!(ls.close(k1), None);
        assert!(!ls.needed("a", "x") && ls.needed("a", "y") && ls.needed("b", "x"));
    }

    #[test]
    fn an_agent_cannot_hold_more_than_its_share_and_a_kill_ends_its_streams() {
        let mut ls = Listeners::default();
        let mut rxs = Vec::new();
        for i in 0..MAX_PER_AGENT {
            let (l, rx) = listener("a", Filter::default(), i as i64);
            ls.open(l).unwrap();
            rxs.push(rx);
        }
        let (extra, _rx) = listener("a", Filter::default(), 99);
        assert_eq!(ls.open(extra), Err(Full::Agent));
        let (other, _rx) = listener("b", Filter::default(), 1);
        ls.open(other).unwrap();
        ls.close_where(|l| l.agent == "a");
        assert_eq!(ls.len(), 1);
        assert!(rxs.iter_mut().all(|rx| matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected))), "each closed stream sees its end");
        ls.end();
        let (late, _rx) = listener("b", Filter::default(), 2);
        assert_eq!((ls.len(), ls.open(late)), (0, Err(Full::Gateway)), "no stream opens once the shutdown began");
    }

    #[test]
    fn stateless_sessions_are_named_apart_from_gateway_sessions() {
        assert_eq!(stateless_agent(&stateless_session("spiffe://td/agent/a")), Some("spiffe://td/agent/a"));
        assert_eq!(stateless_agent("0123abcd"), None);
    }
}
