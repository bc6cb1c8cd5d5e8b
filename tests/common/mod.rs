//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod bank;
pub mod hooked;

use chronolog::{Durability, Event, Log, LogOptions, NewEvent};

/// Small segments so that a few hundred events span several of them.
pub const SMALL_SEGMENT_BYTES: u64 = 4096;

pub fn small_options() -> LogOptions {
    LogOptions::default().segment_capacity_bytes(SMALL_SEGMENT_BYTES).durability(Durability::None)
}

/// The stream of the event at `position` in the deterministic workloads.
pub fn stream_of(position: u64) -> String {
    format!("stream-{}", position % 7)
}

/// The payload of the event at `position`: its length varies with the position.
pub fn payload_of(position: u64) -> Vec<u8> {
    let text = format!("payload-{position};");
    text.repeat(1 + (position % 5) as usize).into_bytes()
}

/// Appends the deterministic events `from..to` in batches of `batch`.
pub fn append_range(log: &Log, from: u64, to: u64, batch: u64) {
    let mut position = from;
    while position < to {
        let end = (position + batch).min(to);
        let streams: Vec<String> = (position..end).map(stream_of).collect();
        let payloads: Vec<Vec<u8>> = (position..end).map(payload_of).collect();
        let events: Vec<NewEvent<'_>> =
            streams.iter().zip(&payloads).map(|(stream, payload)| NewEvent::new(stream, "Happened", payload)).collect();
        let appended = log.append_batch(&events).expect("append");
        assert_eq!(appended[0].position, position);
        position = end;
    }
}

/// Reads every event of the log (owned copies).
pub fn read_all(log: &Log) -> Vec<Event> {
    log.view().iter().map(|event| event.expect("read").to_event()).collect()
}

/// Checks that the log holds exactly the deterministic events
/// `first..next` with stream versions counted from position 0.
pub fn assert_deterministic(log: &Log, next: u64) {
    let events = read_all(log);
    assert_eq!(log.next_position(), next, "next position");
    let first = log.first_position();
    assert_eq!(events.len() as u64, next - first, "event count");
    for (index, event) in events.iter().enumerate() {
        let position = first + index as u64;
        assert_eq!(event.position, position);
        assert_eq!(event.stream, stream_of(position), "stream at {position}");
        assert_eq!(event.payload, payload_of(position), "payload at {position}");
        assert_eq!(event.stream_version, position / 7, "version at {position}");
    }
}

/// Segment files of a directory, sorted.
pub fn segment_files(directory: &Path) -> Vec<PathBuf> {
    files_with_extension(directory, "seg")
}

/// The files of a directory with this extension (`seg`, `streams`, `idx`),
/// sorted (so oldest first, for the log's numbered files).
pub fn files_with_extension(directory: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// Copies a log directory (files only, no subfolders).
pub fn copy_directory(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// A child process running one ignored test of the current test binary (the
/// crash tests' writer), with the lines it prints that start with `ack `
/// arriving on a channel.
pub struct AckingChild {
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<()>>,
    pub acks: std::sync::mpsc::Receiver<String>,
}

impl AckingChild {
    /// Runs `test` (an `#[ignore]`d test of this binary) with `env` set to
    /// `directory`.
    pub fn spawn(test: &str, env: &str, directory: &Path) -> AckingChild {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--ignored", "--nocapture", "--test-threads=1"])
            .env(env, directory)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, acks) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ack) = line.strip_prefix("ack ") {
                    let _ = sender.send(ack.to_owned());
                }
            }
        });
        AckingChild { child, reader: Some(reader), acks }
    }

    /// SIGKILLs the child and waits for it and for its output to end.
    pub fn kill(mut self) -> std::sync::mpsc::Receiver<String> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.acks
    }
}

/// `options` over a fresh `FaultyStorage`, with the plan that arms its faults.
pub fn with_faults(options: LogOptions) -> (LogOptions, std::sync::Arc<chronolog::storage::FaultPlan>) {
    let storage = chronolog::storage::FaultyStorage::new();
    let plan = storage.plan();
    (options.storage(std::sync::Arc::new(storage)), plan)
}
