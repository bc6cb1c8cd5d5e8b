//! What the tool prints: stdout that ends quietly when its reader goes away,
//! and events as JSON lines or text.
//!
//! Event lines are built by hand rather than through a `serde_json::Value`:
//! a payload that is JSON goes out as its own text (whitespace removed), so
//! numbers keep every digit they were written with (a `Value` would turn a
//! 30-digit integer into a float), and a dump of millions of events builds no
//! tree per event.

use std::io::{BufWriter, Stdout, Write};

use base64::Engine;
use chronolog::EventRef;

use crate::{CliResult, Failure};

/// Buffered stdout. A closed pipe (`chronolog dump ... | head`) ends the
/// command with success ([`Failure::Closed`]); Rust ignores SIGPIPE, so the
/// write returns `BrokenPipe` instead of killing the process.
pub struct Out {
    writer: BufWriter<Stdout>,
}

impl Out {
    /// Stdout, buffered.
    pub fn new() -> Out {
        Out { writer: BufWriter::with_capacity(64 * 1024, std::io::stdout()) }
    }

    /// Writes `text` and a newline (buffered: call [`Out::flush`] when a
    /// reader must see it now).
    pub fn line(&mut self, text: &str) -> CliResult {
        let result = self.writer.write_all(text.as_bytes()).and_then(|()| self.writer.write_all(b"\n"));
        result.map_err(stdout_failure)
    }

    /// Hands everything written so far to the reader.
    pub fn flush(&mut self) -> CliResult {
        self.writer.flush().map_err(stdout_failure)
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        // Errors were reported by the explicit flushes; a reader gone at the
        // very end has nothing left to lose.
        let _ = self.writer.flush();
    }
}

fn stdout_failure(error: std::io::Error) -> Failure {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::Closed
    } else {
        Failure::io("writing to stdout", &error)
    }
}

/// Writes one line to stderr.
pub fn eprintln(text: &str) -> std::io::Result<()> {
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(text.as_bytes())?;
    stderr.write_all(b"\n")
}

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line: position, timestamp (ns), stream, version,
    /// type, data or data_b64, metadata or metadata_b64 (omitted when empty).
    Json,
    /// One human-readable line per event.
    Text,
}

/// Appends `event`, rendered in `format`, to `line` (no newline).
pub fn render(event: &EventRef<'_>, format: Format, line: &mut String) {
    match format {
        Format::Json => render_json(event, line),
        Format::Text => render_text(event, line),
    }
}

/// `{"position":..,"timestamp":..,"stream":..,"version":..,"type":..,"data":..,"metadata":..}`.
///
/// A payload that is JSON is `"data": <the JSON>`; any other payload (empty
/// included) is `"data_b64": "<standard base64>"`. Metadata the same way as
/// `metadata` / `metadata_b64`, and omitted when empty.
pub fn render_json(event: &EventRef<'_>, line: &mut String) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(line, "{{\"position\":{},\"timestamp\":{},\"stream\":", event.position, event.timestamp_ns);
    push_json_string(line, event.stream);
    let _ = write!(line, ",\"version\":{},\"type\":", event.stream_version);
    push_json_string(line, event.event_type);
    push_bytes_field(line, "data", event.payload, true, true);
    // `"metadata": null` means "none" to `chronolog append`: metadata bytes
    // that are the text `null` go as base64, so a copy keeps them.
    push_bytes_field(line, "metadata", event.metadata, false, false);
    line.push('}');
}

fn push_bytes_field(line: &mut String, name: &str, bytes: &[u8], always: bool, null_is_json: bool) {
    if bytes.is_empty() && !always {
        return;
    }
    match exact_json(bytes).filter(|json| null_is_json || *json != "null") {
        Some(json) => {
            line.push_str(",\"");
            line.push_str(name);
            line.push_str("\":");
            line.push_str(json);
        }
        None => {
            line.push_str(",\"");
            line.push_str(name);
            line.push_str("_b64\":\"");
            base64::engine::general_purpose::STANDARD.encode_string(bytes, line);
            line.push('"');
        }
    }
}

/// `position  time  stream vVERSION  type  data  [metadata]`, where data is
/// compact JSON, `text:"..."` for other UTF-8, or `b64:...`.
pub fn render_text(event: &EventRef<'_>, line: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(line, "{:>8}  {}  ", event.position, crate::time::format_rfc3339(event.timestamp_ns));
    push_name(line, event.stream);
    let _ = write!(line, " v{}  ", event.stream_version);
    push_name(line, event.event_type);
    line.push_str("  ");
    push_text_bytes(line, event.payload);
    if !event.metadata.is_empty() {
        line.push_str("  meta=");
        push_text_bytes(line, event.metadata);
    }
}

/// A stream name or event type as it is, or quoted and escaped as a JSON
/// string when it holds whitespace, control characters or quotes: a name may
/// not forge a line of output or send escape sequences to a terminal.
fn push_name(line: &mut String, name: &str) {
    if name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"') {
        push_json_string(line, name);
    } else {
        line.push_str(name);
    }
}

fn push_text_bytes(line: &mut String, bytes: &[u8]) {
    if let Some(json) = json_text(bytes) {
        line.push_str(&json);
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        line.push_str("text:");
        push_json_string(line, text);
    } else {
        line.push_str("b64:");
        base64::engine::general_purpose::STANDARD.encode_string(bytes, line);
    }
}

/// The bytes as they are, when they are a compact JSON document that any
/// JSON parser reads back to the same bytes: `chronolog append` stores `data`
/// as written, so a dump fed back to it copies the payload exactly. Anything
/// else (whitespace between tokens, a lone surrogate escape, a number too
/// large for a double, not UTF-8) goes as base64.
pub fn exact_json(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    serde_json::from_str::<serde_json::Value>(text).ok()?;
    (minify(text) == text).then_some(text)
}

/// The bytes as one line of JSON text when they are a JSON document, `None`
/// otherwise (not UTF-8, not JSON, or empty); for reading, not for copying.
pub fn json_text(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    Some(minify(text))
}

/// Valid JSON text without the whitespace between tokens. Whitespace inside
/// strings is kept; a JSON string cannot hold a raw newline, so the result
/// is one line.
pub fn minify(json: &str) -> String {
    let mut compact = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for character in json.chars() {
        if in_string {
            compact.push(character);
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
        } else if !matches!(character, ' ' | '\t' | '\n' | '\r') {
            in_string = character == '"';
            compact.push(character);
        }
    }
    compact
}

/// Appends `text` as a JSON string literal.
pub fn push_json_string(line: &mut String, text: &str) {
    use std::fmt::Write as _;
    line.push('"');
    for character in text.chars() {
        match character {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut line = String::with_capacity(text.len() + 2);
    push_json_string(&mut line, text);
    line
}

/// A number with thousands separators, for people.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// `1 segment`, `2 segments`.
pub fn plural(count: u64, noun: &str) -> String {
    format!("{} {noun}{}", thousands(count), if count == 1 { "" } else { "s" })
}

/// A byte count for people (KiB, MiB, GiB).
pub fn bytes(value: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if value < 1024 {
        return format!("{value} B");
    }
    let mut scaled = value as f64 / 1024.0;
    let mut unit = 0;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    format!("{scaled:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_strings_and_drops_whitespace_between_tokens() {
        assert_eq!(minify(" { \"a b\" : [ 1 , \"x\\\" y\" ] ,\n\"c\":\t{} } "), r#"{"a b":[1,"x\" y"],"c":{}}"#);
        assert_eq!(minify(r#""\\" "#), r#""\\""#);
    }

    #[test]
    fn only_json_documents_are_json() {
        assert_eq!(json_text(b"{\"a\": 1}\n").as_deref(), Some("{\"a\":1}"));
        assert_eq!(json_text(b"12345678901234567890123456789").as_deref(), Some("12345678901234567890123456789"));
        for bytes in [&b""[..], b"apple", b"{", b"1 2", b"\xff"] {
            assert_eq!(json_text(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn only_compact_json_that_parses_back_exactly_is_copied_as_json() {
        for exact in [&b"{\"a\":1}"[..], b"[1,\"x y\"]", b"null", b"12345678901234567890123456789", b"\"\\u00e9\""] {
            assert!(exact_json(exact).is_some(), "{:?}", String::from_utf8_lossy(exact));
        }
        for other in [&b"{\"a\": 1}"[..], b"1\n", b" 1", b"\"\\ud800\"", b"1e999", b"", b"apple", b"\xff"] {
            assert_eq!(exact_json(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let text = "quote \" backslash \\ newline \n nul \u{0} bell \u{7} é 🦀";
        let parsed: String = serde_json::from_str(&json_string(text)).unwrap();
        assert_eq!(parsed, text);
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
    }
}
