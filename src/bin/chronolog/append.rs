//! `chronolog append DIR`: events from JSON lines on stdin, one
//! acknowledgement line per event on stdout.
//!
//! Each line is appended on its own (its expected version is checked against
//! the log as every earlier line left it), and acknowledged once appended
//! and, with `--durability sync`, durable. Syncs are shared: lines that have
//! already arrived are appended one after the other and made durable by one
//! fdatasync before their acknowledgements are printed, so a bulk import does
//! not pay one sync per line, while a line typed alone is acknowledged at once.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use base64::Engine;
use chronolog::{Durability, Error, ExpectedVersion, Log, LogOptions, NewEvent};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::output::{self, push_json_string, Out};
use crate::{exit_code_of, CliResult, Failure, EXIT_DATA, EXIT_USAGE};

const AFTER_LONG_HELP: &str = "\
Input: one JSON object per line (blank lines are skipped):

  {\"stream\": \"account-7\", \"type\": \"Deposited\", \"data\": {\"cents\": 250}}
  {\"stream\": \"account-7\", \"type\": \"Withdrawn\", \"data\": {\"cents\": 100},
   \"metadata\": {\"user\": \"ada\"}, \"expected_version\": 0, \"timestamp\": \"2025-03-01T12:00:00Z\"}

  stream            required, 1 to 1024 bytes of UTF-8
  type              required, 1 to 255 bytes of UTF-8
  data              required: any JSON value, stored as its compact text (numbers keep
                    every digit); or data_b64, standard base64 of raw bytes
  metadata          optional JSON value, stored the same way (absent or null: none);
                    or metadata_b64
  expected_version  optional: \"any\" (default), \"no_stream\", \"exists\", or the stream's
                    current version (an integer)
  timestamp         optional: RFC 3339 or integer nanoseconds since the Unix epoch;
                    default: the log's clock
  position, version ignored, so that `chronolog dump` output can be appended elsewhere

Timestamps never decrease along the log. An explicit timestamp is kept exactly as
given when it is not older than the log's last one; an older one is REJECTED
(error \"timestamp_out_of_order\"), never clamped, so imported history is never
silently changed. The log's clock is raised to the last timestamp instead.

Output: one line per appended event, printed once it is appended (and, with
--durability sync, on disk):

  {\"position\":41,\"stream\":\"account-7\",\"version\":3,\"timestamp\":1740830400000000000}

A malformed line, a wrong expected version, an out-of-order timestamp or an invalid
event prints one JSON line on stderr and stops with exit code 1; every line before it
stays appended and acknowledged, nothing after it is read:

  {\"error\":\"wrong_expected_version\",\"line\":3,\"message\":\"...\",\"stream\":\"account-7\",
   \"expected\":5,\"actual\":3}

Error kinds: malformed, wrong_expected_version, timestamp_out_of_order, invalid_event,
corrupted (exit 1); locked (another process writes the log), io (exit 2). An error
that is not about one line (opening the log, a failed sync) has no \"line\".";

/// Arguments of `append`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    /// The log directory (created if it does not exist).
    pub directory: PathBuf,
    /// When an event is acknowledged: `sync` (the default, the safe choice)
    /// once it is on disk (fdatasync, shared by the lines that arrived
    /// together); `none` once the OS has it (a crash of this process loses
    /// nothing, a power loss may lose the latest events).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// Acknowledge once the OS has the event.
    None,
    /// Acknowledge once the event is on disk.
    Sync,
}

/// Acknowledgements waiting for a sync, at most.
const PENDING_MAX: usize = 4096;

/// Runs `append`.
pub fn run(args: &Args) -> CliResult {
    // The log writes without syncing; `--durability sync` syncs before each
    // group of acknowledgements instead, which shares one fdatasync among
    // every line already read.
    let options = LogOptions::default().durability(Durability::None);
    let log = match Log::open(&args.directory, options) {
        Ok(log) => log,
        Err(error) => {
            let kind = match &error {
                Error::Locked { .. } => "locked",
                Error::Corrupted { .. } => "corrupted",
                _ => "io",
            };
            let code = exit_code_of(&error);
            return Err(report(None, kind, &Failure::from(error).message(), Vec::new(), code));
        }
    };
    crate::warn_about_recovery(&log, true);
    let mut acks =
        Acks { log: &log, sync: args.durability == DurabilityArg::Sync, pending: Vec::new(), out: Some(Out::new()) };
    let mut reader = BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                acks.flush()?;
                return Err(report(Some(number + 1), "io", &format!("reading stdin: {error}"), Vec::new(), EXIT_USAGE));
            }
        }
        number += 1;
        let text = match std::str::from_utf8(&line) {
            Ok(text) => text.trim_end_matches(['\n', '\r']),
            Err(error) => {
                acks.flush()?;
                let message = format!("the line is not UTF-8: {error}");
                return Err(report(Some(number), "malformed", &message, Vec::new(), EXIT_DATA));
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let input = match parse_line(text) {
            Ok(input) => input,
            Err(message) => {
                acks.flush()?;
                return Err(report(Some(number), "malformed", &message, Vec::new(), EXIT_DATA));
            }
        };
        match log.append(&input.event()) {
            Ok(appended) => acks.pending.push(ack_line(&input.stream, &appended)),
            Err(error) => {
                acks.flush()?;
                return Err(report_append_error(number, &error));
            }
        }
        // Acknowledge now when the next line has not fully arrived (reading
        // it may block: whoever sent the lines so far is waiting for their
        // acks), or when many are waiting.
        let next_line_ready = reader.buffer().contains(&b'\n');
        if !next_line_ready || acks.pending.len() >= PENDING_MAX {
            acks.flush()?;
        }
    }
    acks.flush()
}

/// Acknowledgements of appended events not yet printed.
struct Acks<'a> {
    log: &'a Log,
    sync: bool,
    pending: Vec<String>,
    /// `None` once stdout's reader went away: appending goes on (the input
    /// is the source of truth), acknowledgements are dropped.
    out: Option<Out>,
}

impl Acks<'_> {
    /// Makes the pending events durable (with `sync`), then prints their
    /// acknowledgements.
    fn flush(&mut self) -> CliResult {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.sync {
            if let Err(error) = self.log.sync() {
                let code = exit_code_of(&error);
                return Err(report(None, "io", &error.to_string(), Vec::new(), code));
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let Some(out) = self.out.as_mut() else { return Ok(()) };
        let written = pending.iter().try_for_each(|ack| out.line(ack)).and_then(|()| out.flush());
        match written {
            Ok(()) => Ok(()),
            Err(Failure::Closed) => {
                self.out = None;
                Ok(())
            }
            Err(failure) => Err(failure),
        }
    }
}

fn ack_line(stream: &str, appended: &chronolog::Appended) -> String {
    let mut line = format!("{{\"position\":{},\"stream\":", appended.position);
    push_json_string(&mut line, stream);
    line.push_str(&format!(",\"version\":{},\"timestamp\":{}}}", appended.stream_version, appended.timestamp_ns));
    line
}

/// Extra fields of an error line, after `error`, `line` and `message`.
type Extra = Vec<(&'static str, serde_json::Value)>;

/// Prints an error line on stderr; returns the failure that ends the command.
/// Built in order (`error`, `line`, `message`, then the details) rather than
/// through a map, which would sort the keys.
fn report(line: Option<u64>, kind: &str, message: &str, extra: Extra, code: u8) -> Failure {
    let mut text = String::from("{\"error\":");
    push_json_string(&mut text, kind);
    if let Some(line) = line {
        text.push_str(&format!(",\"line\":{line}"));
    }
    text.push_str(",\"message\":");
    push_json_string(&mut text, message);
    for (name, value) in extra {
        text.push_str(&format!(",\"{name}\":{value}"));
    }
    text.push('}');
    // Nothing is left to report to when stderr itself is gone.
    let _ = output::eprintln(&text);
    Failure::Reported(code)
}

fn report_append_error(line: u64, error: &Error) -> Failure {
    let mut extra = Extra::new();
    let (kind, code) = match error {
        Error::WrongExpectedVersion { stream, expected, actual, .. } => {
            extra.push(("stream", stream.as_str().into()));
            extra.push(("expected", expected_json(*expected)));
            extra.push(("actual", actual.map_or(serde_json::Value::Null, Into::into)));
            ("wrong_expected_version", EXIT_DATA)
        }
        Error::TimestampOutOfOrder { given_ns, last_ns } => {
            extra.push(("timestamp", (*given_ns).into()));
            extra.push(("last_timestamp", (*last_ns).into()));
            ("timestamp_out_of_order", EXIT_DATA)
        }
        Error::InvalidStreamName { .. }
        | Error::InvalidEventType { .. }
        | Error::RecordTooLarge { .. }
        | Error::BatchTooLarge { .. } => ("invalid_event", EXIT_DATA),
        Error::Corrupted { .. } => ("corrupted", EXIT_DATA),
        other => ("io", exit_code_of(other)),
    };
    report(Some(line), kind, &error.to_string(), extra, code)
}

/// An expected version as the input spells it.
fn expected_json(expected: ExpectedVersion) -> serde_json::Value {
    match expected {
        ExpectedVersion::Any => "any".into(),
        ExpectedVersion::NoStream => "no_stream".into(),
        ExpectedVersion::StreamExists => "exists".into(),
        ExpectedVersion::Exact(version) => version.into(),
        // Not spelt by the input (only the library's callers name an event),
        // but reported whole when one is.
        ExpectedVersion::LastEvent { version, position, record_crc } => {
            serde_json::json!({ "version": version, "position": position, "record_crc": record_crc })
        }
    }
}

/// One parsed input line.
#[derive(Debug, PartialEq, Eq)]
struct Input {
    stream: String,
    event_type: String,
    payload: Vec<u8>,
    metadata: Vec<u8>,
    expected_version: ExpectedVersion,
    timestamp_ns: Option<u64>,
}

impl Input {
    fn event(&self) -> NewEvent<'_> {
        let mut event = NewEvent::new(&self.stream, &self.event_type, &self.payload)
            .with_metadata(&self.metadata)
            .with_expected_version(self.expected_version);
        event.timestamp_ns = self.timestamp_ns;
        event
    }
}

/// The fields of a JSON object in input order, values left as raw JSON text
/// (so `data` keeps its numbers exactly as written). Duplicates are kept, to
/// be refused: a map would silently keep one of them.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

const FIELDS: &str = "stream, type, data, data_b64, metadata, metadata_b64, expected_version, timestamp";

/// Parses one input line; the error says what is wrong with it.
fn parse_line(text: &str) -> Result<Input, String> {
    let Fields(fields) = serde_json::from_str(text).map_err(|error| format!("invalid JSON: {error}"))?;
    let mut seen: Vec<&str> = Vec::with_capacity(fields.len());
    let (mut stream, mut event_type, mut payload, mut metadata) = (None, None, None, None);
    let mut input_expected = ExpectedVersion::Any;
    let mut timestamp_ns = None;
    for (name, raw) in &fields {
        if seen.contains(&name.as_str()) {
            return Err(format!("field {name:?} appears twice"));
        }
        seen.push(name);
        let json = raw.get();
        match name.as_str() {
            "stream" => stream = Some(string_field(name, json)?),
            "type" => event_type = Some(string_field(name, json)?),
            "data" => payload = Some(output::minify(json).into_bytes()),
            "data_b64" => payload = Some(base64_field(name, json)?),
            "metadata" if json == "null" => metadata = Some(Vec::new()),
            "metadata" => metadata = Some(output::minify(json).into_bytes()),
            "metadata_b64" => metadata = Some(base64_field(name, json)?),
            "expected_version" => input_expected = expected_version_field(json)?,
            "timestamp" => timestamp_ns = timestamp_field(json)?,
            // What `dump` prints besides the event itself.
            "position" | "version" => {}
            other => return Err(format!("unknown field {other:?} (known fields: {FIELDS})")),
        }
    }
    if seen.contains(&"data") && seen.contains(&"data_b64") {
        return Err("give either \"data\" or \"data_b64\", not both".into());
    }
    if seen.contains(&"metadata") && seen.contains(&"metadata_b64") {
        return Err("give either \"metadata\" or \"metadata_b64\", not both".into());
    }
    Ok(Input {
        stream: stream.ok_or("missing field \"stream\"")?,
        event_type: event_type.ok_or("missing field \"type\"")?,
        payload: payload.ok_or("missing field \"data\" (or \"data_b64\")")?,
        metadata: metadata.unwrap_or_default(),
        expected_version: input_expected,
        timestamp_ns,
    })
}

fn string_field(name: &str, json: &str) -> Result<String, String> {
    serde_json::from_str(json).map_err(|_| format!("field {name:?} must be a string, not {json}"))
}

fn base64_field(name: &str, json: &str) -> Result<Vec<u8>, String> {
    let text = string_field(name, json)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|error| format!("field {name:?} is not standard base64: {error}"))
}

fn expected_version_field(json: &str) -> Result<ExpectedVersion, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|error| error.to_string())?;
    match &value {
        serde_json::Value::Null => Ok(ExpectedVersion::Any),
        serde_json::Value::String(text) => match text.as_str() {
            "any" => Ok(ExpectedVersion::Any),
            "no_stream" => Ok(ExpectedVersion::NoStream),
            "exists" | "stream_exists" => Ok(ExpectedVersion::StreamExists),
            other => Err(format!(
                "\"expected_version\" {other:?} is not one of \"any\", \"no_stream\", \"exists\" or an integer"
            )),
        },
        serde_json::Value::Number(number) => number.as_u64().map(ExpectedVersion::Exact).ok_or_else(|| {
            format!("\"expected_version\" {number} is not a stream version (an integer from 0 to 2^64-1)")
        }),
        other => {
            Err(format!("\"expected_version\" must be \"any\", \"no_stream\", \"exists\" or an integer, not {other}"))
        }
    }
}

fn timestamp_field(json: &str) -> Result<Option<u64>, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|error| error.to_string())?;
    match &value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) => crate::time::parse_time(text).map(Some),
        serde_json::Value::Number(number) => number.as_u64().map(Some).ok_or_else(|| {
            format!("\"timestamp\" {number} is not integer nanoseconds since the Unix epoch (0 to 2^64-1)")
        }),
        other => Err(format!("\"timestamp\" must be RFC 3339 text or integer nanoseconds, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field() {
        let input = parse_line(
            r#"{"stream":"s","type":"T","data":{ "n" : 12345678901234567890123 },"metadata":[1, 2],"expected_version":3,"timestamp":"1970-01-01T00:00:01Z"}"#,
        )
        .unwrap();
        assert_eq!(input.stream, "s");
        assert_eq!(input.event_type, "T");
        assert_eq!(input.payload, br#"{"n":12345678901234567890123}"#);
        assert_eq!(input.metadata, b"[1,2]");
        assert_eq!(input.expected_version, ExpectedVersion::Exact(3));
        assert_eq!(input.timestamp_ns, Some(1_000_000_000));
        let input = parse_line(r#"{"type":"T","stream":"s","data_b64":"AP8=","metadata":null,"expected_version":"no_stream","timestamp":7,"position":1,"version":0}"#).unwrap();
        assert_eq!((input.payload, input.metadata), (vec![0, 255], vec![]));
        assert_eq!((input.expected_version, input.timestamp_ns), (ExpectedVersion::NoStream, Some(7)));
    }

    #[test]
    fn refuses_what_it_cannot_store_exactly() {
        for (line, expected) in [
            ("[1]", "a JSON object"),
            ("{\"stream\":\"s\",\"type\":\"T\"}", "missing field \"data\""),
            ("{\"stream\":\"s\",\"data\":1}", "missing field \"type\""),
            ("{\"stream\":1,\"type\":\"T\",\"data\":1}", "must be a string"),
            ("{\"stream\":\"s\",\"type\":\"T\",\"data\":1,\"data\":2}", "appears twice"),
            ("{\"stream\":\"s\",\"type\":\"T\",\"data\":1,\"extra\":2}", "unknown field \"extra\""),
            ("{\"stream\":\"s\",\"type\":\"T\",\"data\":1,\"expected_version\":-1}", "not a stream version"),
            ("{\"stream\":\"s\",\"type\":\"T\",\"data\":1,\"expected_version\":\"some\"}", "is not one of"),
            ("{\"stream\":\"s\",\"type\":\"T\",\"data\":1,\"timestamp\":1.5}", "integer nanoseconds"),
            ("{\"stream\":\"s\",\"type\":\"T\",\"data\":1,\"timestamp\":\"noon\"}", "RFC 3339"),
            ("{\"stream\":\"s\",\"type\":\"T\",\"data_b64\":\"*\"}", "base64"),
            ("{\"stream\":\"s\",\"type\":\"T\",\"data\":1,\"data_b64\":\"\"}", "not both"),
            ("{\"stream\":\"s\"", "invalid JSON"),
        ] {
            let error = parse_line(line).unwrap_err();
            assert!(error.contains(expected), "{line}: {error}");
        }
    }
}
