//! Shaping command output for the model: terminal control sequences removed, carriage-return
//! progress collapsed to its last state, and response sizes computed the way Lambda counts them.

/// Removes ANSI escape sequences and collapses carriage-return rewrites, so `\r33%\r66%\r99%`
/// becomes `99%` and `\x1b[31mred\x1b[0m` becomes `red`. A `\r\n` line ending counts as `\n`.
pub fn clean_for_display(text: &str) -> String {
    let stripped = strip_escape_sequences(text);
    let mut cleaned = String::with_capacity(stripped.len());
    for (index, line) in stripped.split('\n').enumerate() {
        if index > 0 {
            cleaned.push('\n');
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        // The terminal shows what was written after the last carriage return, padded by any
        // longer earlier text. Keeping only the last segment matches progress bars, which
        // rewrite the whole line.
        let visible = line
            .rsplit('\r')
            .find(|segment| !segment.is_empty())
            .unwrap_or("");
        cleaned.push_str(visible);
    }
    cleaned
}

/// Removes CSI (`ESC [ … final`), OSC (`ESC ] … BEL` or `ESC \`) and two-byte escape sequences.
fn strip_escape_sequences(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            output.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates run until a final byte in 0x40..=0x7e.
                for next in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&next) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(next) = chars.next() {
                    if next == '\u{7}' {
                        break;
                    }
                    if next == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    output
}

/// Returns how many bytes `c` takes in a Lambda response payload: once JSON-escaped inside our
/// response body, and again when that body is embedded as a string in the API Gateway response
/// that Lambda counts against its 6 MB limit.
pub fn payload_cost(c: char) -> usize {
    match c {
        // `"` -> `\"` -> `\\\"`; `\` -> `\\` -> `\\\\`
        '"' | '\\' => 4,
        // `\n` and friends: two characters, the backslash doubled again.
        '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 3,
        // `\u0001` -> `\\u0001`
        c if (c as u32) < 0x20 => 7,
        c => c.len_utf8(),
    }
}

/// Returns the payload cost of `text` (see [`payload_cost`]).
pub fn text_payload_cost(text: &str) -> usize {
    text.chars().map(payload_cost).sum()
}

/// Returns the length in bytes of the longest prefix of `text` whose payload cost fits in
/// `budget`; the prefix always ends on a character boundary.
pub fn prefix_within_budget(text: &str, budget: usize) -> usize {
    let mut spent = 0;
    for (index, c) in text.char_indices() {
        spent += payload_cost(c);
        if spent > budget {
            return index;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_collapses_to_last_state() {
        let raw = "\r33%\r66%\r99%\u{1b}[31mred\u{1b}[0m\n";
        assert_eq!(clean_for_display(raw), "99%red\n");
    }

    #[test]
    fn crlf_line_endings_survive() {
        assert_eq!(clean_for_display("a\r\nb\r\n"), "a\nb\n");
    }

    #[test]
    fn osc_and_csi_sequences_removed() {
        let raw = "\u{1b}]0;title\u{7}ok \u{1b}[1;32mgreen\u{1b}[0m \u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\";
        assert_eq!(clean_for_display(raw), "ok green link");
    }

    #[test]
    fn payload_cost_matches_double_encoding() {
        for text in [
            "plain",
            "quote\" back\\slash",
            "line\nbreak\ttab",
            "\u{1}\u{2}nul\0",
            "ünï кот \u{2028}",
        ] {
            let body = serde_json::to_string(text).expect("body");
            let envelope = serde_json::to_string(&body).expect("envelope");
            // Both encodings add two quote characters each.
            assert_eq!(text_payload_cost(text), envelope.len() - 4 - 2, "{text:?}");
        }
    }

    #[test]
    fn prefix_within_budget_stops_on_boundary() {
        assert_eq!(prefix_within_budget("abc", 10), 3);
        assert_eq!(prefix_within_budget("\u{1}\u{1}", 10), 1);
        assert_eq!(prefix_within_budget("aé", 2), 1);
    }
}
