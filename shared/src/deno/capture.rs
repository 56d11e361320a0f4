//! Bounded capture of process output: the first and last bytes of a stream, a total byte count, and
//! lossy UTF-8 rendering that flags replaced bytes.

use std::borrow::Cow;
use std::collections::VecDeque;

/// Output of one stream kept within a fixed memory bound while it arrives.
///
/// The first `head_limit` bytes and the last `tail_limit` bytes are kept; bytes between them are
/// only counted. Memory use never exceeds `head_limit + tail_limit` bytes.
#[derive(Debug, Clone)]
pub struct OutputCapture {
    head_limit: usize,
    tail_limit: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total_bytes: u64,
}

/// Text rendered from an [`OutputCapture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedText {
    /// The kept bytes as UTF-8, with a marker line where bytes were left out.
    pub text: String,
    /// Whether bytes were left out between the head and the tail.
    pub truncated: bool,
    /// Bytes of the stream in total, kept or not.
    pub total_bytes: u64,
    /// Bytes left out of `text`, including partial characters at the cut.
    pub omitted_bytes: u64,
    /// Whether invalid UTF-8 was replaced with U+FFFD.
    pub invalid_utf8: bool,
}

impl OutputCapture {
    /// Creates a capture keeping the first `head_limit` and last `tail_limit` bytes.
    pub fn new(head_limit: usize, tail_limit: usize) -> Self {
        Self {
            head_limit,
            tail_limit,
            head: Vec::new(),
            tail: VecDeque::new(),
            total_bytes: 0,
        }
    }

    /// Adds one chunk of output.
    pub fn push(&mut self, chunk: &[u8]) {
        self.total_bytes += chunk.len() as u64;

        let head_room = self.head_limit - self.head.len();
        let (to_head, rest) = chunk.split_at(head_room.min(chunk.len()));
        self.head.extend_from_slice(to_head);
        if self.tail_limit == 0 {
            return;
        }

        // Only the last `tail_limit` bytes of `rest` can survive, so skip the others outright.
        let rest = &rest[rest.len().saturating_sub(self.tail_limit)..];
        let overflow = (self.tail.len() + rest.len()).saturating_sub(self.tail_limit);
        self.tail.drain(..overflow);
        self.tail.extend(rest);
    }

    /// Returns the bytes of the stream seen so far.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Returns whether bytes were left out between the head and the tail.
    pub fn is_truncated(&self) -> bool {
        self.total_bytes > (self.head.len() + self.tail.len()) as u64
    }

    /// Returns the kept bytes, head then tail, without any marker.
    pub fn kept_bytes(&self) -> Vec<u8> {
        let mut bytes = self.head.clone();
        bytes.extend(self.tail.iter());
        bytes
    }

    /// Renders the kept bytes as text.
    ///
    /// Invalid UTF-8 becomes U+FFFD and sets `invalid_utf8`. When the middle was left out, a
    /// character split by either cut is dropped rather than reported as invalid, and a line
    /// `[... N bytes omitted ...]` marks the gap.
    pub fn render(&self) -> CapturedText {
        if !self.is_truncated() {
            let bytes = self.kept_bytes();
            let (text, invalid_utf8) = decode_lossy(&bytes);
            return CapturedText {
                text,
                truncated: false,
                total_bytes: self.total_bytes,
                omitted_bytes: 0,
                invalid_utf8,
            };
        }

        let head = &self.head[..complete_prefix_len(&self.head)];
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let tail = &tail[continuation_prefix_len(&tail)..];
        let omitted_bytes = self.total_bytes - (head.len() + tail.len()) as u64;

        let (head_text, head_invalid) = decode_lossy(head);
        let (tail_text, tail_invalid) = decode_lossy(tail);
        let mut text = head_text;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("[... {omitted_bytes} bytes omitted ...]\n"));
        text.push_str(&tail_text);

        CapturedText {
            text,
            truncated: true,
            total_bytes: self.total_bytes,
            omitted_bytes,
            invalid_utf8: head_invalid || tail_invalid,
        }
    }
}

fn decode_lossy(bytes: &[u8]) -> (String, bool) {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(text) => (text.to_owned(), false),
        Cow::Owned(text) => (text, true),
    }
}

/// Returns the length of `bytes` without a multi-byte character that the end cuts short.
fn complete_prefix_len(bytes: &[u8]) -> usize {
    // A UTF-8 character is at most 4 bytes, so its lead byte is among the last 4.
    for back in 1..=bytes.len().min(4) {
        let index = bytes.len() - back;
        let byte = bytes[index];
        if is_continuation(byte) {
            continue;
        }
        let expected = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if back < expected { index } else { bytes.len() };
    }
    bytes.len()
}

/// Returns how many continuation bytes (at most 3) start `bytes`: the rest of a character whose
/// lead byte was cut off.
fn continuation_prefix_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(3)
        .take_while(|byte| is_continuation(**byte))
        .count()
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_kept_whole() {
        let mut capture = OutputCapture::new(8, 8);
        capture.push(b"hello ");
        capture.push(b"world");

        let rendered = capture.render();
        assert_eq!(rendered.text, "hello world");
        assert!(!rendered.truncated);
        assert_eq!(rendered.total_bytes, 11);
        assert_eq!(rendered.omitted_bytes, 0);
        assert!(!rendered.invalid_utf8);
    }

    #[test]
    fn long_output_keeps_head_and_tail() {
        let mut capture = OutputCapture::new(4, 3);
        for chunk in [&b"abcdef"[..], b"ghij", b"klmnopq", b"r"] {
            capture.push(chunk);
        }

        assert_eq!(capture.total_bytes(), 18);
        assert!(capture.is_truncated());
        assert_eq!(capture.kept_bytes(), b"abcdpqr");
        let rendered = capture.render();
        assert_eq!(rendered.text, "abcd\n[... 11 bytes omitted ...]\npqr");
        assert_eq!(rendered.omitted_bytes, 11);
    }

    #[test]
    fn split_characters_at_cuts_are_not_invalid() {
        // "é" is C3 A9 and "€" is E2 82 AC: the head cut splits é, the tail cut splits €.
        let mut capture = OutputCapture::new(2, 2);
        capture.push("aé".as_bytes());
        capture.push(b"xxxxxxxx");
        capture.push("€".as_bytes());

        let rendered = capture.render();
        assert_eq!(rendered.text, "a\n[... 13 bytes omitted ...]\n");
        assert!(!rendered.invalid_utf8);
        assert!(rendered.truncated);
    }

    #[test]
    fn invalid_bytes_are_replaced_and_flagged() {
        let mut capture = OutputCapture::new(16, 16);
        capture.push(b"ok\xff\xfe done");

        let rendered = capture.render();
        assert_eq!(rendered.text, "ok\u{FFFD}\u{FFFD} done");
        assert!(rendered.invalid_utf8);
    }

    #[test]
    fn literal_replacement_character_is_not_flagged() {
        let mut capture = OutputCapture::new(16, 0);
        capture.push("a\u{FFFD}b".as_bytes());

        let rendered = capture.render();
        assert_eq!(rendered.text, "a\u{FFFD}b");
        assert!(!rendered.invalid_utf8);
    }

    #[test]
    fn multibyte_character_across_chunks_survives() {
        let mut capture = OutputCapture::new(64, 64);
        let bytes = "grüße".as_bytes();
        capture.push(&bytes[..3]);
        capture.push(&bytes[3..]);

        let rendered = capture.render();
        assert_eq!(rendered.text, "grüße");
        assert!(!rendered.invalid_utf8);
    }

    #[test]
    fn zero_limits_only_count() {
        let mut capture = OutputCapture::new(0, 0);
        capture.push(&[b'x'; 1000]);

        let rendered = capture.render();
        assert_eq!(rendered.total_bytes, 1000);
        assert_eq!(rendered.omitted_bytes, 1000);
        assert_eq!(rendered.text, "[... 1000 bytes omitted ...]\n");
    }
}
