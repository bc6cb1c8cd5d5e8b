//! Checks durability against simulated power loss (`PowerLossStorage`): the
//! power goes at every sync point, and at every write, of a small workload in
//! turn (exhaustively), at random sync points and writes of a larger one
//! (seeded; a failing seed is printed and `CHRONOLOG_POWER_SEED` replays
//! it), and at every sync point of a purge and the clean close after it
//! (the manifest, stream tables and the clean-close index are written there),
//! and at seeded sync points of threads appending at once (group commit).
//! After the restart only what was synced is on disk, and the log
//! must hold every event acknowledged with `Durability::Sync`, be a gap-free
//! prefix of what was written (stream versions included), and take appends
//! again. Small segments put segment rolls, stream tables and index files
//! among the crash points. The same cuts run through a CQRS workload whose
//! aggregate and read-model snapshots must never be found damaged or ahead of
//! the log.

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
    takes_appends_again(log, directory.path(), &storage, next);
    used
}

/// `log` (in `directory`) takes 5 more appends after `next`, and a reopen
/// shows them.
fn takes_appends_again(log: Log, directory: &std::path::Path, storage: &PowerLossStorage, next: u64) {
    append_range(&log, next, next + 5, 2);
    drop(log);
    let log = Log::open(directory, options(storage)).unwrap();
    assert_deterministic(&log, next + 5);
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

/// Appends 200 durable events, then loses the power after `cut` more syncs
/// (or never) during a purge and the clean close that follows (which write
/// stream tables, the manifest and the active segment's index), restarts and
/// checks that every event not purged is there. Returns the syncs the purge
/// and the close made.
fn purge_close_and_check(cut: Option<u64>, label: &str) -> u64 {
    const EVENTS: u64 = 200;
    let directory = tempfile::tempdir().unwrap();
    let storage = PowerLossStorage::new();
    let log = Log::open(directory.path(), options(&storage)).unwrap();
    append_range(&log, 0, EVENTS, 3);
    assert!(segment_files(directory.path()).len() >= 4, "{label}: the workload must roll segments");
    let before = storage.syncs();
    if let Some(count) = cut {
        storage.lose_power_after_syncs(count);
    }
    let _ = log.purge_before(EVENTS / 2);
    if cut.is_some() {
        storage.lose_power();
    }
    drop(log);
    let used = storage.syncs() - before;
    storage.restart().unwrap();
    // Opened twice: the first open may take the clean-close path, and its own
    // clean close writes what the crashed one could not.
    for round in 0..2 {
        let log = match Log::open(directory.path(), options(&storage)) {
            Ok(log) => log,
            Err(error) => panic!("{label}: reopen {round} after power loss failed: {error}"),
        };
        assert_deterministic(&log, EVENTS);
        assert!(log.first_position() <= EVENTS / 2, "{label}");
        assert!(log.verify().unwrap().is_clean(), "{label}: {:?}", log.verify().unwrap().problems);
    }
    let log = Log::open(directory.path(), options(&storage)).unwrap();
    takes_appends_again(log, directory.path(), &storage, EVENTS);
    used
}

#[test]
fn power_loss_at_every_sync_point_of_a_purge_and_a_clean_close() {
    let total = purge_close_and_check(None, "no power loss");
    assert!(total > 5, "the purge and the close make {total} syncs");
    for syncs in 0..total {
        purge_close_and_check(Some(syncs), &format!("power lost after {syncs} of {total} syncs"));
    }
}

#[test]
fn power_loss_at_random_sync_points_and_writes_of_a_larger_workload() {
    const EVENTS: u64 = 300;
    let seed: u64 = std::env::var("CHRONOLOG_POWER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("power loss seed: CHRONOLOG_POWER_SEED={seed}");
    let (total_syncs, total_writes) = crash_and_check(EVENTS, Cut::Never, "no power loss");
    let mut state = seed | 1;
    for round in 0..30 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Rounds alternate: the power goes at a sync, then at a write.
        let (cut, label) = if round % 2 == 0 {
            let syncs = state % total_syncs;
            (Cut::AfterSyncs(syncs), format!("power lost after {syncs} syncs"))
        } else {
            let writes = state % total_writes;
            (Cut::AfterWrites(writes), format!("power lost after {writes} writes"))
        };
        crash_and_check(EVENTS, cut, &format!("seed {seed} round {round}: {label}"));
    }
}

/// Group commit under power loss: threads append with `Durability::Sync`,
/// sharing fdatasyncs, until the power goes after a seeded number of syncs.
/// Every event any thread had acknowledged must be there after the restart,
/// each stream a gap-free prefix of what its thread wrote.
#[test]
fn power_loss_during_group_commit_keeps_every_acknowledged_event() {
    const THREADS: usize = 6;
    const APPENDS_PER_THREAD: u64 = 40;
    let seed: u64 = std::env::var("CHRONOLOG_POWER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("group commit power loss seed: CHRONOLOG_POWER_SEED={seed}");
    let payload = |thread: usize, sequence: u64| format!("thread {thread} event {sequence}").into_bytes();
    let mut state = seed | 1;
    for round in 0..12 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let cut = 1 + state % 60;
        let label = format!("seed {seed} round {round}: power lost after {cut} syncs");
        let directory = tempfile::tempdir().unwrap();
        let storage = PowerLossStorage::new();
        storage.lose_power_after_syncs(cut);
        let acknowledged: Vec<u64> = match Log::open(directory.path(), options(&storage)) {
            Err(_) => vec![0; THREADS],
            Ok(log) => {
                let threads: Vec<_> = (0..THREADS)
                    .map(|thread| {
                        let log = log.clone();
                        std::thread::spawn(move || {
                            let stream = format!("thread-{thread}");
                            let mut acknowledged = 0;
                            while acknowledged < APPENDS_PER_THREAD {
                                let bytes = payload(thread, acknowledged);
                                if log.append(&NewEvent::new(&stream, "Happened", &bytes)).is_err() {
                                    break;
                                }
                                acknowledged += 1;
                            }
                            acknowledged
                        })
                    })
                    .collect();
                let acknowledged = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
                storage.lose_power();
                drop(log);
                acknowledged
            }
        };
        storage.restart().unwrap();
        let log = Log::open(directory.path(), options(&storage)).unwrap_or_else(|e| panic!("{label}: reopen: {e}"));
        let view = log.view();
        for (thread, &acked) in acknowledged.iter().enumerate() {
            let events: Vec<_> = view
                .read_stream(&format!("thread-{thread}"), 0)
                .unwrap()
                .map(|event| event.unwrap().to_event())
                .collect();
            assert!(
                events.len() as u64 >= acked,
                "{label}: thread {thread} had {acked} acknowledged, {} left",
                events.len()
            );
            for (sequence, event) in (0u64..).zip(&events) {
                assert_eq!(event.stream_version, sequence, "{label}");
                assert_eq!(event.payload, payload(thread, sequence), "{label}: thread {thread} event {sequence}");
            }
        }
        let positions: Vec<u64> = view.iter().map(|event| event.unwrap().position).collect();
        assert_eq!(positions, (0..log.next_position()).collect::<Vec<_>>(), "{label}: positions with a gap");
    }
}

/// The CQRS workload under power loss: commands through an `AggregateStore`
/// that snapshots every two events, and read-model snapshots every few
/// commands. After a power loss at every sync point and every write in turn,
/// every acknowledged command is in the log, no snapshot is damaged, ahead of
/// the log or half there, and aggregate and read model equal brute force.
mod cqrs_under_power_loss {
    use super::*;
    use chronolog::cqrs::{project_as_of, snapshot_projection_as_of, AggregateStore, AsOf, JsonCodec};
    use chronolog::snapshot::SnapshotStore;
    use common::bank::*;

    const COMMANDS: i64 = 12;

    fn options(storage: &PowerLossStorage, durability: Durability) -> LogOptions {
        // Small segments: the simulated disk copies a file's content at each sync.
        LogOptions::default()
            .segment_capacity_bytes(SMALL_SEGMENT_BYTES)
            .durability(durability)
            .storage(Arc::new(storage.clone()))
    }

    /// Runs the commands until one fails; returns the deposits acknowledged.
    fn run(log: &Log) -> i64 {
        let store = AggregateStore::<Account, _>::new(log, JsonCodec).snapshot_every(2);
        if store.execute("1", &AccountCommand::Open).is_err() {
            return 0;
        }
        let mut acknowledged = 0;
        for amount in 1..=COMMANDS {
            if store.execute("1", &AccountCommand::Deposit(amount)).is_err() {
                break;
            }
            acknowledged = amount;
            if amount % 3 == 0
                && snapshot_projection_as_of::<Balances>(log, &SnapshotStore::open(log), AsOf::Now).is_err()
            {
                break;
            }
        }
        acknowledged
    }

    /// With `Durability::None` nothing is promised of the commands, but
    /// snapshots (made after a sync) must still never outrun the log.
    fn crash_and_check(durability: Durability, cut: Cut, label: &str) -> (u64, u64) {
        let directory = tempfile::tempdir().unwrap();
        let storage = PowerLossStorage::new();
        match cut {
            Cut::Never => {}
            Cut::AfterSyncs(count) => storage.lose_power_after_syncs(count),
            Cut::AfterWrites(count) => storage.lose_power_after_writes(count),
        }
        let mut acknowledged = 0;
        if let Ok(log) = Log::open(directory.path(), options(&storage, durability)) {
            acknowledged = run(&log);
            storage.lose_power();
            drop(log);
        }
        let used = (storage.syncs(), storage.writes());
        storage.restart().unwrap();
        let log = Log::open(directory.path(), options(&storage, durability))
            .unwrap_or_else(|e| panic!("{label}: reopen: {e}"));
        let store = AggregateStore::<Account, _>::new(&log, JsonCodec);
        let loaded = store.load("1").unwrap_or_else(|e| panic!("{label}: load: {e}"));
        assert!(loaded.report.skipped.is_empty(), "{label}: skipped {:?}", loaded.report.skipped);
        let deposits: i64 = (1..=COMMANDS).take_while(|&n| n * (n + 1) / 2 <= loaded.state.balance).last().unwrap_or(0);
        assert_eq!(loaded.state.balance, deposits * (deposits + 1) / 2, "{label}: deposits in order, none twice");
        if durability == Durability::Sync {
            assert!(deposits >= acknowledged, "{label}: {acknowledged} deposits acknowledged, {deposits} in the log");
        }
        let events = read_all(&log);
        assert_eq!(loaded.state.events, events.len() as u64, "{label}");
        let (balances, report) = project_as_of::<Balances>(&log, &SnapshotStore::open(&log), AsOf::Now).unwrap();
        assert!(report.skipped.is_empty(), "{label}: skipped {:?}", report.skipped);
        assert_eq!(balances, brute_force_balances(&events, log.next_position()), "{label}");
        let leftovers = SnapshotStore::open(&log).verify().unwrap();
        assert!(leftovers.is_empty(), "{label}: damaged snapshot files {leftovers:?}");
        used
    }

    #[test]
    fn power_loss_at_every_sync_and_every_write_of_a_cqrs_workload() {
        for durability in [Durability::Sync, Durability::None] {
            let (syncs, writes) = crash_and_check(durability, Cut::Never, "no power loss");
            assert!(syncs > 10 && writes > 20, "the workload makes {syncs} syncs and {writes} writes");
            for count in 0..syncs {
                let label = format!("{durability:?}: power lost after {count} of {syncs} syncs");
                crash_and_check(durability, Cut::AfterSyncs(count), &label);
            }
            for count in 0..writes {
                let label = format!("{durability:?}: power lost after {count} of {writes} writes");
                crash_and_check(durability, Cut::AfterWrites(count), &label);
            }
        }
    }
}
