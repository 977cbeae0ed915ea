//! The `data` of the events in a `text/event-stream` (an upstream MCP
//! server's answer to the gateway, the gateway's to `warden connect`),
//! decoded incrementally as chunks arrive. Pure: the caller feeds
//! bytes and gets whole events back; what an event means is its business.
//!
//! Of the SSE format MCP needs `data:` lines and the last event id: an event
//! is the `data` lines up to a blank line, joined by `\n` (one leading space
//! of each value dropped); the newest `id:` is kept for resuming the stream
//! (`Last-Event-ID`); other fields (`event:`, `retry:`) and comments (`:`)
//! are skipped, as are events without data. Lines end in LF, CRLF or a CR
//! before the LF. Invalid UTF-8 is replaced (U+FFFD), so it fails the
//! caller's JSON parse instead of the stream.

/// The buffered line and event grew past the bound: the stream is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

#[derive(Debug)]
pub struct Decoder {
    max_bytes: usize,
    /// Bytes of the line not yet ended.
    buf: Vec<u8>,
    /// Where the search for the next newline resumes, so a long line
    /// arriving in many chunks is scanned once.
    scanned: usize,
    /// The `data` of the event not yet ended.
    data: String,
    /// The newest event id the stream gave.
    last_id: Option<String>,
}

impl Decoder {
    /// A decoder refusing more than `max_bytes` of unended line and event at once.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes, buf: Vec::new(), scanned: 0, data: String::new(), last_id: None }
    }

    /// The newest event id seen (to resume with as `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feed one chunk; returns the data of every event it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() + self.data.len() > self.max_bytes {
            return Err(TooLarge);
        }
        let mut events = Vec::new();
        while let Some(rel) = self.buf[self.scanned..].iter().position(|c| *c == b'\n') {
            let pos = self.scanned + rel;
            self.scanned = 0;
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(std::mem::take(&mut self.data));
                }
            } else if let Some(id) = line.strip_prefix("id:") {
                // The spec ignores an id with a NUL in it.
                let id = id.strip_prefix(' ').unwrap_or(id);
                if !id.contains('\0') {
                    self.last_id = Some(id.to_string());
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        self.scanned = self.buf.len();
        Ok(events)
    }
}

/// The invariants the `sse` fuzz target and the unit tests check.
pub mod fuzz {
    use super::*;

    /// Decode `data` (after its first byte) whole and in the chunks its first
    /// byte chooses: the same events either way, none empty and none with
    /// framing left in it (a leading LF, a CRLF). Panics on a violation.
    pub fn exercise(data: &[u8]) {
        let Some((&cuts, stream)) = data.split_first() else { return };
        let whole = Decoder::new(usize::MAX).push(stream).expect("no bound");
        let mut chunked = Decoder::new(usize::MAX);
        let mut events = Vec::new();
        // Chunk sizes from 1 to 16, cycling through the bits of `cuts`.
        let mut rest = stream;
        let mut i = 0u32;
        while !rest.is_empty() {
            let n = (usize::from(cuts.rotate_left(i) & 0x0f) + 1).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            events.extend(chunked.push(chunk).expect("no bound"));
            rest = tail;
            i += 1;
        }
        assert_eq!(events, whole, "chunking changed the events");
        for e in &whole {
            assert!(!e.is_empty() && !e.starts_with('\n') && !e.contains("\r\n"), "{e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&str]) -> Vec<String> {
        let mut d = Decoder::new(1 << 20);
        chunks.iter().flat_map(|c| d.push(c.as_bytes()).unwrap()).collect()
    }

    #[test]
    fn an_event_is_its_data_lines_up_to_a_blank_line() {
        assert_eq!(decode(&["data: {\"a\":1}\n\n"]), ["{\"a\":1}"]);
        assert_eq!(decode(&["data: one\ndata:two\ndata:  three\n\n"]), ["one\ntwo\n three"]);
        assert_eq!(decode(&["data: x\n"]), Vec::<String>::new(), "not ended");
    }

    #[test]
    fn other_fields_comments_and_empty_events_are_skipped() {
        assert_eq!(decode(&[": keep-alive\n\nevent: message\nid: 4\nretry: 10\ndata: x\n\n\n\nevent: y\n\n"]), ["x"]);
    }

    #[test]
    fn the_newest_event_id_is_kept_for_resuming() {
        let mut d = Decoder::new(1 << 20);
        assert_eq!(d.last_event_id(), None);
        d.push(b"id: s1_0\ndata: a\n\nid: s1_1\n\n").unwrap();
        assert_eq!(d.last_event_id(), Some("s1_1"), "an id without data counts too");
        d.push(b"id: bad\0id\n\n").unwrap();
        assert_eq!(d.last_event_id(), Some("s1_1"), "an id with a NUL is ignored");
    }

    #[test]
    fn crlf_lines_and_events_split_across_chunks() {
        assert_eq!(decode(&["da", "ta: a\r", "\n\r\ndata: b\r\n", "\r", "\n"]), ["a", "b"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut d = Decoder::new(64);
        assert_eq!(d.push(b"data: \xff\n\n").unwrap(), ["\u{fffd}"]);
    }

    #[test]
    fn an_unended_line_or_event_over_the_bound_is_refused() {
        let mut d = Decoder::new(20);
        assert_eq!(d.push(b"data: 0123456789\n"), Ok(vec![]));
        // The event's data so far (10 bytes) counts with the line being read.
        assert_eq!(d.push(b"data: 0123"), Ok(vec![]), "at the bound");
        assert_eq!(d.push(b"4"), Err(TooLarge));
        assert_eq!(Decoder::new(20).push(b"data: 0123456789abcdef"), Err(TooLarge));
    }

    #[test]
    fn chunking_never_changes_the_events() {
        for seed in [b"\x00data: a\r\n\r\ndata:b\n: c\ndata: d\n\n".as_slice(), b"\xa5data:\xff\n\ndata: x\ndata:\n\n", b"\x3cdata: a\n\n\n"] {
            fuzz::exercise(seed);
        }
    }
}
