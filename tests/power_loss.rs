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
    let seed = power_seed("power loss");
    let (total_syncs, total_writes) = crash_and_check(EVENTS, Cut::Never, "no power loss");
    let mut state = seed | 1;
    for round in 0..30 {
        let random = xorshift(&mut state);
        // Rounds alternate: the power goes at a sync, then at a write.
        let (cut, label) = if round % 2 == 0 {
            let syncs = random % total_syncs;
            (Cut::AfterSyncs(syncs), format!("power lost after {syncs} syncs"))
        } else {
            let writes = random % total_writes;
            (Cut::AfterWrites(writes), format!("power lost after {writes} writes"))
        };
        crash_and_check(EVENTS, cut, &format!("seed {seed} round {round}: {label}"));
    }
}

/// The seed of a seeded power-loss test: `CHRONOLOG_POWER_SEED` replays one,
/// else the clock's; printed, so that a failure can be replayed.
fn power_seed(test: &str) -> u64 {
    let seed = std::env::var("CHRONOLOG_POWER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{test} seed: CHRONOLOG_POWER_SEED={seed}");
    seed
}

/// The next number of a xorshift sequence (`state` must not be zero).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Group commit under power loss: threads append with `Durability::Sync`,
/// sharing fdatasyncs, until the power goes after a seeded number of syncs.
/// Every event any thread had acknowledged must be there after the restart,
/// each stream a gap-free prefix of what its thread wrote.
#[test]
fn power_loss_during_group_commit_keeps_every_acknowledged_event() {
    const THREADS: usize = 6;
    const APPENDS_PER_THREAD: u64 = 40;
    let seed = power_seed("group commit power loss");
    let payload = |thread: usize, sequence: u64| format!("thread {thread} event {sequence}").into_bytes();
    let mut state = seed | 1;
    for round in 0..12 {
        let cut = 1 + xorshift(&mut state) % 60;
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

/// Group commit, truncations and power loss: threads append with
/// `Durability::Sync` while another thread truncates the tail a few times,
/// then the power goes after a seeded number of syncs. A truncation ends the
/// sync waits of the tail it cuts; an fdatasync that started before it must
/// not count the positions appended after it as durable. Every event
/// acknowledged after the last truncation must be there after the restart,
/// at the position it was given, and what is there must be whole.
#[test]
fn power_loss_after_truncations_under_group_commit_keeps_every_acknowledged_event() {
    const THREADS: usize = 4;
    const APPENDS_PER_THREAD: u64 = 2_000;
    let seed = power_seed("truncation power loss");
    let payload = |thread: usize, sequence: u64| format!("thread {thread} event {sequence}").into_bytes();
    let mut state = seed | 1;
    for round in 0..8 {
        let cut = 50 + xorshift(&mut state) % 400;
        let label = format!("seed {seed} round {round}: power lost after {cut} syncs");
        let directory = tempfile::tempdir().unwrap();
        let storage = PowerLossStorage::new();
        storage.lose_power_after_syncs(cut);
        let Ok(log) = Log::open(directory.path(), options(&storage)) else { continue };
        let truncating = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let maintenance = {
            let (log, truncating, storage) = (log.clone(), Arc::clone(&truncating), storage.clone());
            std::thread::spawn(move || {
                for k in 0..5u64 {
                    std::thread::sleep(std::time::Duration::from_micros(300));
                    let next = log.next_position();
                    if next > 10 {
                        // After the power went, a truncation fails like any write.
                        let _ = log.truncate_after(next - 1 - (k * 3) % 8);
                    }
                }
                truncating.store(false, std::sync::atomic::Ordering::SeqCst);
                // An append right after the last cut, into positions the cut
                // freed, and the power goes as soon as it is acknowledged.
                let probe = log.append(&NewEvent::new("probe", "Happened", b"after the cuts")).ok();
                if round % 2 == 0 {
                    storage.lose_power();
                }
                probe.map(|appended| appended.position)
            })
        };
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (log, truncating) = (log.clone(), Arc::clone(&truncating));
                std::thread::spawn(move || {
                    let stream = format!("thread-{thread}");
                    // (position, sequence) of each append acknowledged after
                    // the last truncation had returned.
                    let mut kept = Vec::new();
                    for sequence in 0..APPENDS_PER_THREAD {
                        let after = !truncating.load(std::sync::atomic::Ordering::SeqCst);
                        if kept.len() >= 20 {
                            break;
                        }
                        let bytes = payload(thread, sequence);
                        match log.append(&NewEvent::new(&stream, "Happened", &bytes)) {
                            Ok(appended) if after => kept.push((appended.position, sequence)),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    kept
                })
            })
            .collect();
        let kept: Vec<Vec<(u64, u64)>> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
        let probe = maintenance.join().unwrap();
        eprintln!("{label}: {} acknowledged after the truncations", kept.iter().map(Vec::len).sum::<usize>());
        storage.lose_power();
        drop(log);
        storage.restart().unwrap();
        let log = Log::open(directory.path(), options(&storage)).unwrap_or_else(|e| panic!("{label}: reopen: {e}"));
        let events: Vec<_> = log.view().iter().map(|event| event.unwrap().to_event()).collect();
        let positions: Vec<u64> = events.iter().map(|event| event.position).collect();
        assert_eq!(positions, (0..log.next_position()).collect::<Vec<_>>(), "{label}: positions with a gap");
        for (thread, kept) in kept.iter().enumerate() {
            for &(position, sequence) in kept {
                let event = events.get(position as usize);
                assert!(
                    event.is_some_and(|event| event.payload == payload(thread, sequence)),
                    "{label}: thread {thread} event {sequence}, acknowledged at {position}, lost"
                );
            }
        }
        if let Some(position) = probe {
            let event = events.get(position as usize);
            assert!(event.is_some_and(|event| event.stream == "probe"), "{label}: the probe at {position} lost");
        }
        let mut versions = std::collections::HashMap::new();
        for event in &events {
            if let Some(previous) = versions.insert(event.stream.clone(), event.stream_version) {
                assert_eq!(event.stream_version, previous + 1, "{label}: {} has a gap", event.stream);
            }
        }
    }
}

/// A gate on `sync_data`: the next call after [`SyncGate::hold_next`] tells
/// the test it has started and waits for [`SyncGate::release`] (a race made
/// to happen on cue). Put on files through a `HookedStorage` hook.
mod sync_gate {
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub struct SyncGate {
        /// Set by `hold_next`: where to say "started", and what to wait on.
        armed: Mutex<Option<(Sender<()>, Receiver<()>)>>,
        release: Mutex<Option<Sender<()>>>,
    }

    impl SyncGate {
        /// Holds the next `sync_data`; the receiver hears when it starts.
        pub fn hold_next(&self) -> Receiver<()> {
            let (started_tx, started_rx) = channel();
            let (release_tx, release_rx) = channel();
            *self.armed.lock().unwrap() = Some((started_tx, release_rx));
            *self.release.lock().unwrap() = Some(release_tx);
            started_rx
        }

        /// Lets the held `sync_data` go on.
        pub fn release(&self) {
            if let Some(release) = self.release.lock().unwrap().take() {
                let _ = release.send(());
            }
        }

        /// Called by each `sync_data`: waits there if the gate is armed.
        pub fn pass(&self) {
            let armed = self.armed.lock().unwrap().take();
            if let Some((started, release)) = armed {
                let _ = started.send(());
                let _ = release.recv();
            }
        }
    }
}

/// An fdatasync that started before a truncation finishes after it: it
/// covered the old tail, not the positions the cut frees and the next
/// appends reuse. The append right after the cut must make its own
/// fdatasync, and survive a power loss the moment it is acknowledged.
#[test]
fn an_fsync_from_before_a_truncation_does_not_cover_the_appends_after_it() {
    let directory = tempfile::tempdir().unwrap();
    let power = PowerLossStorage::new();
    let gate = Arc::new(sync_gate::SyncGate::default());
    let storage = common::hooked::HookedStorage {
        inner: Arc::new(power.clone()),
        sync_data: Some({
            let gate = Arc::clone(&gate);
            Arc::new(move |_: &std::path::Path| gate.pass())
        }),
        ..Default::default()
    };
    let options = LogOptions::default()
        .segment_capacity_bytes(SMALL_SEGMENT_BYTES)
        .durability(Durability::Sync)
        .storage(Arc::new(storage));
    let log = Log::open(directory.path(), options.clone()).unwrap();
    append_range(&log, 0, 10, 1);
    assert_eq!(common::segment_files(directory.path()).len(), 1, "one segment: the cut rewrites the active one");
    // An append whose fdatasync is held once it has started.
    let started = gate.hold_next();
    let leader = {
        let log = log.clone();
        std::thread::spawn(move || log.append(&NewEvent::new("cut", "Happened", b"position 10")).map(|_| ()))
    };
    started.recv().unwrap();
    // The truncation's own sync of what it keeps is not held.
    log.truncate_after(5).unwrap();
    gate.release();
    leader.join().unwrap().unwrap();
    let appended = log.append(&NewEvent::new("after", "Happened", b"position 6")).unwrap();
    assert_eq!(appended.position, 6);
    power.lose_power();
    drop(log);
    power.restart().unwrap();
    let log = Log::open(directory.path(), options).unwrap();
    let events = common::read_all(&log);
    assert_eq!(events.len(), 7, "the six kept and the one acknowledged after the cut");
    assert_eq!((events[6].stream.as_str(), &events[6].payload[..]), ("after", &b"position 6"[..]));
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
