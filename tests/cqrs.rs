//! Checks the CQRS layer's promises against brute force: an aggregate loaded
//! from a snapshot plus its stream's tail equals a full replay, and so does
//! every as-of load and as-of read model, for random histories and random
//! points; a damaged or outdated snapshot falls back to an older one and is
//! reported; commands retry on concurrency conflicts a bounded number of
//! times; projections and subscriptions under concurrent writers see every
//! event exactly once; a full disk during a snapshot damages nothing.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronolog::cqrs::{
    project_as_of, snapshot_projection_as_of, AggregateStore, AsOf, Codec, CodecError, CommandError, JsonCodec,
    Projection, ProjectionRunner, Subscription,
};
use chronolog::snapshot::{SkipReason, SnapshotStore};
use chronolog::{Durability, Error, Filter, Log, LogOptions, NewEvent};
use common::bank::*;
use proptest::prelude::*;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

fn options() -> LogOptions {
    LogOptions::default().segment_capacity_bytes(16 * 1024).durability(Durability::None)
}

fn accounts(log: &Log, every: u64) -> AggregateStore<Account, JsonCodec> {
    AggregateStore::new(log, JsonCodec).snapshot_every(every).snapshot_store(SnapshotStore::open(log).keep_last(1000))
}

/// Every event of `stream` decoded, with its position and timestamp.
fn stream_events(log: &Log, stream: &str) -> Vec<(u64, u64, AccountEvent)> {
    let view = log.view();
    let events = view.read_stream(stream, 0).unwrap();
    events
        .map(|e| {
            let e = e.unwrap();
            (e.position, e.timestamp_ns, serde_json::from_slice(e.payload).unwrap())
        })
        .collect()
}

fn command(kind: u8, amount: i64) -> AccountCommand {
    match kind % 4 {
        0 => AccountCommand::Open,
        1 | 2 => AccountCommand::Deposit(amount),
        _ => AccountCommand::Withdraw(amount),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Loads (now, as of positions, as of times) through snapshots equal
    /// brute-force folds of the stream, with other streams interleaved and
    /// commands the aggregate refuses mixed in.
    #[test]
    fn aggregate_from_snapshot_and_tail_equals_full_replay(
        every in 1u64..6,
        commands in prop::collection::vec((0usize..3, any::<u8>(), 1i64..50, any::<bool>()), 1..80),
        probes in prop::collection::vec(any::<u64>(), 1..12),
    ) {
        let directory = tempfile::tempdir().unwrap();
        let log = Log::open(directory.path(), options()).unwrap();
        let store = accounts(&log, every);
        for (account, kind, amount, noise) in commands {
            let id = account.to_string();
            match store.execute(&id, &command(kind, amount)) {
                Ok(_) | Err(CommandError::Rejected(_)) => {}
                Err(error) => panic!("execute: {error}"),
            }
            if noise {
                log.append(&NewEvent::new("other-stream", "Noise", b"{}")).unwrap();
            }
        }
        let next = log.next_position();
        for account in 0..3 {
            let id = account.to_string();
            let events = stream_events(&log, &format!("account-{id}"));
            let loaded = store.load(&id).unwrap();
            prop_assert!(loaded.report.skipped.is_empty());
            prop_assert_eq!(&loaded.state, &fold_account(events.iter().map(|e| &e.2)));
            prop_assert_eq!(loaded.version, (events.len() as u64).checked_sub(1));
            if events.len() as u64 >= every {
                prop_assert!(loaded.report.snapshot.is_some(), "a snapshot was due");
            }
            for &probe in &probes {
                let position = probe % (next + 2);
                let expected = fold_account(events.iter().filter(|e| e.0 <= position).map(|e| &e.2));
                let loaded = store.load_as_of(&id, AsOf::Position(position)).unwrap();
                prop_assert_eq!(&loaded.state, &expected, "as of position {}", position);
                let Some(&(_, time, _)) = events.get((probe % (events.len() as u64 + 1)) as usize) else { continue };
                for time in [time - 1, time, time + 1] {
                    let expected = fold_account(events.iter().filter(|e| e.1 <= time).map(|e| &e.2));
                    let loaded = store.load_as_of(&id, AsOf::Time(time)).unwrap();
                    prop_assert_eq!(&loaded.state, &expected, "as of time {}", time);
                }
            }
        }
    }

    /// The balances read model as of random times and positions, with
    /// snapshots of it at random points, equals a brute-force replay.
    #[test]
    fn projection_as_of_equals_brute_force(
        operations in prop::collection::vec((0usize..4, 1i64..100), 1..120),
        snapshot_at in prop::collection::vec(any::<u64>(), 0..6),
        probes in prop::collection::vec(any::<u64>(), 1..10),
    ) {
        let directory = tempfile::tempdir().unwrap();
        let log = Log::open(directory.path(), options()).unwrap();
        let snapshots = SnapshotStore::open(&log).keep_last(100);
        for (index, &(account, amount)) in operations.iter().enumerate() {
            let stream = format!("account-{account}");
            let event = if index < 4 { AccountEvent::Opened } else { AccountEvent::Deposited(amount) };
            let payload = serde_json::to_vec(&event).unwrap();
            log.append(&NewEvent::new(&stream, "Any", &payload)).unwrap();
            if index % 5 == 0 {
                log.append(&NewEvent::new("audit-1", "Noise", b"not json")).unwrap();
            }
        }
        let next = log.next_position();
        for &at in &snapshot_at {
            snapshot_projection_as_of::<Balances>(&log, &snapshots, AsOf::Position(at % next)).unwrap();
        }
        let events = common::read_all(&log);
        for &probe in &probes {
            let position = probe % next;
            let (state, report) = project_as_of::<Balances>(&log, &snapshots, AsOf::Position(position)).unwrap();
            prop_assert!(report.skipped.is_empty());
            prop_assert_eq!(&state, &brute_force_balances(&events, position + 1));
            let time = events[position as usize].timestamp_ns;
            let end = events.iter().filter(|e| e.timestamp_ns <= time).count() as u64;
            let (state, _) = project_as_of::<Balances>(&log, &snapshots, AsOf::Time(time)).unwrap();
            prop_assert_eq!(&state, &brute_force_balances(&events, end));
        }
    }
}

#[test]
fn a_damaged_latest_snapshot_falls_back_to_an_older_one_and_says_so() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = accounts(&log, 3);
    store.execute("7", &AccountCommand::Open).unwrap();
    let mut newest = None;
    for amount in 1..=7 {
        if let Some(path) = store.execute("7", &AccountCommand::Deposit(amount)).unwrap().snapshot {
            newest = Some(path);
        }
    }
    let newest = newest.expect("snapshots after 3 and 6 events");
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();

    let loaded = store.load("7").unwrap();
    assert_eq!(loaded.state, Account { opened: true, balance: 28, events: 8 });
    assert_eq!(loaded.report.snapshot, Some((3, 3)), "the snapshot after 3 events");
    assert_eq!(loaded.report.events_replayed, 5);
    assert_eq!(loaded.report.skipped.len(), 1);
    match &loaded.report.skipped[0].reason {
        SkipReason::Damaged(Error::Corrupted { path, .. }) => assert_eq!(path, &newest),
        other => panic!("expected a corruption report, got {other}"),
    }

    // Damage every snapshot: a full replay, every skip reported.
    for entry in
        SnapshotStore::open(&log).list(&AggregateStore::<Account, JsonCodec>::snapshot_name("account-7")).unwrap()
    {
        std::fs::write(&entry.path, b"garbage").unwrap();
    }
    let loaded = store.load("7").unwrap();
    assert_eq!(loaded.state.balance, 28);
    assert_eq!((loaded.report.snapshot, loaded.report.skipped.len(), loaded.report.events_replayed), (None, 2, 8));
}

/// The same account with a new state encoding: old snapshots are skipped.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct AccountV2(Account);

impl chronolog::cqrs::Aggregate for AccountV2 {
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountError;
    const KIND: &'static str = "account";
    const SCHEMA_VERSION: u32 = 2;
    fn event_type(event: &AccountEvent) -> &'static str {
        Account::event_type(event)
    }
    fn apply(&mut self, event: &AccountEvent) {
        self.0.apply(event)
    }
    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        self.0.handle(command)
    }
}

#[test]
fn snapshots_of_another_schema_version_are_skipped_and_reported() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let v1 = accounts(&log, 2);
    v1.execute("1", &AccountCommand::Open).unwrap();
    v1.execute("1", &AccountCommand::Deposit(5)).unwrap();
    let v2 = AggregateStore::<AccountV2, _>::new(&log, JsonCodec);
    let loaded = v2.load("1").unwrap();
    assert_eq!(loaded.state.0.balance, 5);
    assert_eq!(loaded.report.snapshot, None);
    assert!(matches!(
        loaded.report.skipped[..],
        [chronolog::snapshot::SkippedSnapshot { reason: SkipReason::SchemaVersion { found: 1, expected: 2 }, .. }]
    ));
}

/// Every snapshot file under a log directory, with its bytes.
fn stash_snapshots(directory: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for folder in std::fs::read_dir(directory.join("snapshots")).unwrap() {
        for file in std::fs::read_dir(folder.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files
}

/// Puts back the stashed snapshot files that are gone: what a process that
/// does not see the truncation (another one, writing late) could leave.
fn restore_snapshots(stash: &[(std::path::PathBuf, Vec<u8>)]) {
    for (path, bytes) in stash {
        if !path.exists() {
            std::fs::write(path, bytes).unwrap();
        }
    }
}

/// A truncation removes the snapshots of the events it cuts. Put back (as a
/// late writer elsewhere could), they are still never used: ahead of the
/// log, then, once the log grows again, diverged from it.
#[test]
fn snapshots_of_truncated_events_are_not_used() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = accounts(&log, 2);
    store.execute("1", &AccountCommand::Open).unwrap();
    store.execute("1", &AccountCommand::Deposit(5)).unwrap(); // snapshot at 2 events
    store.execute("1", &AccountCommand::Deposit(6)).unwrap();
    store.execute("1", &AccountCommand::Deposit(7)).unwrap(); // snapshot at 4 events
    let stash = stash_snapshots(directory.path());
    log.truncate_after(1).unwrap();
    let loaded = store.load("1").unwrap();
    assert_eq!(loaded.state.balance, 5);
    assert_eq!(loaded.report.snapshot, Some((2, 2)));
    assert!(loaded.report.skipped.is_empty(), "the snapshot at 4 went with its events: {:?}", loaded.report.skipped);
    restore_snapshots(&stash);
    let loaded = store.load("1").unwrap();
    assert_eq!(loaded.state.balance, 5);
    assert!(matches!(loaded.report.skipped[0].reason, SkipReason::AheadOfLog { next_position: 4, .. }));
    // Written again after the cut: the old snapshot at 4 was made from other events.
    store.execute("1", &AccountCommand::Deposit(100)).unwrap();
    log.append(&NewEvent::new("account-1", "Deposited", br#"{"Deposited":1000}"#)).unwrap();
    let loaded = store.load("1").unwrap();
    assert_eq!(loaded.state.balance, 1105);
    assert!(loaded.report.skipped.iter().any(|s| matches!(s.reason, SkipReason::Diverged { position: 3, .. })));
}

/// JSON, but it runs `before_event` each time it encodes an event: between
/// the store's load and its append, where tests make the log change under a
/// command.
struct HookedCodec<F> {
    before_event: F,
}

impl<F: Fn() -> Result<(), Error> + Send + Sync> Codec<AccountEvent> for HookedCodec<F> {
    fn encode(&self, value: &AccountEvent) -> Result<Vec<u8>, CodecError> {
        (self.before_event)()?;
        JsonCodec.encode(value)
    }
    fn decode(&self, bytes: &[u8]) -> Result<AccountEvent, CodecError> {
        JsonCodec.decode(bytes)
    }
}

impl<F: Fn() -> Result<(), Error> + Send + Sync> Codec<Account> for HookedCodec<F> {
    fn encode(&self, value: &Account) -> Result<Vec<u8>, CodecError> {
        JsonCodec.encode(value)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Account, CodecError> {
        JsonCodec.decode(bytes)
    }
}

/// A codec that appends a competing event to the stream just before the
/// store appends, the first `conflicts` times: concurrency conflicts on demand.
fn conflicting(log: &Log, conflicts: u32) -> HookedCodec<impl Fn() -> Result<(), Error> + Send + Sync> {
    let log = log.clone();
    let conflicts_left = AtomicU32::new(conflicts);
    HookedCodec {
        before_event: move || {
            if conflicts_left.load(Ordering::SeqCst) > 0 {
                conflicts_left.fetch_sub(1, Ordering::SeqCst);
                log.append(&NewEvent::new("account-1", "Deposited", br#"{"Deposited":1}"#))?;
            }
            Ok(())
        },
    }
}

#[test]
fn commands_retry_conflicts_a_bounded_number_of_times() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = AggregateStore::<Account, _>::new(&log, conflicting(&log, 0)).max_attempts(3);
    store.execute("1", &AccountCommand::Open).unwrap();

    // Two conflicts, three attempts: the third wins, on top of both competitors.
    let store = AggregateStore::<Account, _>::new(&log, conflicting(&log, 2)).max_attempts(3);
    let executed = store.execute("1", &AccountCommand::Deposit(10)).unwrap();
    assert_eq!(executed.attempts, 3);
    assert_eq!(store.load("1").unwrap().state.balance, 12);

    // Three conflicts, three attempts: the conflict is returned, nothing of ours written.
    let store = AggregateStore::<Account, _>::new(&log, conflicting(&log, 3)).max_attempts(3);
    let before = log.next_position();
    match store.execute("1", &AccountCommand::Deposit(10)) {
        Err(CommandError::Store(Error::WrongExpectedVersion { stream, .. })) => assert_eq!(stream, "account-1"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(log.next_position(), before + 3, "only the three competing events");
    assert_eq!(store.load("1").unwrap().state.balance, 15);
    assert!(matches!(
        store.execute("1", &AccountCommand::Withdraw(1000)),
        Err(CommandError::Rejected(AccountError::InsufficientFunds))
    ));
}

/// A codec that, the first time it encodes an event, rewrites the stream's
/// last event just before the store appends: a truncation cuts it away and a
/// deposit of 10 takes its place (same position, same version, other bytes).
fn rewriting(log: &Log) -> HookedCodec<impl Fn() -> Result<(), Error> + Send + Sync> {
    let log = log.clone();
    let armed = std::sync::atomic::AtomicBool::new(true);
    HookedCodec {
        before_event: move || {
            if armed.swap(false, Ordering::SeqCst) {
                let last = log.stream_state("account-1")?.map_or(0, |state| state.last_position);
                log.truncate_after(last - 1)?;
                log.append(&NewEvent::new("account-1", "Deposited", br#"{"Deposited":10}"#))?;
            }
            Ok(())
        },
    }
}

#[test]
fn a_command_decided_on_a_history_truncated_and_regrown_since_is_decided_again() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = AggregateStore::<Account, _>::new(&log, JsonCodec);
    store.execute("1", &AccountCommand::Open).unwrap();
    store.execute("1", &AccountCommand::Deposit(100)).unwrap();
    let loaded = store.load("1").unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (100, Some(1)));

    // The withdrawal is decided on a balance of 100; before it is appended,
    // the deposit of 100 becomes one of 10 at the same version. Appending
    // it on a bare expected version would leave a balance of -70.
    let store = AggregateStore::<Account, _>::new(&log, rewriting(&log));
    let result = store.execute("1", &AccountCommand::Withdraw(80));
    assert!(matches!(result, Err(CommandError::Rejected(AccountError::InsufficientFunds))), "{result:?}");
    let events: Vec<AccountEvent> = stream_events(&log, "account-1").into_iter().map(|(_, _, e)| e).collect();
    assert_eq!(events, vec![AccountEvent::Opened, AccountEvent::Deposited(10)]);
    assert_eq!(store.load("1").unwrap().state.balance, 10);

    // A command the new history allows still goes through, in one attempt
    // more than the conflict.
    let store = AggregateStore::<Account, _>::new(&log, rewriting(&log));
    let executed = store.execute("1", &AccountCommand::Withdraw(5)).unwrap();
    assert_eq!(executed.attempts, 2);
    assert_eq!(store.load("1").unwrap().state.balance, 5);
}

#[test]
fn concurrent_commands_never_lose_an_update() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = Arc::new(accounts(&log, 5).max_attempts(10_000));
    store.execute("shared", &AccountCommand::Open).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    store.execute("shared", &AccountCommand::Deposit(1)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let loaded = store.load("shared").unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (200, Some(200)));
}

#[test]
fn projections_and_subscriptions_under_concurrent_writers_see_every_event_once() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = SnapshotStore::open(&log);
    let (runner, report) = ProjectionRunner::<Balances>::start(&log, store.clone(), 50).unwrap();
    assert_eq!(report.snapshot, None);
    let mut subscription = Subscription::from_position(&log, 0, <Balances as Projection>::filter());
    let subscriber = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < 4 * 300 {
            let event = subscription.next_timeout(WAIT).unwrap().expect("an event within the wait");
            seen.push(event.position);
        }
        seen
    });
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let log = log.clone();
            std::thread::spawn(move || {
                let stream = format!("account-{writer}");
                for i in 0..300i64 {
                    let event = if i == 0 { AccountEvent::Opened } else { AccountEvent::Deposited(i) };
                    let payload = serde_json::to_vec(&event).unwrap();
                    log.append(&NewEvent::new(&stream, "Any", &payload)).unwrap();
                    if i % 3 == 0 {
                        log.append(&NewEvent::new("noise", "Noise", b"")).unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let last = log.next_position() - 1;
    assert!(runner.wait_for(last, WAIT).unwrap());
    let events = common::read_all(&log);
    let expected = brute_force_balances(&events, last + 1);
    assert_eq!(runner.read(Clone::clone), expected);
    assert!(runner.snapshots_written() > 0);

    let seen = subscriber.join().unwrap();
    let expected_positions: Vec<u64> =
        events.iter().filter(|e| e.stream.starts_with("account-")).map(|e| e.position).collect();
    assert_eq!(seen, expected_positions, "in order, each once");

    // Stopping saves the final state; a new runner starts from it.
    assert_eq!(runner.stop().unwrap(), expected);
    let (runner, report) = ProjectionRunner::<Balances>::start(&log, store, 50).unwrap();
    assert_eq!(report.snapshot, Some(last + 1));
    assert_eq!(report.events_read, 0);
    assert_eq!(runner.read(Clone::clone), expected);
}

#[test]
fn subscriptions_start_at_a_time_and_stop_from_another_thread() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    for time in [10u64, 20, 20, 30] {
        log.append(&NewEvent::new("s", "T", &time.to_le_bytes()).with_timestamp_ns(time)).unwrap();
    }
    let mut subscription = Subscription::from_time(&log, 20, Filter::default()).unwrap();
    assert_eq!(subscription.position(), 1);
    let positions: Vec<u64> = (0..3).map(|_| subscription.next_timeout(WAIT).unwrap().unwrap().position).collect();
    assert_eq!(positions, [1, 2, 3]);
    let stopper = subscription.stopper();
    let blocked = std::thread::spawn(move || subscription.next().map(|e| e.map(|e| e.position)));
    std::thread::sleep(Duration::from_millis(20));
    stopper.stop();
    assert!(blocked.join().unwrap().is_none(), "a stopped subscription ends");
}

#[test]
fn a_read_only_handle_follows_a_writer_in_another_handle() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let reader = Log::open_read_only(directory.path(), options()).unwrap();
    let mut subscription = Subscription::from_position(&reader, 0, Filter::default());
    let writer = std::thread::spawn(move || {
        for i in 0..20u8 {
            log.append(&NewEvent::new("s", "T", &[i])).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let payloads: Vec<Vec<u8>> = (0..20).map(|_| subscription.next_timeout(WAIT).unwrap().unwrap().payload).collect();
    writer.join().unwrap();
    assert_eq!(payloads, (0..20u8).map(|i| vec![i]).collect::<Vec<_>>());
}

#[test]
fn a_full_disk_during_a_snapshot_loses_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let (faulty_options, plan) = common::with_faults(options());
    let log = Log::open(directory.path(), faulty_options).unwrap();
    let store = accounts(&log, 2);
    store.execute("1", &AccountCommand::Open).unwrap();
    let first = store.execute("1", &AccountCommand::Deposit(1)).unwrap();
    assert!(first.snapshot.is_some());
    store.execute("1", &AccountCommand::Deposit(2)).unwrap();
    // Room for the events' bytes (the segment is preallocated) but not for a
    // new snapshot file.
    plan.limit_space(0);
    let executed = store.execute("1", &AccountCommand::Deposit(3)).unwrap();
    assert!(executed.snapshot.is_none());
    assert!(matches!(executed.snapshot_error, Some(Error::StorageFull { .. })), "{:?}", executed.snapshot_error);
    plan.heal();
    let loaded = store.load("1").unwrap();
    assert_eq!(loaded.state.balance, 6);
    assert_eq!(loaded.report.snapshot, Some((2, 2)), "the older snapshot is intact");
    assert!(loaded.report.skipped.is_empty(), "no half-written snapshot is visible");
    let leftovers: Vec<_> = walk(&directory.path().join("snapshots"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".tmp")))
        .collect();
    assert!(leftovers.is_empty(), "temporary files removed: {leftovers:?}");
    // And the projection side: a runner whose snapshots fail keeps going.
    plan.limit_space(0);
    let (runner, _) = ProjectionRunner::<Balances>::start(&log, SnapshotStore::open(&log), 1).unwrap();
    assert!(runner.wait_for(log.next_position() - 1, WAIT).unwrap());
    assert_eq!(runner.read(|b| b.balances.get("account-1").copied()), Some(6));
    let balances = runner.stop().expect("a failed snapshot does not fail the projection");
    assert_eq!(balances.balances.get("account-1").copied(), Some(6));
    let projection_snapshots = SnapshotStore::open(&log).list(&chronolog::cqrs::snapshot_name::<Balances>()).unwrap();
    assert!(projection_snapshots.is_empty(), "no snapshot could be written: {projection_snapshots:?}");
}

fn walk(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(path) else { return Vec::new() };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Review finding: a live runner must notice a truncation under its
/// checkpoint even after the log grew back past it; so must a subscription.
#[test]
fn a_truncation_under_a_live_runner_or_subscription_is_noticed_after_regrowth() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let deposit = |amount: i64| serde_json::to_vec(&AccountEvent::Deposited(amount)).unwrap();
    for amount in 0..10 {
        log.append(&NewEvent::new("account-1", "Deposited", &deposit(amount))).unwrap();
    }
    let (runner, _) = ProjectionRunner::<Balances>::start(&log, SnapshotStore::open(&log), 0).unwrap();
    let mut subscription = Subscription::from_position(&log, 0, Filter::default());
    assert!(runner.wait_for(9, WAIT).unwrap());
    for _ in 0..10 {
        subscription.next_timeout(WAIT).unwrap().unwrap();
    }
    log.truncate_after(7).unwrap();
    for amount in [100, 200, 300] {
        log.append(&NewEvent::new("account-1", "Deposited", &deposit(amount))).unwrap();
    }
    assert!(matches!(runner.wait_for(10, WAIT), Err(Error::ProjectionFailed { .. })), "the runner must stop");
    assert!(matches!(subscription.next_timeout(WAIT), Err(Error::LogRewritten { position: 9 })));
    // Restarted, it rebuilds from the log as it is now.
    drop(runner);
    let (runner, _) = ProjectionRunner::<Balances>::start(&log, SnapshotStore::open(&log), 0).unwrap();
    assert!(runner.wait_for(10, WAIT).unwrap());
    assert_eq!(runner.read(|b| b.balances["account-1"]), (0..8).sum::<i64>() + 600);
}

/// Review finding: with the default retention, snapshots left ahead of the
/// log by a truncation must not push out the new ones.
#[test]
fn default_retention_keeps_new_snapshots_after_a_truncation() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = AggregateStore::<Account, _>::new(&log, JsonCodec).snapshot_every(2);
    store.execute("1", &AccountCommand::Open).unwrap();
    for amount in 1..=7 {
        store.execute("1", &AccountCommand::Deposit(amount)).unwrap();
    }
    log.truncate_after(2).unwrap();
    let executed = store.execute("1", &AccountCommand::Deposit(50)).unwrap();
    let written = executed.snapshot.expect("a snapshot after 4 events");
    assert!(written.exists(), "the snapshot just written was deleted by retention");
    let loaded = store.load("1").unwrap();
    assert_eq!(loaded.state.balance, 1 + 2 + 50);
    assert_eq!(loaded.report.snapshot, Some((4, 4)));
}

/// Review finding: an aggregate (or read model) whose early events were
/// purged, with no snapshot to cover them, is an error, never partial state;
/// and an as-of time before the retained history never uses a later snapshot.
#[test]
fn purged_history_without_a_snapshot_is_an_error_not_a_partial_state() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options().segment_capacity_bytes(4096)).unwrap();
    let store = accounts(&log, 0);
    store.execute("1", &AccountCommand::Open).unwrap();
    let mut times = Vec::new();
    for amount in 1..=100 {
        times.push(store.execute("1", &AccountCommand::Deposit(amount)).unwrap().appended[0].timestamp_ns);
        log.append(&NewEvent::new("filler", "F", &[0u8; 100])).unwrap();
    }
    let snapshots = SnapshotStore::open(&log);
    snapshot_projection_as_of::<Balances>(&log, &snapshots, AsOf::Position(149)).unwrap();
    assert!(log.purge_before(150).unwrap() > 0);
    assert!(log.first_position() > 0 && log.first_position() <= 150);
    assert!(matches!(store.load("1"), Err(Error::MissingHistory { .. })));

    // The read model has a snapshot at 150: fine for now, but not for a time
    // before it, whose history is gone.
    let events = common::read_all(&log);
    let (now, report) = project_as_of::<Balances>(&log, &snapshots, AsOf::Now).unwrap();
    assert_eq!(report.snapshot, Some(150));
    assert_eq!(now.balances["account-1"], (1..=100).sum::<i64>());
    assert_eq!(now.applied, 101);
    assert!(events.len() > 40);
    let before = project_as_of::<Balances>(&log, &snapshots, AsOf::Time(times[0]));
    assert!(matches!(before, Err(Error::MissingHistory { .. })), "{before:?}");
}

/// Review finding: an aggregate whose every event was purged, with no
/// snapshot, is an error too (it loaded as a new, empty aggregate, and its
/// commands conflicted until they gave up); so is one loaded as of a point
/// inside the purged history. A snapshot that covers the purged events makes
/// both fine.
#[test]
fn an_aggregate_with_every_event_purged_and_no_snapshot_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options().segment_capacity_bytes(4096)).unwrap();
    let store = accounts(&log, 0);
    for id in ["1", "2"] {
        store.execute(id, &AccountCommand::Open).unwrap();
        store.execute(id, &AccountCommand::Deposit(5)).unwrap();
    }
    let covered = accounts(&log, 1);
    covered.execute("2", &AccountCommand::Deposit(7)).unwrap();
    let last_of_2 = log.next_position() - 1;
    for _ in 0..200 {
        log.append(&NewEvent::new("filler", "F", &[0u8; 100])).unwrap();
    }
    assert!(log.purge_before(log.next_position() - 1).unwrap() > 0);
    assert!(log.first_position() > last_of_2, "every event of both accounts is purged");
    assert_eq!(log.view().stream_state("account-1").unwrap().map(|s| s.last_version), Some(1));

    assert!(matches!(store.load("1"), Err(Error::MissingHistory { .. })));
    let executed = store.execute("1", &AccountCommand::Deposit(1));
    assert!(matches!(executed, Err(CommandError::Store(Error::MissingHistory { .. }))), "{executed:?}");
    let as_of = store.load_as_of("1", AsOf::Position(1));
    assert!(matches!(as_of, Err(Error::MissingHistory { .. })), "{as_of:?}");

    let loaded = store.load("2").unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (12, Some(2)));
    assert_eq!(store.execute("2", &AccountCommand::Deposit(1)).unwrap().version, Some(3));
    assert!(matches!(store.load("never"), Ok(loaded) if loaded.version.is_none()));
}

/// A newest snapshot whose CRC is fine but whose payload the codec cannot
/// read (a bug in an older release, say) falls back to an older snapshot,
/// reported as a codec error; the result is still the full replay's.
#[test]
fn an_undecodable_newest_snapshot_falls_back_to_an_older_one() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = accounts(&log, 2);
    store.execute("1", &AccountCommand::Open).unwrap();
    for amount in 1..=4 {
        store.execute("1", &AccountCommand::Deposit(amount)).unwrap();
    }
    let snapshots = SnapshotStore::open(&log).keep_last(1000);
    let name = AggregateStore::<Account, JsonCodec>::snapshot_name("account-1");
    let newest = snapshots.find(&name, chronolog::snapshot::SnapshotBound::Latest, 1, &log.view()).unwrap();
    let newest = newest.snapshot.unwrap().meta;
    assert_eq!(newest.next_position, 4);
    snapshots.write(&newest, b"not the state's json").unwrap();

    let loaded = store.load("1").unwrap();
    assert_eq!(loaded.state.balance, 10);
    assert_eq!(loaded.report.snapshot, Some((2, 2)));
    assert!(
        matches!(&loaded.report.skipped[..], [s] if matches!(&s.reason, SkipReason::Damaged(Error::Codec { .. }))),
        "{:?}",
        loaded.report.skipped
    );
}

/// A log truncated and written again with explicit timestamps (an import run
/// twice, say) can put another event at a snapshot's last position with the
/// same timestamp: the record CRC kept with the snapshot tells them apart.
#[test]
fn a_snapshot_of_events_rewritten_with_the_same_timestamps_is_not_used() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let write = |events: &[AccountEvent]| {
        for (i, event) in events.iter().enumerate() {
            let payload = serde_json::to_vec(event).unwrap();
            log.append(&NewEvent::new("account-1", "Any", &payload).with_timestamp_ns(1_000 + i as u64)).unwrap();
        }
    };
    write(&[AccountEvent::Opened, AccountEvent::Deposited(5), AccountEvent::Deposited(7)]);
    let store = AggregateStore::<Account, _>::new(&log, JsonCodec);
    store.snapshot("1").unwrap().expect("a snapshot of 3 events");
    assert_eq!(store.load("1").unwrap().report.snapshot, Some((3, 3)));

    // The truncation removes the snapshot; put back (as a late writer
    // elsewhere could), it must still be told apart by its record CRC.
    let stash = stash_snapshots(directory.path());
    log.truncate_after(0).unwrap();
    restore_snapshots(&stash);
    // Timestamps go on from the last one kept: the same ones as before.
    for (i, event) in [AccountEvent::Deposited(50), AccountEvent::Deposited(70)].iter().enumerate() {
        let payload = serde_json::to_vec(event).unwrap();
        log.append(&NewEvent::new("account-1", "Any", &payload).with_timestamp_ns(1_001 + i as u64)).unwrap();
    }
    let loaded = store.load("1").unwrap();
    assert_eq!(loaded.state.balance, 120, "not the snapshot's 12");
    assert_eq!(loaded.report.snapshot, None);
    assert!(
        matches!(
            &loaded.report.skipped[..],
            [s] if matches!(s.reason, SkipReason::Diverged { position: 2, snapshot_crc: Some(_), .. })
        ),
        "{:?}",
        loaded.report.skipped
    );
}

/// Found in the second review: a running projection recognised a rewrite
/// under its checkpoint by the timestamp alone; one with the same timestamps
/// (explicit ones) is now caught by the record's checksum too.
#[test]
fn a_runner_notices_a_rewrite_with_the_same_timestamps() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let append = |amounts: &[i64], first_time: u64| {
        for (i, amount) in amounts.iter().enumerate() {
            let payload = serde_json::to_vec(&AccountEvent::Deposited(*amount)).unwrap();
            let event = NewEvent::new("account-1", "Any", &payload).with_timestamp_ns(first_time + i as u64);
            log.append(&event).unwrap();
        }
    };
    append(&[1, 2, 3], 1_000);
    let (runner, _) = ProjectionRunner::<Balances>::start(&log, SnapshotStore::open(&log), 0).unwrap();
    assert!(runner.wait_for(2, WAIT).unwrap());
    log.truncate_after(0).unwrap();
    append(&[20, 30, 40], 1_001);
    assert!(
        matches!(runner.wait_for(3, WAIT), Err(Error::ProjectionFailed { .. })),
        "the runner must stop rather than fold 40 onto a state holding 2 and 3"
    );
}

#[test]
fn a_snapshot_folder_whose_directory_sync_failed_is_synced_by_the_next_write() {
    let directory = tempfile::tempdir().unwrap();
    // Durable appends: a snapshot write has no event to sync first.
    let (faulty_options, plan) = common::with_faults(options().durability(Durability::Sync));
    let log = Log::open(directory.path(), faulty_options).unwrap();
    log.append(&NewEvent::new("s", "T", b"")).unwrap();
    let meta = |version| chronolog::snapshot::SnapshotMeta {
        name: "count".into(),
        next_position: 1,
        timestamp_ns: log.last_timestamp_ns(),
        version,
        schema_version: 1,
    };
    // The first write makes the folders, and the sync of the first of their
    // entries fails: the folders stay, their names are not durable.
    plan.fail_sync_after(0);
    let failed = SnapshotStore::open(&log).write(&meta(1), b"1");
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    assert!(directory.path().join("snapshots").exists());
    // A new store finds them in place and still syncs both entries (the
    // folder's in the root, the root's in the log directory) once, before
    // the first snapshot it writes counts; its next write syncs neither.
    let store = SnapshotStore::open(&log);
    let before = plan.syncs();
    store.write(&meta(2), b"2").unwrap();
    let first_write = plan.syncs() - before;
    let before = plan.syncs();
    store.write(&meta(3), b"3").unwrap();
    let second_write = plan.syncs() - before;
    assert_eq!(first_write, second_write + 2, "syncs of the first write {first_write}, of the next {second_write}");
}

/// Events re-appended after a truncation with the timestamps the cut ones
/// had (an import replayed, say) are still another history: a subscription
/// that read the cut ones must notice, by the records' CRCs, not only their
/// timestamps.
#[test]
fn a_subscription_notices_a_rewrite_that_kept_the_timestamps() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let append = |amount: i64| {
        let payload = serde_json::to_vec(&AccountEvent::Deposited(amount)).unwrap();
        let timestamp_ns = 1_000 + amount.unsigned_abs() % 100;
        log.append(&NewEvent::new("account-1", "Deposited", &payload).with_timestamp_ns(timestamp_ns)).unwrap();
    };
    for amount in 0..10 {
        append(amount);
    }
    let mut subscription = Subscription::from_position(&log, 0, Filter::default());
    for _ in 0..10 {
        subscription.next_timeout(WAIT).unwrap().unwrap();
    }
    log.truncate_after(7).unwrap();
    // Positions 8 and 9 again, at the same times, with other amounts.
    for amount in [108, 109, 110] {
        append(amount);
    }
    assert!(
        matches!(subscription.next_timeout(WAIT), Err(Error::LogRewritten { position: 9 })),
        "the subscription must not go on into another history"
    );
}

/// A read side in another process (a read-only handle) loads aggregates
/// through snapshots while the write side runs commands that snapshot every
/// two events, and truncates the log now and then (which removes the
/// snapshots of what it cuts, and lets the positions be written again with
/// other events and other snapshots). Every load must equal a brute-force
/// fold of the stream as the reader's view holds it: a snapshot of a
/// position beyond the view, or of another history, is never used.
#[test]
fn read_only_loads_through_snapshots_agree_with_the_view_while_the_writer_truncates() {
    const ACCOUNTS: usize = 3;
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store = accounts(&log, 2);
    for account in 0..ACCOUNTS {
        store.execute(&format!("{account}"), &AccountCommand::Open).unwrap();
    }
    let reader = Log::open_read_only(directory.path(), options()).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let store = accounts(&log, 2);
            for round in 0..400u64 {
                let account = format!("{}", round % ACCOUNTS as u64);
                // Refused commands (an overdraft) are part of the workload.
                let _ = store.execute(&account, &command((round % 3 + 1) as u8, (round % 7) as i64 + 1));
                if round % 40 == 39 {
                    log.truncate_after(log.next_position() - 1 - round % 5).unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let read_side = accounts(&reader, 2);
    let (mut loads, mut from_snapshots, mut skipped) = (0, 0, 0);
    for turn in 0u64.. {
        let finished = done.load(Ordering::SeqCst);
        // The view is kept over several turns, while the writer truncates
        // and snapshots the positions again.
        if turn % 8 == 0 || finished {
            reader.refresh().unwrap();
        }
        for account in 0..ACCOUNTS {
            let id = format!("{account}");
            let loaded = read_side.load(&id).unwrap();
            from_snapshots += u32::from(loaded.report.snapshot.is_some());
            skipped += loaded.report.skipped.len();
            let view = reader.view();
            let events: Vec<(u64, AccountEvent)> = view
                .read_stream(&loaded.stream, 0)
                .unwrap()
                .map(|event| {
                    let event = event.unwrap();
                    (event.stream_version, serde_json::from_slice(event.payload).unwrap())
                })
                .collect();
            let expected = fold_account(events.iter().map(|(_, event)| event));
            assert_eq!(loaded.state, expected, "load {loads} of {id}");
            assert_eq!(loaded.version, events.last().map(|(version, _)| *version), "load {loads} of {id}");
            loads += 1;
        }
        if finished {
            break;
        }
    }
    writer.join().unwrap();
    eprintln!("{loads} loads, {from_snapshots} from a snapshot, {skipped} snapshots skipped");
    assert!(loads > ACCOUNTS && from_snapshots > 0, "{loads} loads, {from_snapshots} from a snapshot");
}

/// The write side's snapshot retention removes snapshots a read side
/// (another process) may be about to read. A snapshot removed between a
/// lookup's listing and its read is gone, not damaged: the load uses the next
/// one and reports nothing, and `verify` finds no damage. (The listing is
/// made to name a removed snapshot.)
#[test]
fn a_snapshot_removed_after_a_lookup_listed_it_is_not_reported_as_damaged() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let store: AggregateStore<Account, JsonCodec> =
        AggregateStore::new(&log, JsonCodec).snapshot_every(3).snapshot_store(SnapshotStore::open(&log).keep_last(2));
    store.execute("1", &AccountCommand::Open).unwrap();
    for amount in 1..=9 {
        store.execute("1", &AccountCommand::Deposit(amount)).unwrap();
    }
    let next = log.next_position();
    let storage = common::hooked::HookedStorage {
        list_dir: Some(Box::new(move |path, names: &mut Vec<String>| {
            if path.components().any(|part| part.as_os_str() == "snapshots") && !names.is_empty() {
                names.push(format!("{next:020}.snap"));
            }
        })),
        ..Default::default()
    };
    let reader = Log::open_read_only(directory.path(), options().storage(Arc::new(storage))).unwrap();
    let read_side: AggregateStore<Account, JsonCodec> = AggregateStore::new(&reader, JsonCodec);
    let loaded = read_side.load("1").unwrap();
    assert!(loaded.report.skipped.is_empty(), "{:?}", loaded.report.skipped);
    assert!(loaded.report.snapshot.is_some(), "the newest snapshot still there is used");
    assert_eq!(loaded.state.balance, (1..=9).sum::<i64>());
    // Nor is it damage to `verify`, nor an entry of a listing (which
    // `chronolog verify`, `info` and `snapshots` report from).
    let problems = SnapshotStore::open(&reader).verify().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let listed = SnapshotStore::open(&reader).list_all().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|entry| entry.meta.is_ok()), "{listed:?}");
}

/// A read model in another process (a runner on a read-only handle) must
/// notice a truncation under its checkpoint too, once its handle sees the log
/// grown back, even with the same timestamps; and a subscription there.
#[test]
fn a_read_only_runner_or_subscription_notices_a_truncation_after_regrowth() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    let deposit = |amount: i64, timestamp_ns: u64| {
        let payload = serde_json::to_vec(&AccountEvent::Deposited(amount)).unwrap();
        log.append(&NewEvent::new("account-1", "Deposited", &payload).with_timestamp_ns(timestamp_ns)).unwrap();
    };
    for amount in 0..10 {
        deposit(amount, 1_000 + amount as u64);
    }
    let reader = Log::open_read_only(directory.path(), options()).unwrap();
    let (runner, _) = ProjectionRunner::<Balances>::start(&reader, SnapshotStore::open(&reader), 0).unwrap();
    let mut subscription = Subscription::from_position(&reader, 0, Filter::default());
    assert!(runner.wait_for(9, WAIT).unwrap());
    for _ in 0..10 {
        subscription.next_timeout(WAIT).unwrap().unwrap();
    }
    log.truncate_after(7).unwrap();
    for (amount, timestamp_ns) in [(100, 1_008), (200, 1_009), (300, 1_010)] {
        deposit(amount, timestamp_ns);
    }
    assert!(matches!(runner.wait_for(10, WAIT), Err(Error::ProjectionFailed { .. })), "the runner must stop");
    assert!(matches!(subscription.next_timeout(WAIT), Err(Error::LogRewritten { position: 9 })));
}

/// Review finding: a runner or subscription that had caught up waited for
/// the event at the log's end, so a truncation that the log grew back over
/// to that same end, and no further, woke neither. The runner's `wait_for`
/// kept answering from the cut history and `stop` returned its state as the
/// log's; a subscription blocked in its iterator slept on, and a live one
/// delivered the events past its start while it skipped the new ones
/// before. Each must notice the cut, on a writable handle and on a
/// read-only one (where the regrown log even has the same length).
#[test]
fn a_truncation_grown_back_to_the_same_end_is_noticed_by_caught_up_readers() {
    for read_only in [false, true] {
        let directory = tempfile::tempdir().unwrap();
        let log = Log::open(directory.path(), options()).unwrap();
        let deposit = |amount: i64| {
            let payload = serde_json::to_vec(&AccountEvent::Deposited(amount)).unwrap();
            log.append(&NewEvent::new("account-1", "Deposited", &payload)).unwrap();
        };
        for amount in 0..10 {
            deposit(amount);
        }
        let reader = if read_only { Log::open_read_only(directory.path(), options()).unwrap() } else { log.clone() };
        let (runner, _) = ProjectionRunner::<Balances>::start(&reader, SnapshotStore::open(&reader), 0).unwrap();
        let (stopped_runner, _) =
            ProjectionRunner::<Balances>::start(&reader, SnapshotStore::open(&reader), 0).unwrap();
        let mut subscription = Subscription::from_position(&reader, 0, Filter::default());
        let live = Subscription::live(&reader, Filter::default());
        assert!(runner.wait_for(9, WAIT).unwrap() && stopped_runner.wait_for(9, WAIT).unwrap());
        for _ in 0..10 {
            subscription.next_timeout(WAIT).unwrap().unwrap();
        }
        // Blocked in the iterator (no timeout) when the cut comes.
        let blocked = std::thread::spawn(move || subscription.next());
        let live = std::thread::spawn(move || {
            let mut live = live;
            live.next_timeout(WAIT)
        });
        std::thread::sleep(Duration::from_millis(50));
        log.truncate_after(6).unwrap();
        // Payloads of the same length: the regrown log has the same bytes'
        // length too, and differs only in its records.
        for amount in [1, 2, 3] {
            deposit(amount);
        }
        assert_eq!(log.next_position(), 10, "grown back to the same end");
        let context = if read_only { "read-only" } else { "writable" };
        // A read-only handle shows another's changes once it has reloaded;
        // `wait_for` of a position already reached answers from the handle
        // as it is.
        reader.refresh().unwrap();
        match runner.wait_for(9, WAIT) {
            // The engine's error is there to match on: start again from before the cut.
            Err(Error::ProjectionFailed { cause: Some(cause), .. }) => {
                assert!(matches!(*cause, Error::LogRewritten { position: 9 }), "{context}: {cause}");
            }
            other => panic!("{context}: the runner answered from the cut history: {other:?}"),
        }
        assert!(
            matches!(stopped_runner.stop(), Err(Error::ProjectionFailed { .. })),
            "{context}: stop returned the state of the cut history"
        );
        let blocked = blocked.join().unwrap();
        assert!(matches!(blocked, Some(Err(Error::LogRewritten { position: 9 }))), "{context}: {blocked:?}");
        let live = live.join().unwrap();
        assert!(matches!(live, Err(Error::LogRewritten { position: 9 })), "{context}: {live:?}");
    }
}

/// A live subscription made before a cut below its start notices it once
/// the log has grown past the start, instead of skipping the new events
/// below it.
#[test]
fn a_subscription_that_has_read_nothing_notices_a_truncation_below_its_start() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    for _ in 0..10 {
        log.append(&NewEvent::new("s", "T", b"old")).unwrap();
    }
    let mut live = Subscription::live(&log, Filter::default());
    let mut from_five = Subscription::from_position(&log, 5, Filter::default());
    log.truncate_after(2).unwrap();
    for _ in 0..12 {
        log.append(&NewEvent::new("s", "T", b"new")).unwrap();
    }
    assert!(matches!(live.next_timeout(WAIT), Err(Error::LogRewritten { position: 9 })));
    assert!(matches!(from_five.next_timeout(WAIT), Err(Error::LogRewritten { position: 4 })));
    // Made after the cut, they read the log as it is.
    let mut after = Subscription::from_position(&log, 5, Filter::default());
    assert_eq!(after.next_timeout(WAIT).unwrap().map(|event| event.position), Some(5));
}

/// A truncation that cuts a batch keeps its prefix by setting the batch-end
/// flag on the record it leaves last, which rewrites that record's CRC but
/// not its event. Whoever took that event's fingerprint before the cut (a
/// subscription that read up to it, a snapshot anchored there, an expected
/// version naming it) still holds the same event, and must not be told the
/// log was rewritten.
#[test]
fn a_truncation_that_closes_a_batch_at_an_event_keeps_its_fingerprint_valid() {
    use chronolog::snapshot::{SnapshotBound, SnapshotMeta};
    use chronolog::ExpectedVersion::LastEvent;
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_capacity_bytes(1 << 20).durability(Durability::None);
    let log = Log::open(directory.path(), options).unwrap();
    // Longer than what a subscription reads in one turn (256 events), so
    // that the last event it read is inside the batch.
    let streams = ["account-0", "account-1"];
    let batch: Vec<_> = (0..300).map(|i| NewEvent::new(streams[i % 2], "Deposited", b"1")).collect();
    let appended = log.append_batch(&batch).unwrap();
    let mut subscription = Subscription::from_position(&log, 0, Filter::default());
    for _ in 0..256 {
        subscription.next_timeout(WAIT).unwrap().unwrap();
    }
    let kept = appended[255];
    let guard = LastEvent { version: kept.stream_version, position: kept.position, record_crc: Some(kept.record_crc) };
    let store = SnapshotStore::open(&log);
    let meta = SnapshotMeta {
        name: streams[1].into(),
        next_position: kept.position + 1,
        timestamp_ns: kept.timestamp_ns,
        version: kept.stream_version + 1,
        schema_version: 1,
    };
    store.write_anchored(&meta, b"state", &log.view()).unwrap();

    log.truncate_after(kept.position).unwrap();
    let (_, crc_now) = log.view().fingerprint(kept.position).unwrap().unwrap();
    assert_ne!(crc_now, kept.record_crc, "the cut closed the batch at the kept event, rewriting its CRC");

    let lookup = store.find(streams[1], SnapshotBound::Latest, 1, &log.view()).unwrap();
    assert!(lookup.skipped.is_empty(), "{:?}", lookup.skipped);
    assert_eq!(lookup.snapshot.map(|s| s.meta.next_position), Some(kept.position + 1));
    let waited = subscription.next_timeout(Some(Duration::from_millis(50)));
    assert!(matches!(waited, Ok(None)), "{waited:?}");
    let next = log.append(&NewEvent::new(streams[1], "Deposited", b"2").with_expected_version(guard)).unwrap();
    assert_eq!((next.position, next.stream_version), (kept.position + 1, kept.stream_version + 1));
    assert_eq!(subscription.next_timeout(WAIT).unwrap().map(|e| e.position), Some(next.position));

    // The tolerance is for the flag only: an event regrown in a cut event's
    // place is still another event.
    let current =
        LastEvent { version: next.stream_version, position: next.position, record_crc: Some(next.record_crc) };
    log.truncate_after(kept.position).unwrap();
    log.append(&NewEvent::new(streams[1], "Deposited", b"3")).unwrap();
    let stale = log.append(&NewEvent::new(streams[1], "Deposited", b"4").with_expected_version(current));
    assert!(matches!(stale, Err(Error::WrongExpectedVersion { .. })), "{stale:?}");
    assert!(
        matches!(subscription.next_timeout(WAIT), Err(Error::LogRewritten { position }) if position == next.position)
    );
}

/// A projection that panics on an event of type "Boom".
#[derive(Default)]
struct Fragile(u64);

impl chronolog::cqrs::Projection for Fragile {
    const NAME: &'static str = "fragile";
    fn apply(&mut self, event: &chronolog::EventRef<'_>) -> Result<(), chronolog::cqrs::CodecError> {
        assert!(event.event_type != "Boom", "no booms at position {}", event.position);
        self.0 += 1;
        Ok(())
    }
    fn encode(&self) -> Result<Vec<u8>, chronolog::cqrs::CodecError> {
        Ok(self.0.to_le_bytes().to_vec())
    }
    fn decode(bytes: &[u8]) -> Result<Self, chronolog::cqrs::CodecError> {
        Ok(Fragile(u64::from_le_bytes(bytes.try_into()?)))
    }
}

/// A panic in a projection's own code fails the runner: `wait_for` reports
/// it rather than waiting for ever, `read` still works, and `stop` returns
/// the panic's message. No snapshot of the half-applied state is written.
#[test]
fn a_panicking_projection_fails_its_runner_with_the_panic_message() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options()).unwrap();
    for _ in 0..3 {
        log.append(&NewEvent::new("s", "Fine", b"")).unwrap();
    }
    let (runner, _) = ProjectionRunner::<Fragile>::start(&log, SnapshotStore::open(&log), 1).unwrap();
    assert!(runner.wait_for(2, WAIT).unwrap());
    let boom = log.append(&NewEvent::new("s", "Boom", b"")).unwrap();
    assert!(matches!(runner.wait_for(boom.position, WAIT), Err(Error::ProjectionFailed { .. })));
    assert_eq!(runner.read(|fragile| fragile.0), 3);
    let snapshots = runner.snapshots_written();
    match runner.stop() {
        Err(Error::ProjectionFailed { message, .. }) => {
            assert!(message.contains("no booms at position 3"), "{message}");
        }
        other => panic!("expected the panic, got {:?}", other.map(|fragile| fragile.0)),
    }
    let newest = SnapshotStore::open(&log).list("projection:fragile").unwrap();
    assert_eq!(newest.len() as u64, snapshots.min(3), "no snapshot after the panic");
    assert!(newest.iter().all(|entry| entry.meta.as_ref().unwrap().next_position <= 3));
}
