//! MCP sessions (`Mcp-Session-Id`): which agent opened each one, bounded
//! per agent and in all, idle ones expired without scanning the table (an
//! `initialize` costs the same with 10 or 100,000 sessions open).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Sessions open at once on one gateway.
pub(crate) const MAX_SESSIONS: usize = 100_000;
/// Sessions one agent may hold; opening another closes its oldest, whose
/// next request is answered 404 (the client initializes again, as the
/// specification says). One agent cannot crowd the others out.
pub(crate) const MAX_PER_AGENT: usize = 1_000;
/// Sessions unused this long are closed.
pub(crate) const IDLE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub agent: String,
    pub last_seen: Instant,
    /// What its client offers (its `initialize` capabilities).
    pub offers: crate::upstream::ClientOffers,
    /// Its stream of notifications about no request (`GET /mcp`).
    events: Events,
}

/// An event of a session's stream, with its id.
pub(crate) type Event = (u64, serde_json::Value);

/// Events kept for a session's stream, so that a client that reconnects
/// with `Last-Event-ID` misses none of the last [`EVENTS_KEPT`].
pub(crate) const EVENTS_KEPT: usize = 256;
/// And no more than this many bytes of them per session.
pub(crate) const EVENT_BYTES_KEPT: usize = 256 << 10;

/// One session's stream: the events kept, numbered from 1, and the GET
/// stream open now (the newest replaces an older one).
#[derive(Debug, Clone, Default)]
struct Events {
    next: u64,
    kept: VecDeque<Event>,
    /// Their size as JSON text, kept under [`EVENT_BYTES_KEPT`].
    bytes: usize,
    live: Option<tokio::sync::mpsc::Sender<Event>>,
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: HashMap<String, Session>,
    /// Each agent's sessions, oldest first.
    by_agent: HashMap<String, VecDeque<String>>,
    /// Candidates for expiry, roughly oldest first: (last seen when queued,
    /// id). A session used since it was queued is queued again when it
    /// reaches the front; a closed one is skipped.
    idle: VecDeque<(Instant, String)>,
}

/// Every session slot is taken by sessions in use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

impl Sessions {
    /// Open session `sid` for `agent`, closing idle sessions and, at the
    /// agent's limit, its oldest one.
    pub fn open(&mut self, sid: String, agent: &str, now: Instant) -> Result<(), Full> {
        self.expire(now);
        if self.by_agent.get(agent).is_some_and(|q| q.len() >= MAX_PER_AGENT)
            && let Some(oldest) = self.by_agent.get(agent).and_then(|q| q.front().cloned())
        {
            self.remove(&oldest);
        }
        if self.by_id.len() >= MAX_SESSIONS {
            return Err(Full);
        }
        self.by_agent.entry(agent.to_string()).or_default().push_back(sid.clone());
        self.idle.push_back((now, sid.clone()));
        self.by_id.insert(sid, Session { agent: agent.to_string(), last_seen: now, offers: Default::default(), events: Events::default() });
        Ok(())
    }

    /// A request on `sid` by `agent`: `false` when the session is unknown,
    /// expired or another agent's (a token cannot ride on another agent's
    /// session).
    pub fn touch(&mut self, sid: &str, agent: &str, now: Instant) -> bool {
        match self.by_id.get_mut(sid) {
            Some(s) if s.agent == agent && now.duration_since(s.last_seen) < IDLE => {
                s.last_seen = now;
                true
            }
            _ => false,
        }
    }

    /// Record what the client of a session just opened offers.
    pub fn set_offers(&mut self, sid: &str, offers: crate::upstream::ClientOffers) {
        if let Some(s) = self.by_id.get_mut(sid) {
            s.offers = offers;
        }
    }

    /// Add an event to `sid`'s stream: kept for resumption, and sent on the
    /// stream open now, if any (unless it is not keeping up: it misses it
    /// until it reconnects with its last event id).
    pub fn push_event(&mut self, sid: &str, event: serde_json::Value) {
        let Some(e) = self.by_id.get_mut(sid).map(|s| &mut s.events) else { return };
        e.next += 1;
        let size = event.to_string().len();
        while e.kept.len() == EVENTS_KEPT || (!e.kept.is_empty() && e.bytes + size > EVENT_BYTES_KEPT) {
            let (_, old) = e.kept.pop_front().expect("not empty");
            e.bytes -= old.to_string().len();
        }
        e.bytes += size;
        e.kept.push_back((e.next, event.clone()));
        if e.live.as_ref().is_some_and(|l| l.try_send((e.next, event)).is_err()) {
            e.live = None;
        }
    }

    /// Add an event to every session's stream; returns how many.
    pub fn broadcast(&mut self, event: &serde_json::Value) -> usize {
        let all: Vec<String> = self.by_id.keys().cloned().collect();
        all.iter().for_each(|sid| self.push_event(sid, event.clone()));
        all.len()
    }

    /// Open `sid`'s stream for `agent`: the kept events after `after` (a
    /// reconnecting client's `Last-Event-ID`; none for a new stream), and
    /// the events from now on. `None` if the session is not the agent's.
    pub fn open_stream(&mut self, sid: &str, agent: &str, after: Option<u64>) -> Option<(Vec<Event>, tokio::sync::mpsc::Receiver<Event>)> {
        let s = self.by_id.get_mut(sid).filter(|s| s.agent == agent)?;
        let (tx, rx) = tokio::sync::mpsc::channel(EVENTS_KEPT);
        s.events.live = Some(tx);
        let replay = after.map(|a| s.events.kept.iter().filter(|(n, _)| *n > a).cloned().collect()).unwrap_or_default();
        Some((replay, rx))
    }

    /// What the client of `sid` offers.
    pub fn offers(&self, sid: &str) -> crate::upstream::ClientOffers {
        self.by_id.get(sid).map(|s| s.offers).unwrap_or_default()
    }

    /// Close `sid` if `agent` opened it.
    pub fn close(&mut self, sid: &str, agent: &str) -> bool {
        if self.by_id.get(sid).is_none_or(|s| s.agent != agent) {
            return false;
        }
        self.remove(sid);
        true
    }

    /// Close every session `close` selects (a kill switch); returns how many.
    pub fn close_where(&mut self, close: impl Fn(&Session) -> bool) -> usize {
        let doomed: Vec<String> = self.by_id.iter().filter(|(_, s)| close(s)).map(|(id, _)| id.clone()).collect();
        doomed.iter().for_each(|id| self.remove(id));
        doomed.len()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn remove(&mut self, sid: &str) {
        let Some(s) = self.by_id.remove(sid) else { return };
        if let Some(q) = self.by_agent.get_mut(&s.agent) {
            q.retain(|id| id != sid);
            if q.is_empty() {
                self.by_agent.remove(&s.agent);
            }
        }
    }

    /// Close the sessions idle for [`IDLE`]; amortized O(1) per call.
    fn expire(&mut self, now: Instant) {
        while let Some((queued, _)) = self.idle.front()
            && now.duration_since(*queued) >= IDLE
        {
            let (_, sid) = self.idle.pop_front().expect("front exists");
            match self.by_id.get(&sid).map(|s| s.last_seen) {
                Some(seen) if now.duration_since(seen) >= IDLE => self.remove(&sid),
                Some(seen) => self.idle.push_back((seen, sid)),
                None => {}
            }
        }
    }
}

/// The requests in flight that a client can cancel, by its session and its
/// own request id: a `notifications/cancelled` reaches only a request of
/// the session it arrives on.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    by_request: parking_lot::Mutex<HashMap<(String, String), (u64, CancellationToken)>>,
    next: std::sync::atomic::AtomicU64,
}

/// The requests of upstreams relayed to clients and waiting for their
/// answers, by session and the id the gateway gave them: a client's
/// response reaches only a request relayed to its own session.
#[derive(Debug, Default)]
pub(crate) struct Awaiting {
    by_request: parking_lot::Mutex<HashMap<(String, String), tokio::sync::oneshot::Sender<serde_json::Value>>>,
    next: std::sync::atomic::AtomicU64,
}

impl Awaiting {
    /// Register a relayed request of `session`; the id to send it under.
    pub fn start(&self, session: &str, answer: tokio::sync::oneshot::Sender<serde_json::Value>) -> String {
        let id = format!("warden-{}", self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut map = self.by_request.lock();
        // Requests whose waiter gave up (its deadline passed) go on the way.
        map.retain(|_, tx| !tx.is_closed());
        map.insert((session.to_string(), id.clone()), answer);
        id
    }

    /// The waiter for the client's answer `id` in `session`, once.
    pub fn take(&self, session: &str, id: &str) -> Option<tokio::sync::oneshot::Sender<serde_json::Value>> {
        self.by_request.lock().remove(&(session.to_string(), id.to_string()))
    }
}

/// A request's place in [`Cancels`], given up when the request ends.
pub(crate) struct Cancellable<'a> {
    cancels: &'a Cancels,
    key: (String, String),
    seq: u64,
    pub(crate) token: CancellationToken,
}

impl Cancels {
    /// Register request `id` (its JSON text: `1` and `"1"` differ) of `session`.
    pub fn start(&self, session: &str, id: &serde_json::Value) -> Cancellable<'_> {
        let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = (session.to_string(), id.to_string());
        let token = CancellationToken::new();
        // A client reusing an id in flight can cancel only the newer request.
        self.by_request.lock().insert(key.clone(), (seq, token.clone()));
        Cancellable { cancels: self, key, seq, token }
    }

    /// Cancel request `id` of `session`; `false` when none is in flight.
    pub fn cancel(&self, session: &str, id: &serde_json::Value) -> bool {
        let token = self.by_request.lock().get(&(session.to_string(), id.to_string())).map(|(_, t)| t.clone());
        token.map(|t| t.cancel()).is_some()
    }
}

impl Drop for Cancellable<'_> {
    fn drop(&mut self) {
        let mut map = self.cancels.by_request.lock();
        if map.get(&self.key).is_some_and(|(seq, _)| *seq == self.seq) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_the_agent_that_opened_it() {
        let (mut s, t0) = (Sessions::default(), Instant::now());
        s.open("s1".into(), "a", t0).unwrap();
        assert!(s.touch("s1", "a", t0));
        assert!(!s.touch("s1", "b", t0), "another agent's token cannot ride on it");
        assert!(!s.close("s1", "b"));
        assert!(s.close("s1", "a"));
        assert!(!s.touch("s1", "a", t0));
    }

    #[test]
    fn idle_sessions_expire_and_used_ones_stay() {
        let (mut s, t0) = (Sessions::default(), Instant::now());
        s.open("idle".into(), "a", t0).unwrap();
        s.open("busy".into(), "a", t0).unwrap();
        let later = t0 + IDLE / 2;
        assert!(s.touch("busy", "a", later));
        s.open("new".into(), "b", t0 + IDLE).unwrap();
        assert!(!s.touch("idle", "a", t0 + IDLE), "expired");
        assert!(s.touch("busy", "a", t0 + IDLE), "used within the idle time");
        assert_eq!(s.len(), 2);
        let quiet = t0 + 2 * IDLE + Duration::from_secs(1);
        s.open("newer".into(), "b", quiet).unwrap();
        assert!(!s.touch("busy", "a", quiet), "idle since its last use");
        assert_eq!(s.len(), 1, "expired without a scan of the table");
    }

    #[test]
    fn one_agent_cannot_hold_more_than_its_share() {
        let (mut s, t0) = (Sessions::default(), Instant::now());
        for i in 0..MAX_PER_AGENT + 5 {
            s.open(format!("s{i}"), "greedy", t0).unwrap();
        }
        assert_eq!(s.len(), MAX_PER_AGENT);
        assert!(!s.touch("s0", "greedy", t0), "the oldest were closed");
        assert!(s.touch(&format!("s{}", MAX_PER_AGENT + 4), "greedy", t0));
        s.open("other".into(), "modest", t0).unwrap();
        assert!(s.touch("other", "modest", t0));
    }

    #[test]
    fn closing_by_a_kill_removes_every_covered_session() {
        let (mut s, t0) = (Sessions::default(), Instant::now());
        s.open("a1".into(), "a", t0).unwrap();
        s.open("a2".into(), "a", t0).unwrap();
        s.open("b1".into(), "b", t0).unwrap();
        assert_eq!(s.close_where(|x| x.agent == "a"), 2);
        assert_eq!(s.len(), 1);
        s.open("a3".into(), "a", t0).unwrap();
        assert!(s.touch("a3", "a", t0));
    }

    #[test]
    fn a_cancellation_reaches_only_its_own_sessions_request() {
        let c = Cancels::default();
        let a = c.start("s1", &serde_json::json!(1));
        let b = c.start("s2", &serde_json::json!(1));
        assert!(!c.cancel("s1", &serde_json::json!("1")), "the id's JSON text is the key");
        assert!(c.cancel("s1", &serde_json::json!(1)));
        assert!(a.token.is_cancelled() && !b.token.is_cancelled());
        drop(a);
        assert!(!c.cancel("s1", &serde_json::json!(1)), "an ended request is gone");
        let again = c.start("s2", &serde_json::json!(1));
        drop(b);
        assert!(c.cancel("s2", &serde_json::json!(1)), "the older request's end leaves the newer one registered");
        assert!(again.token.is_cancelled());
    }

    #[test]
    fn an_answer_reaches_only_a_request_relayed_to_its_own_session() {
        let a = Awaiting::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let id = a.start("s1", tx);
        assert!(a.take("s2", &id).is_none(), "another session cannot answer it");
        let waiter = a.take("s1", &id).expect("its own session can");
        waiter.send(serde_json::json!({ "result": {} })).unwrap();
        assert!(rx.try_recv().is_ok());
        assert!(a.take("s1", &id).is_none(), "answered once");
    }

    #[test]
    fn a_reconnecting_stream_gets_what_it_missed_and_no_more() {
        let (t0, mut s) = (Instant::now(), Sessions::default());
        s.open("s1".into(), "a", t0).unwrap();
        assert!(s.open_stream("s1", "b", None).is_none(), "another agent's session");
        let (replay, mut live) = s.open_stream("s1", "a", None).unwrap();
        assert!(replay.is_empty());
        s.push_event("s1", serde_json::json!(1));
        assert_eq!(live.try_recv().unwrap(), (1, serde_json::json!(1)));
        drop(live);
        s.push_event("s1", serde_json::json!(2));
        s.push_event("s1", serde_json::json!(3));
        let (replay, _live) = s.open_stream("s1", "a", Some(1)).unwrap();
        assert_eq!(replay, [(2, serde_json::json!(2)), (3, serde_json::json!(3))]);
        for n in 0..EVENTS_KEPT + 10 {
            s.push_event("s1", serde_json::json!(n));
        }
        let (replay, _live) = s.open_stream("s1", "a", Some(0)).unwrap();
        assert_eq!(replay.len(), EVENTS_KEPT, "only the last ones are kept");
    }
}
