//! Text that came from outside (an unverified claim, a caller's tool name,
//! a header) on its way into an audit record, an error message or a
//! terminal: control and bidirectional-formatting characters escaped, so it
//! cannot forge a line or reorder what an operator reads, and bounded, so a
//! stranger cannot grow the log with it.

/// `s` with every control, line-separator and bidi-formatting character
/// written as `\u{…}` (and `\` as `\\`), cut to at most `max` bytes at a
/// character boundary with a note of the original length.
pub fn untrusted_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 16);
    for c in s.chars() {
        if out.len() >= max {
            out.push_str(&format!("…({} bytes)", s.len()));
            return out;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_escapes_and_bidi_controls_are_written_out() {
        assert_eq!(untrusted_text("a\nb\r\u{1b}[31m\\", 100), "a\\u{a}b\\u{d}\\u{1b}[31m\\\\");
        assert_eq!(untrusted_text("x\u{202e}y\u{2028}", 100), "x\\u{202e}y\\u{2028}");
        assert_eq!(untrusted_text("spiffe://td/agent/ok", 100), "spiffe://td/agent/ok");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let s = "é".repeat(1_000);
        let t = untrusted_text(&s, 11);
        assert!(t.starts_with("éééééé") && t.ends_with("…(2000 bytes)"), "{t}");
        assert!(t.len() < 40);
    }
}
