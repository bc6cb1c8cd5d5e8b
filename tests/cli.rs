//! The `chronolog` binary, run as an operator would: through its arguments,
//! stdin, stdout, stderr and exit code. Logs are prepared through the library
//! where the CLI has no option for it (small segments, snapshots).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chronolog::snapshot::{SnapshotMeta, SnapshotStore};
use chronolog::{Durability, Log, LogOptions, NewEvent};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_chronolog");
const FIRST_SEGMENT: &str = "00000000000000000000.seg";

fn chronolog(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run chronolog")
}

fn chronolog_with_input(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chronolog");
    let mut stdin = child.stdin.take().expect("stdin");
    // The child may stop reading early (on an error): a closed pipe is fine.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("wait for chronolog")
}

fn path(directory: &Path) -> &str {
    directory.to_str().expect("UTF-8 temporary path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    text(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect()
}

fn dump(directory: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["dump", path(directory)];
    args.extend_from_slice(extra);
    let output = chronolog(&args);
    assert!(output.status.success(), "dump {extra:?} failed: {}", text(&output.stderr));
    json_lines(&output.stdout)
}

fn positions(events: &[Value]) -> Vec<u64> {
    events.iter().map(|event| event["position"].as_u64().expect("position")).collect()
}

fn lines(values: &[Value]) -> String {
    values.iter().map(|value| format!("{value}\n")).collect()
}

fn small_segments() -> LogOptions {
    LogOptions::default().segment_capacity_bytes(4096).durability(Durability::None)
}

/// The tricky JSON values of the round-trip tests.
fn tricky_values() -> Vec<Value> {
    vec![
        json!({"nested": {"list": [1, 2, {"deep": [null, true, false]}], "empty": {}, "none": []}}),
        json!([0, 1, -1, u64::MAX, i64::MIN, i64::MAX, 1.5, -0.25, 0.1, 1e300, 2.5e-8, -1e-300]),
        json!("unicode é 日本語 🦀, escapes \" \\ / \n \r \t \u{0001} \u{001f} \u{007f} \u{2028}"),
        json!({"": "", "key with spaces": " value ", "ünïcödé": {"🦀": "🦀"}}),
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(""),
        json!([]),
        json!({}),
        json!([[[[[[[[[[["deep"]]]]]]]]]]]),
    ]
}

#[test]
fn append_then_dump_round_trips_arbitrary_json_losslessly() {
    let directory = tempfile::tempdir().unwrap();
    let values = tricky_values();
    let mut input = Vec::new();
    for (index, data) in values.iter().enumerate() {
        let mut line = json!({"stream": format!("s-{}", index % 3), "type": format!("Type{index}"), "data": data});
        if index % 2 == 0 {
            line["metadata"] = json!({"user": "ada", "index": index, "tags": ["a", "é"]});
        }
        input.push(line);
    }
    // Explicit timestamps, both spellings; expected versions of every kind.
    input[0]["timestamp"] = json!("2025-03-01T12:00:00Z");
    input[0]["expected_version"] = json!("no_stream");
    input[1]["timestamp"] = json!("2025-03-01T13:00:00.5+01:00");
    input[2]["timestamp"] = json!(1_740_830_401_000_000_000u64);
    input[3]["expected_version"] = json!(0);
    input[4]["expected_version"] = json!("exists");
    input[5]["expected_version"] = json!("any");
    let mut text_input = lines(&input);
    // Written by hand: a number no f64 holds, whitespace to be compacted, and
    // bytes that are not JSON.
    text_input.push_str(
        "{ \"stream\" : \"big\", \"type\": \"Big\", \"data\": { \"n\" : 123456789012345678901234567890, \"x\": 1.0000000000000000001 } }\n",
    );
    text_input.push_str("\n   \n");
    text_input.push_str(r#"{"stream":"bin","type":"Raw","data_b64":"AAEC/w==","metadata_b64":"//4="}"#);
    text_input.push('\n');

    let output = chronolog_with_input(&["append", path(directory.path())], &text_input);
    assert!(output.status.success(), "append failed: {}", text(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    let acks = json_lines(&output.stdout);
    assert_eq!(acks.len(), values.len() + 2);
    let mut versions = std::collections::HashMap::new();
    for (position, ack) in acks.iter().enumerate() {
        assert_eq!(ack["position"], json!(position), "{ack}");
        let stream = ack["stream"].as_str().unwrap().to_owned();
        let version = versions.entry(stream).and_modify(|v| *v += 1).or_insert(0u64);
        assert_eq!(ack["version"], json!(*version), "{ack}");
        assert!(ack["timestamp"].is_u64());
    }
    assert_eq!(acks[0]["timestamp"], json!(1_740_830_400_000_000_000u64));
    assert_eq!(acks[1]["timestamp"], json!(1_740_830_400_500_000_000u64));
    assert_eq!(acks[2]["timestamp"], json!(1_740_830_401_000_000_000u64));
    assert!(acks[3]["timestamp"].as_u64().unwrap() > 1_740_830_401_000_000_000, "the clock, not older");

    let dumped = dump(directory.path(), &[]);
    assert_eq!(dumped.len(), acks.len());
    for (index, (event, line)) in dumped.iter().zip(&input).enumerate() {
        assert_eq!(event["position"], json!(index));
        assert_eq!(event["stream"], line["stream"]);
        assert_eq!(event["type"], line["type"]);
        assert_eq!(event["version"], acks[index]["version"]);
        assert_eq!(event["timestamp"], acks[index]["timestamp"]);
        assert_eq!(event.get("data"), Some(&values[index]), "data of event {index}");
        match line.get("metadata") {
            Some(metadata) => assert_eq!(&event["metadata"], metadata),
            None => assert!(event.get("metadata").is_none(), "empty metadata is left out: {event}"),
        }
    }
    let raw = text(&chronolog(&["dump", path(directory.path()), "--stream", "big"]).stdout);
    assert!(
        raw.contains(r#""data":{"n":123456789012345678901234567890,"x":1.0000000000000000001}"#),
        "numbers keep every digit, whitespace is dropped: {raw}"
    );
    let binary = &dumped[values.len() + 1];
    assert_eq!(binary["data_b64"], json!("AAEC/w=="));
    assert_eq!(binary["metadata_b64"], json!("//4="));
    assert!(binary.get("data").is_none());

    // Dump output appends unchanged: a copy of the log is the same log.
    let copy = tempfile::tempdir().unwrap();
    let dump_output = chronolog(&["dump", path(directory.path())]);
    let output =
        chronolog_with_input(&["append", path(copy.path()), "--durability", "none"], &text(&dump_output.stdout));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(chronolog(&["dump", path(copy.path())]).stdout, dump_output.stdout);
}

/// Found in review: a dump fed back to append must copy payload and metadata
/// bytes exactly, even JSON with whitespace, JSON a strict parser refuses, and
/// metadata that is the text `null` (which append reads as "no metadata").
#[test]
fn a_dump_appended_elsewhere_copies_every_byte() {
    let directory = tempfile::tempdir().unwrap();
    let payloads: [&[u8]; 6] = [b"{\"a\": 1}", b"1\n", b"\"\\ud800\"", b"1e999", b"null", b"{}"];
    let metadata: [&[u8]; 6] = [b"null", b"", b" {}", b"{\"m\":1}", b"\x00", b"null"];
    {
        let log = Log::open(directory.path(), LogOptions::default()).unwrap();
        for (payload, metadata) in payloads.iter().zip(metadata) {
            log.append(&NewEvent::new("s", "T", payload).with_metadata(metadata)).unwrap();
        }
    }
    let copy = tempfile::tempdir().unwrap();
    let dumped = text(&chronolog(&["dump", path(directory.path())]).stdout);
    let output = chronolog_with_input(&["append", path(copy.path())], &dumped);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let read = |directory: &Path| -> Vec<(Vec<u8>, Vec<u8>)> {
        let log = Log::open_read_only(directory, LogOptions::default()).unwrap();
        let view = log.view();
        view.iter().map(|e| e.map(|e| (e.payload.to_vec(), e.metadata.to_vec()))).collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(read(copy.path()), read(directory.path()), "dump:\n{dumped}");
}

#[test]
fn a_wrong_expected_version_stops_append_and_leaves_the_log_as_acknowledged() {
    let directory = tempfile::tempdir().unwrap();
    let input = lines(&[
        json!({"stream": "cart-1", "type": "Created", "data": {}, "expected_version": "no_stream"}),
        json!({"stream": "cart-1", "type": "Added", "data": {"item": "apple"}, "expected_version": 0}),
        json!({"stream": "cart-1", "type": "Added", "data": {"item": "pear"}, "expected_version": 5}),
        json!({"stream": "cart-2", "type": "Created", "data": {}}),
    ]);
    let output = chronolog_with_input(&["append", path(directory.path())], &input);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let acks = json_lines(&output.stdout);
    assert_eq!(positions(&acks), vec![0, 1], "the lines before the conflict are acknowledged");
    let errors = json_lines(&output.stderr);
    assert_eq!(errors.len(), 1, "{}", text(&output.stderr));
    let error = &errors[0];
    assert_eq!(error["error"], "wrong_expected_version");
    assert_eq!(error["line"], 3);
    assert_eq!(error["stream"], "cart-1");
    assert_eq!(error["expected"], 5);
    assert_eq!(error["actual"], 1);
    assert!(error["message"].as_str().unwrap().contains("cart-1"));

    let dumped = dump(directory.path(), &[]);
    assert_eq!(positions(&dumped), vec![0, 1], "nothing of line 3 or after was written");
    assert_eq!(dumped[1]["data"], json!({"item": "apple"}));

    // Other conflicts name their expectation the way the input spells it.
    let output = chronolog_with_input(
        &["append", path(directory.path())],
        &lines(&[json!({"stream": "cart-1", "type": "Created", "data": {}, "expected_version": "no_stream"})]),
    );
    assert_eq!(output.status.code(), Some(1));
    let error = &json_lines(&output.stderr)[0];
    assert_eq!(
        (error["line"].clone(), error["expected"].clone(), error["actual"].clone()),
        (json!(1), json!("no_stream"), json!(1))
    );
    let output = chronolog_with_input(
        &["append", path(directory.path())],
        &lines(&[json!({"stream": "cart-9", "type": "Added", "data": {}, "expected_version": "exists"})]),
    );
    assert_eq!(output.status.code(), Some(1));
    let error = &json_lines(&output.stderr)[0];
    assert_eq!(error["error"], "wrong_expected_version");
    assert_eq!(error.get("actual"), Some(&Value::Null), "the stream has no event: {error}");
    assert_eq!(positions(&dump(directory.path(), &[])), vec![0, 1], "the log is unchanged");

    // With the right expectation the same line goes in.
    let output = chronolog_with_input(
        &["append", path(directory.path())],
        &lines(&[json!({"stream": "cart-1", "type": "Added", "data": {"item": "pear"}, "expected_version": 1})]),
    );
    assert!(output.status.success());
    assert_eq!(json_lines(&output.stdout)[0]["version"], 2);
}

#[test]
fn a_malformed_line_is_reported_with_its_number_and_earlier_lines_stay() {
    let directory = tempfile::tempdir().unwrap();
    let input = format!(
        "{}\n{{\"stream\": \"s\", \"type\": \n{}\n",
        json!({"stream": "s", "type": "T", "data": 1}),
        json!({"stream": "s", "type": "T", "data": 3})
    );
    let output = chronolog_with_input(&["append", path(directory.path())], &input);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(positions(&json_lines(&output.stdout)), vec![0]);
    let error = &json_lines(&output.stderr)[0];
    assert_eq!((error["error"].as_str(), error["line"].as_u64()), (Some("malformed"), Some(2)), "{error}");
    assert_eq!(positions(&dump(directory.path(), &[])), vec![0]);

    for (line, expected) in [
        (r#"{"stream":"s","type":"T"}"#, "missing field \"data\""),
        (r#"{"stream":"s","type":"T","data":1,"extra":true}"#, "unknown field \"extra\""),
        (r#"{"stream":"s","type":"T","data":1,"timestamp":"yesterday"}"#, "RFC 3339"),
        (r#"["not", "an", "object"]"#, "JSON object"),
        (r#"{"stream":"","type":"T","data":1}"#, "stream name"),
    ] {
        let output = chronolog_with_input(&["append", path(directory.path())], &format!("\n{line}\n"));
        assert_eq!(output.status.code(), Some(1), "{line}");
        let error = &json_lines(&output.stderr)[0];
        assert_eq!(error["line"], 2, "blank lines count: {error}");
        assert!(error["message"].as_str().unwrap().contains(expected), "{line}: {error}");
    }
    assert_eq!(positions(&dump(directory.path(), &[])), vec![0], "nothing else was written");
}

#[test]
fn an_explicit_timestamp_older_than_the_log_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let input = lines(&[
        json!({"stream": "s", "type": "T", "data": 1, "timestamp": "2025-03-01T12:00:00Z"}),
        json!({"stream": "s", "type": "T", "data": 2, "timestamp": "2025-03-01T12:00:00Z"}),
        json!({"stream": "s", "type": "T", "data": 3, "timestamp": "2025-02-28T12:00:00Z"}),
    ]);
    let output = chronolog_with_input(&["append", path(directory.path())], &input);
    assert_eq!(output.status.code(), Some(1));
    let acks = json_lines(&output.stdout);
    assert_eq!(positions(&acks), vec![0, 1], "an equal timestamp is kept");
    assert_eq!(acks[0]["timestamp"], acks[1]["timestamp"], "as given");
    let error = &json_lines(&output.stderr)[0];
    assert_eq!(error["error"], "timestamp_out_of_order");
    assert_eq!(error["line"], 3);
    assert_eq!(error["last_timestamp"], 1_740_830_400_000_000_000u64);
    let help = text(&chronolog(&["append", "--help"]).stdout);
    assert!(help.contains("REJECTED"), "the rule is in --help");
}

/// Offsets of the records of the first segment, from the sizes the library
/// gives for the events appended.
fn record_offsets(events: &[(String, Vec<u8>)]) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut offset = chronolog::segment::HEADER_SIZE as u64;
    for (stream, payload) in events {
        offsets.push(offset);
        offset += chronolog::record::encoded_size(stream.len(), "Happened".len(), 0, payload.len()) as u64;
    }
    offsets
}

#[test]
fn verify_exits_1_and_names_the_file_and_offset_of_a_flipped_byte() {
    let directory = tempfile::tempdir().unwrap();
    let events: Vec<(String, Vec<u8>)> =
        (0..200).map(|i| (format!("stream-{}", i % 5), format!("payload number {i}").into_bytes())).collect();
    {
        let log = Log::open(directory.path(), small_segments()).unwrap();
        for (stream, payload) in &events {
            log.append(&NewEvent::new(stream, "Happened", payload)).unwrap();
        }
        log.sync().unwrap();
    }
    let output = chronolog(&["verify", path(directory.path())]);
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
    assert!(text(&output.stdout).contains("clean"));
    let report: Value =
        serde_json::from_slice(&chronolog(&["verify", path(directory.path()), "--json"]).stdout).unwrap();
    assert_eq!(report["clean"], true);
    assert_eq!(report["records_checked"], 200);
    assert!(report["segments_checked"].as_u64().unwrap() > 2, "{report}");

    // Flip the last payload byte of the third record of the first (sealed)
    // segment: its CRC no longer matches.
    let offsets = record_offsets(&events);
    let record = offsets[2];
    let flipped = offsets[3] - chronolog::record::TRAILER_SIZE as u64 - 1;
    let segment = directory.path().join(FIRST_SEGMENT);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[flipped as usize] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();

    let output = chronolog(&["verify", path(directory.path())]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(FIRST_SEGMENT), "{stdout}");
    assert!(stdout.contains(&format!("offset {record}")), "{stdout}");
    assert!(stdout.contains("checksum mismatch"), "{stdout}");

    let output = chronolog(&["verify", path(directory.path()), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["clean"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert!(problems[0]["file"].as_str().unwrap().ends_with(FIRST_SEGMENT));
    assert_eq!(problems[0]["offset"], record);
    assert_eq!(problems[0]["kind"], "checksum_mismatch");

    // Reading through the damage fails with exit 1 and the same location.
    let output = chronolog(&["dump", path(directory.path())]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(&format!("{FIRST_SEGMENT} at byte offset {record}")),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(json_lines(&output.stdout).len(), 2, "the events before the damage were printed");
}

#[test]
fn verify_reports_a_damaged_snapshot_and_a_log_that_cannot_open() {
    let directory = tempfile::tempdir().unwrap();
    let snapshot = {
        let log = Log::open(directory.path(), small_segments()).unwrap();
        let appended = log.append(&NewEvent::new("s", "T", b"{}")).unwrap();
        let meta = SnapshotMeta {
            name: "projection:count".into(),
            next_position: 1,
            timestamp_ns: appended.timestamp_ns,
            version: 1,
            schema_version: 1,
        };
        SnapshotStore::open(&log).write(&meta, b"1").unwrap()
    };
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snapshot, bytes).unwrap();
    let output = chronolog(&["verify", path(directory.path()), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["problems"][0]["file"], snapshot.to_str().unwrap());
    let listing = text(&chronolog(&["snapshots", path(directory.path())]).stdout);
    assert!(listing.contains("DAMAGED"), "{listing}");

    // A damaged segment header stops the log from opening: still a finding.
    let segment = directory.path().join(FIRST_SEGMENT);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let output = chronolog(&["verify", path(directory.path())]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(FIRST_SEGMENT));
}

/// Lines of a child's stdout, as they come.
fn line_reader(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[test]
fn tail_sees_events_another_process_appends_within_a_second() {
    let directory = tempfile::tempdir().unwrap();
    let first = lines(&[json!({"stream": "s", "type": "First", "data": 0})]);
    assert!(chronolog_with_input(&["append", path(directory.path())], &first).status.success());
    let mut tail = Command::new(BIN)
        .args(["tail", path(directory.path()), "--type", "First", "--type", "Second"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let received = line_reader(tail.stdout.take().unwrap());
    let existing: Value = serde_json::from_str(&received.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(existing["position"], 0);

    for (round, data) in [1, 2].into_iter().enumerate() {
        let input = lines(&[
            json!({"stream": "s", "type": "Filtered", "data": -1}),
            json!({"stream": "s", "type": "Second", "data": data}),
        ]);
        let append = chronolog_with_input(&["append", path(directory.path())], &input);
        assert!(append.status.success(), "{}", text(&append.stderr));
        let acknowledged = Instant::now();
        let line = received.recv_timeout(Duration::from_secs(5)).expect("tail printed the new event");
        let waited = acknowledged.elapsed();
        assert!(waited < Duration::from_secs(1), "round {round}: tail took {waited:?}");
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((event["type"].clone(), event["data"].clone()), (json!("Second"), json!(data)));
        assert_eq!(event["position"], json!(2 + 2 * round as u64), "the filtered event was skipped");
    }
    tail.kill().unwrap();
    tail.wait().unwrap();
}

#[test]
fn tail_from_the_end_follows_a_writer_that_holds_the_lock() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), small_segments()).unwrap();
    for i in 0..100u32 {
        log.append(&NewEvent::new("old", "T", i.to_string().as_bytes())).unwrap();
    }
    let mut tail = Command::new(BIN)
        .args(["tail", path(directory.path()), "--from-end", "--format", "text"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let received = line_reader(tail.stdout.take().unwrap());
    // Appended until tail shows one: it may start after the first appends.
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        log.append(&NewEvent::new("new", "T", b"\"fresh\"")).unwrap();
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "tail showed nothing");
    };
    assert!(line.contains(" new v") && line.contains("\"fresh\""), "{line}");
    assert!(!line.contains(" old v"), "--from-end skips what was there: {line}");
    tail.kill().unwrap();
    tail.wait().unwrap();
}

/// A child process killed when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Found in review: tail did not notice a truncation once the log grew back
/// past where it was, and so never showed the new events at the cut
/// positions; and `--from` beyond the end warned of a truncation and showed
/// events before the position asked for.
#[test]
fn tail_follows_a_truncation_and_starts_where_asked() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), small_segments()).unwrap();
    // Given timestamps: the events appended after the cut take the same
    // positions and the same timestamps as the ones cut, so only their
    // records tell them apart.
    for i in 0..100u32 {
        let payload = i.to_string();
        log.append(&NewEvent::new("old", "T", payload.as_bytes()).with_timestamp_ns(1000 + u64::from(i))).unwrap();
    }
    let spawn = |extra: &[&str]| {
        let mut child = Command::new(BIN)
            .args(["tail", path(directory.path())])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let received = line_reader(child.stdout.take().unwrap());
        (KillOnDrop(child), received)
    };
    let (mut tail, received) = spawn(&[]);
    let (_beyond, beyond_received) = spawn(&["--from", "130"]);
    let next_position = |received: &mpsc::Receiver<String>| -> u64 {
        let line = received.recv_timeout(Duration::from_secs(30)).expect("a line from tail");
        serde_json::from_str::<Value>(&line).unwrap()["position"].as_u64().unwrap()
    };
    let first: Vec<u64> = (0..100).map(|_| next_position(&received)).collect();
    assert_eq!(first, (0..100).collect::<Vec<_>>());

    log.truncate_after(49).unwrap();
    for i in 0..100u32 {
        let payload = i.to_string();
        log.append(&NewEvent::new("new", "T", payload.as_bytes()).with_timestamp_ns(1050 + u64::from(i))).unwrap();
    }
    let after: Vec<u64> = (0..100).map(|_| next_position(&received)).collect();
    assert_eq!(after, (50..150).collect::<Vec<_>>(), "the events at the cut positions are the new ones");
    let beyond: Vec<u64> = (0..20).map(|_| next_position(&beyond_received)).collect();
    assert_eq!(beyond, (130..150).collect::<Vec<_>>(), "--from beyond the end waits for that position");

    let _ = tail.0.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut tail.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("truncated under tail; events from position 50 on were replaced"), "{stderr}");
}

/// 12 events with timestamps 1000, 2000, ... ns over three streams.
fn filter_log(directory: &Path) {
    let log = Log::open(directory, small_segments()).unwrap();
    let kinds = [("account-1", "Opened"), ("account-2", "Opened"), ("order-1", "Placed")];
    for i in 0..12u64 {
        let (stream, event_type) = kinds[(i % 3) as usize];
        let event_type = if i >= 3 && stream.starts_with("account") { "Deposited" } else { event_type };
        let payload = if i == 11 { b"apple".to_vec() } else { format!("{{\"i\":{i}}}").into_bytes() };
        log.append(&NewEvent::new(stream, event_type, &payload).with_timestamp_ns(1000 * (i + 1))).unwrap();
    }
}

#[test]
fn dump_selects_by_position_time_stream_prefix_and_type() {
    let directory = tempfile::tempdir().unwrap();
    filter_log(directory.path());
    let select = |args: &[&str]| positions(&dump(directory.path(), args));
    assert_eq!(select(&[]), (0..12).collect::<Vec<_>>());
    assert_eq!(select(&["--stream", "account-1"]), vec![0, 3, 6, 9]);
    assert_eq!(select(&["--stream", "account-1", "--reverse"]), vec![9, 6, 3, 0]);
    assert_eq!(select(&["--stream", "account-1", "--reverse", "--as-of", "7000", "--limit", "2"]), vec![6, 3]);
    assert_eq!(select(&["--stream", "account-1", "--from", "4", "--as-of", "10000"]), vec![6, 9]);
    assert_eq!(select(&["--stream", "account-1", "--from", "4", "--as-of", "9999"]), vec![6]);
    assert_eq!(select(&["--stream", "nobody"]), Vec::<u64>::new());
    assert_eq!(select(&["--prefix", "account-"]), vec![0, 1, 3, 4, 6, 7, 9, 10]);
    assert_eq!(select(&["--type", "Placed"]), vec![2, 5, 8, 11]);
    assert_eq!(select(&["--type", "Placed", "--type", "Opened"]), vec![0, 1, 2, 5, 8, 11]);
    assert_eq!(select(&["--prefix", "account-", "--type", "Opened"]), vec![0, 1]);
    assert_eq!(select(&["--reverse", "--limit", "3"]), vec![11, 10, 9]);
    assert_eq!(select(&["--limit", "2"]), vec![0, 1]);
    assert_eq!(select(&["--limit", "0"]), Vec::<u64>::new());
    assert_eq!(select(&["--as-of", "5000"]), vec![0, 1, 2, 3, 4]);
    assert_eq!(select(&["--as-of", "5999"]), vec![0, 1, 2, 3, 4]);
    assert_eq!(select(&["--as-of", "999"]), Vec::<u64>::new());
    assert_eq!(select(&["--as-of", "1970-01-01T00:00:00.000005Z", "--reverse"]), vec![4, 3, 2, 1, 0]);
    assert_eq!(select(&["--from-time", "10000"]), vec![9, 10, 11]);
    assert_eq!(select(&["--from-time", "1970-01-01T00:00:00.0000095Z"]), vec![9, 10, 11]);
    assert_eq!(select(&["--from", "7"]), vec![7, 8, 9, 10, 11]);
    assert_eq!(
        select(&["--from", "3", "--as-of", "9000", "--prefix", "account-", "--reverse", "--limit", "2"]),
        vec![7, 6]
    );
    assert_eq!(select(&["--from", "3", "--from-time", "6000"]), vec![5, 6, 7, 8, 9, 10, 11]);

    let events = dump(directory.path(), &["--from", "10"]);
    assert_eq!(events[0]["data"], json!({"i": 10}));
    assert_eq!(events[0]["timestamp"], 11_000);
    assert_eq!(events[1]["data_b64"], "YXBwbGU=", "a payload that is not JSON is base64");

    let output = chronolog(&["dump", path(directory.path()), "--format", "text", "--stream", "order-1"]);
    assert!(output.status.success());
    let text_lines: Vec<String> = text(&output.stdout).lines().map(str::to_owned).collect();
    assert_eq!(text_lines.len(), 4);
    assert!(
        text_lines[0].contains("1970-01-01T00:00:00.000003Z") && text_lines[0].contains("order-1 v0"),
        "{text_lines:?}"
    );
    assert!(text_lines[3].contains("text:\"apple\""), "{text_lines:?}");

    let output = chronolog(&["dump", path(directory.path()), "--as-of", "noon"]);
    assert_eq!(output.status.code(), Some(2), "a bad time is a usage error");
    assert!(text(&output.stderr).contains("RFC 3339"));
}

#[test]
fn info_and_snapshots_describe_the_directory() {
    let directory = tempfile::tempdir().unwrap();
    {
        let log = Log::open(directory.path(), small_segments()).unwrap();
        for i in 0..300u64 {
            let stream = format!("stream-{}", i % 7);
            log.append(&NewEvent::new(&stream, "T", format!("{{\"i\":{i}}}").as_bytes()).with_timestamp_ns(1_000 + i))
                .unwrap();
        }
        log.append(&NewEvent::new("late-stream", "T", b"1").with_timestamp_ns(5_000)).unwrap();
        let meta = SnapshotMeta {
            name: "aggregate:stream-3".into(),
            next_position: 100,
            timestamp_ns: 1_099,
            version: 15,
            schema_version: 2,
        };
        SnapshotStore::open(&log).write(&meta, b"{\"state\":1}").unwrap();
    }
    let output = chronolog(&["info", path(directory.path())]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let info = text(&output.stdout);
    for expected in [
        "positions        0..301 (301 events)",
        "streams          8\n",
        "snapshots        1",
        &format!("format version   {}", chronolog::segment::FORMAT_VERSION),
        "sealed",
    ] {
        assert!(info.contains(expected), "{expected:?} missing from:\n{info}");
    }
    assert!(info.contains("1970-01-01T00:00:00.000001Z .. 1970-01-01T00:00:00.000005Z"), "{info}");
    let info: Value = serde_json::from_slice(&chronolog(&["info", path(directory.path()), "--json"]).stdout).unwrap();
    assert_eq!(info["events"], 301);
    assert_eq!(info["streams"], 8);
    assert_eq!(info["first_timestamp"], 1_000);
    assert_eq!(info["last_timestamp"], 5_000);
    let segments = info["segments"].as_array().unwrap();
    assert!(segments.len() > 3, "{info}");
    assert_eq!(segments.iter().filter(|s| s["state"] == "active").count(), 1);
    let counted: u64 = segments.iter().map(|s| s["events"].as_u64().unwrap()).sum();
    assert_eq!(counted, 301);
    assert_eq!(info["snapshots"], 1);

    let output = chronolog(&["snapshots", path(directory.path())]);
    assert!(output.status.success());
    let listing = text(&output.stdout);
    assert!(listing.contains("aggregate:stream-3") && listing.contains("1 snapshot under"), "{listing}");
    let entry: Value =
        serde_json::from_slice(&chronolog(&["snapshots", path(directory.path()), "--json"]).stdout).unwrap();
    assert_eq!(
        (
            entry["name"].clone(),
            entry["next_position"].clone(),
            entry["version"].clone(),
            entry["schema_version"].clone()
        ),
        (json!("aggregate:stream-3"), json!(100), json!(15), json!(2))
    );
    assert_eq!(entry["ahead_of_log"], false);

    // A truncation below it removes it, and says so.
    let output = chronolog(&["truncate", path(directory.path()), "--after", "49"]);
    assert!(output.status.success());
    assert!(text(&output.stdout).contains("removed 1 snapshots made from removed events"), "{}", text(&output.stdout));
    let listing = chronolog(&["snapshots", path(directory.path()), "--json"]);
    assert!(listing.status.success() && listing.stdout.is_empty(), "{}", text(&listing.stdout));
}

#[test]
fn truncate_and_purge_remove_events() {
    let directory = tempfile::tempdir().unwrap();
    {
        let log = Log::open(directory.path(), small_segments()).unwrap();
        for i in 0..300u64 {
            log.append(&NewEvent::new("s", "T", format!("{i}").as_bytes())).unwrap();
        }
    }
    let output = chronolog(&["truncate", path(directory.path()), "--after", "199"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("removed 100 events"), "{}", text(&output.stdout));
    let events = dump(directory.path(), &[]);
    assert_eq!(positions(&events), (0..200).collect::<Vec<_>>());

    let output = chronolog(&["purge", path(directory.path()), "--before", "150"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("purged"), "{}", text(&output.stdout));
    let first = positions(&dump(directory.path(), &[]))[0];
    assert!(first > 0 && first <= 150, "first position {first}");
    let output = chronolog(&["purge", path(directory.path()), "--before", "0"]);
    assert!(text(&output.stdout).contains("nothing to purge"));

    let output = chronolog(&["truncate", path(directory.path()), "--after", "5000"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("outside the log"), "{}", text(&output.stderr));

    // A writer holds the lock: refused with exit 2 and a clear message.
    let log = Log::open(directory.path(), small_segments()).unwrap();
    let output = chronolog(&["truncate", path(directory.path()), "--after", "160"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("locked by another writer"), "{}", text(&output.stderr));
    assert_eq!(chronolog(&["purge", path(directory.path()), "--before", "190"]).status.code(), Some(2));
    let input = lines(&[json!({"stream": "s", "type": "T", "data": 1})]);
    let output = chronolog_with_input(&["append", path(directory.path())], &input);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(json_lines(&output.stderr)[0]["error"], "locked");
    drop(log);

    let empty = tempfile::tempdir().unwrap();
    let output = chronolog(&["truncate", path(empty.path()), "--after", "1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none(), "no log was created by mistake");
}

#[test]
fn readers_work_while_a_writer_holds_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), small_segments()).unwrap();
    for i in 0..150u64 {
        log.append(&NewEvent::new(&format!("s-{}", i % 4), "T", b"{}")).unwrap();
    }
    // Nothing synced, the lock held, the active segment open for writing.
    let output = chronolog(&["info", path(directory.path()), "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let info: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((info["events"].clone(), info["streams"].clone()), (json!(150), json!(4)));
    let output = chronolog(&["verify", path(directory.path())]);
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(dump(directory.path(), &[]).len(), 150);
    log.append(&NewEvent::new("s-9", "T", b"[]")).unwrap();
    assert_eq!(dump(directory.path(), &["--reverse", "--limit", "1"])[0]["stream"], "s-9");

    // A half-written batch at the end of the active segment (a writer caught
    // in the middle of a write) is not shown, and is no corruption.
    let segments: Vec<_> = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".seg"))
        .collect();
    let active = segments.iter().max().unwrap();
    let active_path = directory.path().join(active);
    let bytes = std::fs::read(&active_path).unwrap();
    let first = chronolog::segment::parse_file_name(active).unwrap();
    let limit = (bytes.len() - chronolog::segment::FOOTER_SIZE) as u64;
    let header = chronolog::segment::HEADER_SIZE as u64;
    let data_end = chronolog::segment::scan(&bytes, header, limit, first, 0, |_, _| {}).valid_end;
    // The first half of a real record, as a crash in the middle of its write
    // leaves it.
    let torn = {
        let scratch = tempfile::tempdir().unwrap();
        let other = Log::open(scratch.path(), small_segments()).unwrap();
        other.append(&NewEvent::new("s-1", "T", b"{\"torn\":true}")).unwrap();
        drop(other);
        let scratch_bytes = std::fs::read(scratch.path().join(FIRST_SEGMENT)).unwrap();
        let length = chronolog::record::encoded_size(3, 1, 0, 13);
        scratch_bytes[64..64 + length / 2].to_vec()
    };
    let file = std::fs::OpenOptions::new().write(true).open(&active_path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &torn, data_end).unwrap();
    drop(file);
    let output = chronolog(&["verify", path(directory.path())]);
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(dump(directory.path(), &[]).len(), 151);
    drop(log);
}

#[test]
fn demo_runs_small_and_resets_its_own_directory() {
    let parent = tempfile::tempdir().unwrap();
    let directory = parent.path().join("demo");
    let output = chronolog(&["demo", path(&directory), "--events", "3000"]);
    assert!(output.status.success(), "{}\n{}", text(&output.stdout), text(&output.stderr));
    let stdout = text(&output.stdout);
    for expected in ["creating", "write", "replay", "as-of", "identical", "history", "verify", "clean"] {
        assert!(stdout.contains(expected), "{expected:?} missing from:\n{stdout}");
    }
    // The default run (a million events) fills more than one segment: a
    // sealed segment and `MANIFEST` are the demo's files too. (A segment
    // keeps the capacity it was made with, 64 MiB here.)
    let log = Log::open(&directory, LogOptions::default().durability(Durability::None)).unwrap();
    let filler = vec![7u8; 16 * 1024];
    let batch: Vec<NewEvent> = (0..64).map(|_| NewEvent::new("filler", "Filled", &filler)).collect();
    for _ in 0..70 {
        log.append_batch(&batch).unwrap();
    }
    drop(log);
    assert!(directory.join("MANIFEST").exists(), "a segment was sealed");
    let output = chronolog(&["demo", path(&directory), "--events", "2000"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("resetting"), "{}", text(&output.stdout));
    let info: Value = serde_json::from_slice(&chronolog(&["info", path(&directory), "--json"]).stdout).unwrap();
    assert!(info["events"].as_u64().unwrap() < 3000, "the second run started afresh: {info}");
    assert_eq!(chronolog(&["verify", path(&directory)]).status.code(), Some(0));

    // A directory holding anything else is refused, and left as it was.
    std::fs::write(directory.join("notes.txt"), b"mine").unwrap();
    let output = chronolog(&["demo", path(&directory), "--events", "2000"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("notes.txt"), "{}", text(&output.stderr));
    assert!(directory.join("notes.txt").exists() && directory.join(FIRST_SEGMENT).exists());
    // So is a log the demo did not make.
    let other = tempfile::tempdir().unwrap();
    drop(Log::open(other.path(), LogOptions::default()).unwrap());
    assert_eq!(chronolog(&["demo", path(other.path()), "--events", "2000"]).status.code(), Some(2));
    assert!(other.path().join(FIRST_SEGMENT).exists());
}

#[test]
fn usage_and_io_errors_exit_2() {
    let directory = tempfile::tempdir().unwrap();
    let missing = directory.path().join("missing");
    for command in ["dump", "info", "verify", "tail", "snapshots"] {
        let output = chronolog(&[command, path(&missing)]);
        assert_eq!(output.status.code(), Some(2), "{command}: {}", text(&output.stderr));
        assert!(text(&output.stderr).starts_with("chronolog: "), "{command}: {}", text(&output.stderr));
    }
    assert_eq!(chronolog(&["dump"]).status.code(), Some(2), "a missing argument");
    assert_eq!(chronolog(&["frobnicate"]).status.code(), Some(2), "an unknown command");
    assert_eq!(chronolog(&["dump", path(directory.path()), "--limit", "-1"]).status.code(), Some(2));
    let help = chronolog(&["--help"]);
    assert!(help.status.success());
    for command in ["demo", "info", "verify", "append", "dump", "tail", "truncate", "purge", "snapshots"] {
        assert!(text(&help.stdout).contains(command), "{command} missing from --help");
    }
}

#[test]
fn dump_ends_quietly_when_its_reader_goes_away() {
    let directory = tempfile::tempdir().unwrap();
    {
        let log = Log::open(directory.path(), small_segments()).unwrap();
        let payload = vec![b'x'; 500];
        for _ in 0..2000 {
            log.append(&NewEvent::new("s", "T", &payload)).unwrap();
        }
    }
    let mut child = Command::new(BIN)
        .args(["dump", path(directory.path())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

/// Found in review: what opening for writing repaired (a torn tail cut) was
/// said nowhere; append (and truncate, purge) now warn on stderr.
#[test]
fn append_warns_about_what_opening_repaired() {
    let directory = tempfile::tempdir().unwrap();
    drop(chronolog_with_input(
        &["append", path(directory.path())],
        &lines(&[json!({"stream": "s", "type": "T", "data": 1})]),
    ));
    // A crash in the middle of the next write: no clean-close index, bytes of
    // an unfinished record after the last one.
    let index = directory.path().join(chronolog::index::segment_index::file_name(0));
    let data_end = chronolog::index::SegmentIndex::peek_data_end(&std::fs::read(&index).unwrap()).unwrap();
    std::fs::remove_file(&index).unwrap();
    let segment = directory.path().join(chronolog::segment::file_name(0));
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0x5a; 10], data_end).unwrap();
    drop(file);

    let output = chronolog_with_input(&["append", path(directory.path())], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let warnings = json_lines(&output.stderr);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["warning"], "torn_tail");
    assert_eq!(warnings[0]["offset"], data_end);
    assert_eq!(warnings[0]["bytes"], 10);
}

/// Damage in the active segment after a crash (no clean-close index) cannot
/// be told from a writer appending by a read-only check: verify names it as
/// an unfinished tail, with file and offset, and the next writable open (here
/// `append`) refuses it.
#[test]
fn verify_names_an_unfinished_tail_and_append_refuses_damage_there() {
    let directory = tempfile::tempdir().unwrap();
    let input = lines(&[
        json!({"stream": "a", "type": "T", "data": "xxxxxxxxxx1"}),
        json!({"stream": "a", "type": "T", "data": "xxxxxxxxxx2"}),
        json!({"stream": "a", "type": "T", "data": "xxxxxxxxxx3"}),
    ]);
    assert!(chronolog_with_input(&["append", path(directory.path())], &input).status.success());
    std::fs::remove_file(directory.path().join(chronolog::index::segment_index::file_name(0))).unwrap();
    let segment = directory.path().join(chronolog::segment::file_name(0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(11).position(|w| w == b"xxxxxxxxxx2").unwrap();
    bytes[at] ^= 1;
    std::fs::write(&segment, bytes).unwrap();

    let output = chronolog(&["verify", path(directory.path()), "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let tail = &report["unfinished_tail"];
    assert!(tail["offset"].as_u64().is_some_and(|offset| offset < at as u64), "{report}");
    assert!(tail["file"].as_str().unwrap().ends_with(".seg"), "{report}");
    let output = chronolog_with_input(&["append", path(directory.path())], "");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(json_lines(&output.stderr)[0]["error"], "corrupted");
}
