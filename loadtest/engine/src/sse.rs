//! Counting the events of a `text/event-stream` body as it arrives, chunk
//! by chunk, so the engine can time the first event (a streamed model's
//! first token) and the pace of the rest.
//!
//! An event is dispatched by an empty line after at least one field line
//! (the HTML living standard's event-stream rules). Comment lines (`:…`) and
//! the OpenAI-style end marker `data: [DONE]` carry no token: an event made
//! only of those is not counted. Line ends may be `\n`, `\r\n` or `\r`, and
//! may be split across chunks.

/// Longest line prefix kept to recognise `data: [DONE]`.
const KEEP: usize = 16;

/// Incremental event counter; feed it the body's chunks in order.
#[derive(Debug, Clone, Default)]
pub struct EventCounter {
    /// Complete events with content seen so far.
    events: u64,
    /// The current line's first bytes (up to [`KEEP`]) and its full length.
    line: Vec<u8>,
    line_len: usize,
    /// The event being read has a field line that is neither a comment nor `[DONE]`.
    has_content: bool,
    /// The last byte was `\r` (a following `\n` belongs to the same line end).
    after_cr: bool,
}

impl EventCounter {
    pub fn new() -> EventCounter {
        EventCounter::default()
    }

    /// Events counted so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Reads `chunk`; returns how many events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        let before = self.events;
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line();
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() < KEEP {
                        self.line.push(b);
                    }
                    self.line_len += 1;
                }
            }
        }
        self.events - before
    }

    fn end_line(&mut self) {
        if self.line_len == 0 {
            if self.has_content {
                self.events += 1;
            }
            self.has_content = false;
        } else if !self.line.starts_with(b":") && !is_done(&self.line, self.line_len) {
            self.has_content = true;
        }
        self.line.clear();
        self.line_len = 0;
    }
}

/// `data: [DONE]` (or `data:[DONE]`), the end marker of a chat-completions stream.
fn is_done(prefix: &[u8], len: usize) -> bool {
    let whole = &prefix[..len.min(prefix.len())];
    len == whole.len() && matches!(whole, b"data: [DONE]" | b"data:[DONE]")
}

/// Whether a `content-type` value is an event stream.
pub fn is_event_stream(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// The pace of one streamed answer: events per second between its first
/// and its last event (`None` with fewer than two events or no time between).
pub fn events_per_second(events: u64, first_to_last: std::time::Duration) -> Option<f64> {
    let secs = first_to_last.as_secs_f64();
    (events >= 2 && secs > 0.0).then(|| (events - 1) as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_events_across_chunk_boundaries() {
        let stream = "data: {\"a\":1}\n\n: keep-alive\n\nevent: x\r\ndata: 2\r\n\r\ndata: 3\r\rdata: [DONE]\n\n";
        let mut whole = EventCounter::new();
        assert_eq!(whole.feed(stream.as_bytes()), 3);
        // Any split gives the same count, a byte at a time too.
        for split in 0..stream.len() {
            let mut c = EventCounter::new();
            let (a, b) = stream.as_bytes().split_at(split);
            c.feed(a);
            c.feed(b);
            assert_eq!(c.events(), 3, "split at {split}");
        }
        let mut bytewise = EventCounter::new();
        let per_byte: u64 = stream.bytes().map(|b| bytewise.feed(&[b])).sum();
        assert_eq!(per_byte, 3);
    }

    #[test]
    fn an_unfinished_event_is_not_counted() {
        let mut c = EventCounter::new();
        assert_eq!(c.feed(b"data: 1\n"), 0);
        assert_eq!(c.feed(b"data: 2"), 0);
        assert_eq!(c.feed(b"\n\n"), 1);
        // Blank lines alone, comments alone and the end marker alone: none.
        assert_eq!(c.feed(b"\n\n\n:c\n\ndata: [DONE]\n\n"), 0);
        // A long line is no end marker even if it starts like one.
        assert_eq!(c.feed(b"data: [DONE] and more text\n\n"), 1);
    }

    #[test]
    fn content_types_and_pace() {
        assert!(is_event_stream(Some("text/event-stream")));
        assert!(is_event_stream(Some("Text/Event-Stream; charset=utf-8")));
        assert!(!is_event_stream(Some("application/json")));
        assert!(!is_event_stream(None));
        assert_eq!(events_per_second(51, Duration::from_secs(1)), Some(50.0));
        assert_eq!(events_per_second(1, Duration::from_secs(1)), None);
        assert_eq!(events_per_second(5, Duration::ZERO), None);
    }
}
