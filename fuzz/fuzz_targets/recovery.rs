//! Recovery against damaged directories: a real log is written (with two
//! snapshots per stream of its event count), then the input damages its
//! files, snapshot files included (flips, zeroed ranges, cuts, deleted
//! files) and
//! adds files of its own (a TRUNCATE marker, a copy of a file under a
//! segment's name, a stray temporary), then the log is opened in every
//! recovery mode, read forwards, backwards and by stream, and verified. It
//! must return a typed error or a log whose every event equals, field by
//! field, the one written at that position: never a panic, never a wrong
//! event, and never a snapshot that disagrees with the events it is found
//! for.
#![no_main]

use std::path::PathBuf;

use chronolog::segment::truncate_marker;
use chronolog::snapshot::{SnapshotBound, SnapshotMeta, SnapshotStore};
use chronolog::{Durability, Event, EventRef, Log, LogOptions, NewEvent, RecoveryMode};
use libfuzzer_sys::fuzz_target;

const EVENTS: u64 = 120;
const STREAMS: u64 = 5;

fn options() -> LogOptions {
    LogOptions::default().segment_capacity_bytes(4096).index_interval_bytes(256).durability(Durability::None)
}

/// Stream, payload, metadata and timestamp of the event written at `position`.
fn written(position: u64) -> (String, Vec<u8>, [u8; 1], u64) {
    let stream = format!("stream-{}", position % STREAMS);
    (stream, vec![position as u8; (position % 90) as usize], [position as u8 ^ 0x5a], 1_000 + position * 10)
}

fn snapshot_name(stream: u64) -> String {
    format!("count-stream-{stream}")
}

/// Snapshots of every stream's event count at the log's end.
fn write_snapshots(log: &Log) -> chronolog::Result<()> {
    let store = SnapshotStore::open(log).keep_last(2);
    let view = log.view();
    let next = view.next_position();
    for stream in 0..STREAMS {
        let count = (0..next).filter(|p| p % STREAMS == stream).count() as u64;
        let meta = SnapshotMeta {
            name: snapshot_name(stream),
            next_position: next,
            timestamp_ns: log.last_timestamp_ns(),
            version: count,
            schema_version: 1,
        };
        store.write_anchored(&meta, &count.to_le_bytes(), &view)?;
    }
    Ok(())
}

fn check_event(event: &EventRef<'_>) {
    assert!(event.position < EVENTS, "an event at {} was never written", event.position);
    let (stream, payload, metadata, timestamp_ns) = written(event.position);
    assert_eq!(event.stream, stream, "stream at {}", event.position);
    assert_eq!(event.stream_version, event.position / STREAMS, "version at {}", event.position);
    assert_eq!(event.event_type, "E", "type at {}", event.position);
    assert_eq!(event.metadata, &metadata[..], "metadata at {}", event.position);
    assert_eq!(event.payload, &payload[..], "payload at {}", event.position);
    assert_eq!(event.timestamp_ns, timestamp_ns, "timestamp at {}", event.position);
}

fn check(log: &Log) {
    let view = log.view();
    let mut previous = None;
    for event in view.iter().take(200) {
        let Ok(event) = event else { break };
        check_event(&event);
        assert!(previous.is_none_or(|p| p + 1 == event.position), "positions in order, without a gap");
        previous = Some(event.position);
    }
    for event in view.iter_rev().take(200) {
        let Ok(event) = event else { break };
        check_event(&event);
    }
    for stream in 0..STREAMS {
        let Ok(iter) = view.read_stream(&format!("stream-{stream}"), 0) else { continue };
        for event in iter.take(100) {
            let Ok(event) = event else { break };
            assert_eq!(event.position % STREAMS, stream, "a stream read returned another stream's event");
            check_event(&event);
        }
    }
    if let Ok(Some(position)) = view.position_at(1_000 + 600) {
        assert!(position < EVENTS);
    }
    // A snapshot found describes the log's events before its position:
    // stream k's count of events is the positions below it that are k mod 5.
    let store = SnapshotStore::open(log);
    for stream in 0..STREAMS {
        let Ok(found) = store.find(&snapshot_name(stream), SnapshotBound::Latest, 1, &view) else { continue };
        let Some(snapshot) = found.snapshot else { continue };
        let next = snapshot.meta.next_position;
        assert!(next <= view.next_position(), "a snapshot at {next}, past the log's end");
        let count = (0..next).filter(|p| p % STREAMS == stream).count() as u64;
        assert_eq!(snapshot.payload(), count.to_le_bytes(), "snapshot of stream {stream} at {next}");
    }
    let _ = log.verify();
    if let Ok(Some(event)) = log.read(3) {
        let event: Event = event;
        check_event(&event.as_event_ref());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(directory) = tempfile::tempdir() else { return };
    {
        let Ok(log) = Log::open(directory.path(), options()) else { return };
        for position in 0..EVENTS {
            let (stream, payload, metadata, timestamp_ns) = written(position);
            let event = NewEvent::new(&stream, "E", &payload).with_metadata(&metadata).with_timestamp_ns(timestamp_ns);
            if log.append(&event).is_err() {
                return;
            }
            if (position == 40 || position == EVENTS - 1) && write_snapshots(&log).is_err() {
                return;
            }
        }
    }
    // The log's files, then the snapshot files (in their folders).
    let files_in = |folder: &std::path::Path| -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        files
    };
    let mut files: Vec<PathBuf> = files_in(directory.path()).into_iter().filter(|p| p.is_file()).collect();
    for folder in files_in(&directory.path().join("snapshots")) {
        files.extend(files_in(&folder));
    }
    // Each 6 input bytes: file, operation, offset (u16), value, length.
    for chunk in data.chunks_exact(6) {
        let Some(path) = files.get(chunk[0] as usize % files.len().max(1)).cloned() else { return };
        let offset_field = u16::from_le_bytes([chunk[2], chunk[3]]);
        match chunk[1] % 7 {
            // A truncation that a crash interrupted: the open must finish it.
            4 => {
                let marker = truncate_marker::encode(u64::from(offset_field) % (EVENTS + 10));
                let _ = std::fs::write(directory.path().join(truncate_marker::TRUNCATE_MARKER_FILE_NAME), marker);
                continue;
            }
            // A file copied under the name of a segment starting elsewhere.
            5 => {
                let name = format!("{:020}.seg", u64::from(offset_field) % (EVENTS + 10));
                let _ = std::fs::copy(&path, directory.path().join(name));
                continue;
            }
            // A temporary left by a crash during an atomic write.
            6 => {
                let Some(name) = path.file_name() else { continue };
                let mut temporary = name.to_owned();
                temporary.push(".tmp");
                let _ = std::fs::copy(&path, directory.path().join(temporary));
                continue;
            }
            _ => {}
        }
        let Ok(mut bytes) = std::fs::read(&path) else { continue };
        if bytes.is_empty() {
            continue;
        }
        let offset = offset_field as usize % bytes.len();
        match chunk[1] % 7 {
            0 => bytes[offset] ^= chunk[4] | 1,
            1 => {
                let end = (offset + chunk[5] as usize).min(bytes.len());
                bytes[offset..end].fill(0);
            }
            2 => bytes.truncate(offset),
            _ => {
                let _ = std::fs::remove_file(&path);
                continue;
            }
        }
        let _ = std::fs::write(&path, &bytes);
    }
    for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::Strict, RecoveryMode::Salvage] {
        if let Ok(log) = Log::open_read_only(directory.path(), options().recovery_mode(mode)) {
            check(&log);
        }
        if let Ok(log) = Log::open(directory.path(), options().recovery_mode(mode)) {
            check(&log);
        }
    }
});
