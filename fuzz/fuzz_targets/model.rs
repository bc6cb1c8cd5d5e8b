//! Model-based: random sequences of append, batch append, read, time seek,
//! stream read, truncate, purge, snapshot, reopen and power loss, run on a real log over
//! `PowerLossStorage` and checked after every step against a `Vec` of the
//! events acknowledged. With `Durability::Sync` every acknowledged event must
//! survive a power loss; the batch being written when the power went may or
//! may not. Snapshots (of a stream's event count) must never be found when
//! the log no longer holds the events they were made from.
#![no_main]

use std::sync::Arc;

use chronolog::snapshot::{SnapshotBound, SnapshotMeta, SnapshotStore};
use chronolog::storage::PowerLossStorage;
use chronolog::{Durability, Log, LogOptions, NewEvent};
use libfuzzer_sys::fuzz_target;

#[derive(Clone)]
struct Written {
    stream: String,
    payload: Vec<u8>,
    timestamp_ns: u64,
}

fn options(storage: &PowerLossStorage) -> LogOptions {
    LogOptions::default()
        .segment_capacity_bytes(4096)
        .index_interval_bytes(300)
        .durability(Durability::Sync)
        .storage(Arc::new(storage.clone()))
}

/// The log must hold exactly the model's events from its first position on.
fn check(log: &Log, model: &[Written], first: u64) {
    assert_eq!(log.next_position(), model.len() as u64, "next position");
    assert_eq!(log.first_position(), first, "first position");
    let view = log.view();
    for (index, event) in view.iter().enumerate() {
        let event = event.expect("forward read");
        let expected = &model[first as usize + index];
        assert_eq!(event.stream, expected.stream);
        assert_eq!(event.payload, &expected.payload[..]);
        assert_eq!(event.timestamp_ns, expected.timestamp_ns);
    }
    // Whatever snapshot a lookup returns must describe the model's events.
    let store = SnapshotStore::open(log);
    for stream in 0..5 {
        let stream = format!("s-{stream}");
        let found = store.find(&format!("count-{stream}"), SnapshotBound::Latest, 1, &view).expect("find");
        let Some(snapshot) = found.snapshot else { continue };
        let next = snapshot.meta.next_position as usize;
        assert!(next <= model.len(), "a snapshot ahead of the log was used");
        let count = model[..next].iter().filter(|w| w.stream == stream).count() as u64;
        assert_eq!(snapshot.payload(), count.to_le_bytes(), "snapshot of {stream} at {next}");
        assert_eq!(snapshot.meta.version, count);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(directory) = tempfile::tempdir() else { return };
    let storage = PowerLossStorage::new();
    let Ok(mut log) = Log::open(directory.path(), options(&storage)) else { return };
    let mut model: Vec<Written> = Vec::new();
    let mut first = 0u64;
    let mut clock = 1_000u64;
    for step in data.chunks_exact(3).take(64) {
        let (operation, a, b) = (step[0] % 11, step[1], step[2]);
        match operation {
            0..=3 => {
                let count = 1 + usize::from(a % 4);
                let mut batch = Vec::new();
                for i in 0..count {
                    clock += u64::from(b % 3);
                    let stream = format!("s-{}", (usize::from(a) + i) % 5);
                    batch.push(Written { stream, payload: vec![b; usize::from(b) * 3 % 400], timestamp_ns: clock });
                }
                let events: Vec<NewEvent<'_>> = batch
                    .iter()
                    .map(|w| NewEvent::new(&w.stream, "E", &w.payload).with_timestamp_ns(w.timestamp_ns))
                    .collect();
                log.append_batch(&events).expect("append with the power on");
                model.extend(batch);
            }
            4 => {
                if let Some(position) = (model.len() as u64).checked_sub(1 + u64::from(a) % 5).filter(|&p| p >= first) {
                    let event = log.read(position).expect("read").expect("present");
                    assert_eq!(event.payload, model[position as usize].payload);
                }
            }
            5 => {
                let view = log.view();
                let time = 1_000 + u64::from(a) * 4;
                let expected =
                    model.iter().enumerate().skip(first as usize).rev().find(|(_, w)| w.timestamp_ns <= time);
                assert_eq!(view.position_at(time).expect("seek"), expected.map(|(p, _)| p as u64));
                let stream = format!("s-{}", a % 5);
                let from = u64::from(b % 8);
                let count = view.read_stream(&stream, from).expect("stream").map(|e| e.expect("event")).count();
                let all = model.iter().filter(|w| w.stream == stream).count() as u64;
                let purged = model[..first as usize].iter().filter(|w| w.stream == stream).count() as u64;
                assert_eq!(count as u64, all.saturating_sub(from.max(purged)));
            }
            6 => {
                let length = model.len() as u64;
                if length > first {
                    let position = first + u64::from(a) % (length - first);
                    log.truncate_after(position).expect("truncate");
                    model.truncate(position as usize + 1);
                    // Clocks move on: an event written after the cut never
                    // has the timestamp of one cut (snapshots rely on it).
                    clock += 1;
                }
            }
            7 => {
                let position = u64::from(a) * 2;
                let before = first;
                log.purge_before(position).expect("purge");
                first = log.first_position();
                assert!(
                    first == before || (first > before && first <= position),
                    "purge moved the start past {position}"
                );
            }
            10 => {
                let stream = format!("s-{}", a % 5);
                if let Some(last) = (model.len() as u64).checked_sub(1).filter(|&p| p >= first) {
                    let next = last as usize + 1;
                    let count = model[..next].iter().filter(|w| w.stream == stream).count() as u64;
                    let meta = SnapshotMeta {
                        name: format!("count-{stream}"),
                        next_position: next as u64,
                        timestamp_ns: model[last as usize].timestamp_ns,
                        version: count,
                        schema_version: 1,
                    };
                    SnapshotStore::open(&log)
                        .keep_last(1 + usize::from(b % 3))
                        .write_anchored(&meta, &count.to_le_bytes(), &log.view())
                        .expect("snapshot");
                }
            }
            8 => {
                drop(log);
                log = Log::open(directory.path(), options(&storage)).expect("reopen");
            }
            _ => {
                // Power loss at one of the next syncs of an append.
                storage.lose_power_after_syncs(u64::from(a % 4));
                let stream = format!("s-{}", b % 5);
                clock += 1;
                let extra = Written { stream, payload: vec![a; 10], timestamp_ns: clock };
                let appended =
                    log.append(&NewEvent::new(&extra.stream, "E", &extra.payload).with_timestamp_ns(clock)).is_ok();
                storage.lose_power();
                drop(log);
                storage.restart().expect("restart");
                log = Log::open(directory.path(), options(&storage)).expect("open after power loss");
                // Acknowledged means durable; an append that failed may still
                // have reached the disk before its sync failed.
                if appended || log.next_position() == model.len() as u64 + 1 {
                    model.push(extra);
                }
            }
        }
        check(&log, &model, first);
    }
});
