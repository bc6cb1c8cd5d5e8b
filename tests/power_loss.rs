//! Checks durability against simulated power loss (`PowerLossStorage`): the
//! power goes at every sync point, and at every write, of a small workload in
//! turn (exhaustively),
//! and at random sync points of a larger one (seeded; a failing seed is
//! printed). After the restart only what was synced is on disk, and the log
//! must hold every event acknowledged with `Durability::Sync`, be a gap-free
//! prefix of what was written (stream versions included), and take appends
//! again. Small segments put segment rolls, stream tables and index files
//! among the crash points.

mod common;

use std::sync::Arc;

use chronolog::storage::PowerLossStorage;
use chronolog::{Durability, Log, LogOptions, NewEvent};
use common::*;

fn options(storage: &PowerLossStorage) -> LogOptions {
    LogOptions::default()
        .segment_capacity_bytes(SMALL_SEGMENT_BYTES)
        .durability(Durability::Sync)
        .storage(Arc::new(storage.clone()))
}

/// Appends the deterministic events `0..events` in batches of 1 to 3 until an
/// append fails; returns how many were acknowledged.
fn run_until_failure(log: &Log, events: u64) -> u64 {
    let mut position = 0;
    let mut batch = 1;
    while position < events {
        let end = (position + batch).min(events);
        let streams: Vec<String> = (position..end).map(stream_of).collect();
        let payloads: Vec<Vec<u8>> = (position..end).map(payload_of).collect();
        let batch_events: Vec<NewEvent<'_>> =
            streams.iter().zip(&payloads).map(|(stream, payload)| NewEvent::new(stream, "Happened", payload)).collect();
        if log.append_batch(&batch_events).is_err() {
            break;
        }
        position = end;
        batch = batch % 3 + 1;
    }
    position
}

/// Where the power goes.
#[derive(Clone, Copy)]
enum Cut {
    Never,
    AfterSyncs(u64),
    AfterWrites(u64),
}

/// Runs the workload with the power lost at `cut`, restarts, and checks the
/// log. Returns the syncs and writes the run made.
fn crash_and_check(events: u64, cut: Cut, label: &str) -> (u64, u64) {
    let directory = tempfile::tempdir().unwrap();
    let storage = PowerLossStorage::new();
    let syncs = match cut {
        Cut::Never => None,
        Cut::AfterSyncs(count) => {
            storage.lose_power_after_syncs(count);
            Some(count)
        }
        Cut::AfterWrites(count) => {
            storage.lose_power_after_writes(count);
            Some(count)
        }
    };
    let mut acknowledged = 0;
    if let Ok(log) = Log::open(directory.path(), options(&storage)) {
        acknowledged = run_until_failure(&log, events);
        if syncs.is_some() {
            storage.lose_power();
        }
        // Dropped with the power out: the clean close cannot write anything.
        drop(log);
    }
    let used = (storage.syncs(), storage.writes());
    storage.restart().unwrap();
    let log = match Log::open(directory.path(), options(&storage)) {
        Ok(log) => log,
        Err(error) => panic!("{label}: reopen after power loss failed: {error}"),
    };
    let next = log.next_position();
    if syncs.is_none() {
        assert!(segment_files(directory.path()).len() >= 2, "{label}: the workload must roll a segment");
    }
    assert!(next >= acknowledged, "{label}: {acknowledged} events were acknowledged, the log ends at {next}");
    assert_deterministic(&log, next);
    assert!(log.verify().unwrap().problems.iter().all(|p| !p.to_string().contains(".seg")), "{label}");
    append_range(&log, next, next + 5, 2);
    drop(log);
    let log = Log::open(directory.path(), options(&storage)).unwrap();
    assert_deterministic(&log, next + 5);
    used
}

#[test]
fn power_loss_at_every_sync_point_of_a_small_workload() {
    const EVENTS: u64 = 60;
    let (total, _) = crash_and_check(EVENTS, Cut::Never, "no power loss");
    assert!(total > 30, "the workload makes {total} syncs");
    for syncs in 0..total {
        crash_and_check(EVENTS, Cut::AfterSyncs(syncs), &format!("power lost after {syncs} of {total} syncs"));
    }
}

#[test]
fn power_loss_at_every_write_of_a_small_workload() {
    const EVENTS: u64 = 60;
    let (_, total) = crash_and_check(EVENTS, Cut::Never, "no power loss");
    assert!(total > 30, "the workload makes {total} writes");
    for writes in 0..total {
        crash_and_check(EVENTS, Cut::AfterWrites(writes), &format!("power lost after {writes} of {total} writes"));
    }
}

#[test]
fn power_loss_at_random_sync_points_of_a_larger_workload() {
    const EVENTS: u64 = 300;
    let seed: u64 = std::env::var("CHRONOLOG_POWER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("power loss seed: CHRONOLOG_POWER_SEED={seed}");
    let (total, _) = crash_and_check(EVENTS, Cut::Never, "no power loss");
    let mut state = seed | 1;
    for round in 0..20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let syncs = state % total;
        crash_and_check(
            EVENTS,
            Cut::AfterSyncs(syncs),
            &format!("seed {seed} round {round}: power lost after {syncs} syncs"),
        );
    }
}
