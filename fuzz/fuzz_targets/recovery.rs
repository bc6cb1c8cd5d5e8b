//! Recovery against damaged directories: a real log is written, then the
//! input damages its files (flips, zeroed ranges, cuts, deleted files), then
//! the log is opened in every recovery mode, read both ways and verified. It
//! must return a typed error or a log whose every event equals the one
//! written at that position: never a panic, never a wrong event.
#![no_main]

use std::path::PathBuf;

use chronolog::{Durability, Event, Log, LogOptions, NewEvent, RecoveryMode};
use libfuzzer_sys::fuzz_target;

fn options() -> LogOptions {
    LogOptions::default().segment_capacity_bytes(4096).index_interval_bytes(256).durability(Durability::None)
}

fn written(position: u64) -> (String, Vec<u8>) {
    (format!("stream-{}", position % 5), vec![position as u8; (position % 90) as usize])
}

fn check(log: &Log) {
    let view = log.view();
    let check_event = |event: &chronolog::EventRef<'_>| {
        let (stream, payload) = written(event.position);
        assert_eq!(event.stream, stream);
        assert_eq!(event.payload, &payload[..]);
    };
    for event in view.iter().take(200) {
        match event {
            Ok(event) => check_event(&event),
            Err(_) => break,
        }
    }
    for event in view.iter_rev().take(200) {
        match event {
            Ok(event) => check_event(&event),
            Err(_) => break,
        }
    }
    for stream in 0..5 {
        if let Ok(iter) = view.read_stream(&format!("stream-{stream}"), 0) {
            for event in iter.take(100) {
                match event {
                    Ok(event) => check_event(&event),
                    Err(_) => break,
                }
            }
        }
    }
    let _ = view.position_at(u64::MAX / 2);
    let _ = log.verify();
    let _: Option<Event> = log.read(3).ok().flatten();
}

fuzz_target!(|data: &[u8]| {
    let Ok(directory) = tempfile::tempdir() else { return };
    {
        let Ok(log) = Log::open(directory.path(), options()) else { return };
        for position in 0..120u64 {
            let (stream, payload) = written(position);
            if log.append(&NewEvent::new(&stream, "E", &payload)).is_err() {
                return;
            }
        }
    }
    let mut files: Vec<PathBuf> = match std::fs::read_dir(directory.path()) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect(),
        Err(_) => return,
    };
    files.sort();
    // Each 6 input bytes: file, operation, offset (u16), value, length.
    for chunk in data.chunks_exact(6) {
        let Some(path) = files.get(chunk[0] as usize % files.len().max(1)) else { return };
        let Ok(mut bytes) = std::fs::read(path) else { continue };
        if bytes.is_empty() {
            continue;
        }
        let offset = u16::from_le_bytes([chunk[2], chunk[3]]) as usize % bytes.len();
        match chunk[1] % 4 {
            0 => bytes[offset] ^= chunk[4] | 1,
            1 => {
                let end = (offset + chunk[5] as usize).min(bytes.len());
                bytes[offset..end].fill(0);
            }
            2 => bytes.truncate(offset),
            _ => {
                let _ = std::fs::remove_file(path);
                continue;
            }
        }
        let _ = std::fs::write(path, &bytes);
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
