//! Sliding-window counter: two fixed buckets weighted by how far the current
//! one has run (constant memory per key; the estimate never undercounts the
//! current bucket and is within one bucket's share of the exact sliding sum).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Index of the current bucket (`now_ms / window_ms`).
    bucket: i64,
    cur: f64,
    prev: f64,
}

impl Window {
    fn roll(&mut self, now_ms: i64, window_ms: i64) {
        let b = now_ms.div_euclid(window_ms);
        if b == self.bucket {
            return;
        }
        self.prev = if b == self.bucket + 1 { self.cur } else { 0.0 };
        self.cur = 0.0;
        self.bucket = b;
    }

    /// Estimated total over the last `window_ms`.
    pub fn value(&self, now_ms: i64, window_ms: i64) -> f64 {
        let mut w = *self;
        w.roll(now_ms, window_ms);
        let elapsed = now_ms.rem_euclid(window_ms) as f64 / window_ms as f64;
        w.prev * (1.0 - elapsed) + w.cur
    }

    pub fn add(&mut self, now_ms: i64, window_ms: i64, x: f64) {
        self.roll(now_ms, window_ms);
        self.cur += x;
    }

    /// Nothing counted within the last two windows.
    pub fn is_idle(&self, now_ms: i64, window_ms: i64) -> bool {
        now_ms.div_euclid(window_ms) > self.bucket + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_decay_across_buckets() {
        let mut w = Window::default();
        w.add(60_000, 60_000, 10.0);
        assert_eq!(w.value(60_000, 60_000), 10.0);
        // Half-way through the next bucket half of the previous one counts.
        assert_eq!(w.value(150_000, 60_000), 5.0);
        w.add(150_000, 60_000, 2.0);
        assert_eq!(w.value(150_000, 60_000), 7.0);
        assert_eq!(w.value(300_000, 60_000), 0.0);
        assert!(w.is_idle(300_000, 60_000));
    }
}
