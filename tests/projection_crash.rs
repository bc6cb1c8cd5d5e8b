//! Checks that a projection killed mid-run resumes exactly where its saved
//! state stands: a child process appends account events while a projection
//! runner folds them and snapshots every few events; the parent kills it with
//! SIGKILL at a random moment, reopens, restarts the projection from its
//! latest snapshot and compares the read model with a brute-force replay. The
//! read model itself refuses an event it has already seen, so a repeated event
//! fails the run, and a missed one shows as a different balance.
//!
//! `CHRONOLOG_CRASH_SEED` replays a run; the seed is printed.

mod common;

use std::time::{Duration, Instant};

use chronolog::cqrs::ProjectionRunner;
use chronolog::snapshot::SnapshotStore;
use chronolog::{Durability, Log, LogOptions, NewEvent};
use common::bank::*;
use common::AckingChild;

const CHILD_ENV: &str = "CHRONOLOG_PROJECTION_CHILD_DIR";

fn options() -> LogOptions {
    LogOptions::default().segment_capacity_bytes(16 * 1024).durability(Durability::Sync)
}

#[test]
#[ignore = "run by projection_killed_mid_run_resumes_exactly as a child process"]
fn projection_child() {
    let Ok(directory) = std::env::var(CHILD_ENV) else { return };
    let log = Log::open(&directory, options()).expect("child open");
    let (runner, _) = ProjectionRunner::<Balances>::start(&log, SnapshotStore::open(&log), 5).expect("child start");
    let mut position = log.next_position();
    loop {
        let payload = serde_json::to_vec(&AccountEvent::Deposited(position as i64 % 97)).expect("encode");
        let stream = format!("account-{}", position % 5);
        log.append(&NewEvent::new(&stream, "Deposited", &payload)).expect("child append");
        if position.is_multiple_of(4) {
            log.append(&NewEvent::new("audit", "Noise", b"")).expect("child append");
        }
        position = log.next_position();
        // Let the projection fall behind and catch up in turn.
        if position.is_multiple_of(16) {
            runner.wait_for(position - 1, None).expect("child wait");
        }
        println!("ack {position} {}", runner.snapshots_written());
    }
}

#[test]
fn projection_killed_mid_run_resumes_exactly() {
    let seed: u64 = std::env::var("CHRONOLOG_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1;
    eprintln!("projection crash test seed: CHRONOLOG_CRASH_SEED={seed}");
    let mut random = seed;
    let mut next_random = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let directory = tempfile::tempdir().unwrap();
    // Restarts that resumed from a snapshot the killed child wrote (newer than
    // the one the parent's runner left at the end of the previous cycle).
    let mut resumed_from_child_snapshot = 0;
    let mut previous_final = 0;
    for cycle in 0..12 {
        let child = AckingChild::spawn("projection_child", CHILD_ENV, directory.path());
        let wanted = 5 + next_random() % 60;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen < wanted && Instant::now() < deadline {
            if child.acks.recv_timeout(Duration::from_millis(5)).is_ok() {
                seen += 1;
            }
        }
        child.kill();

        let log = Log::open(directory.path(), options())
            .unwrap_or_else(|error| panic!("cycle {cycle} (seed {seed}): reopen failed: {error}"));
        let (runner, report) = ProjectionRunner::<Balances>::start(&log, SnapshotStore::open(&log), 5)
            .unwrap_or_else(|error| panic!("cycle {cycle} (seed {seed}): restart failed: {error}"));
        assert!(report.skipped.is_empty(), "cycle {cycle} (seed {seed}): skipped {:?}", report.skipped);
        if report.snapshot.is_some_and(|next| next > previous_final) {
            resumed_from_child_snapshot += 1;
        }
        let last = log.next_position() - 1;
        assert!(runner.wait_for(last, Some(Duration::from_secs(30))).unwrap(), "cycle {cycle}: caught up");
        let events = common::read_all(&log);
        let expected = brute_force_balances(&events, last + 1);
        assert_eq!(runner.read(Clone::clone), expected, "cycle {cycle} (seed {seed})");
        // Dropping the runner saves a final snapshot; the next child starts
        // from it, and its own mid-run snapshots, newer, are what the next
        // restart resumes from.
        previous_final = runner.checkpoint();
        drop(runner);
    }
    assert!(
        resumed_from_child_snapshot >= 4,
        "only {resumed_from_child_snapshot} restarts resumed from a killed child's snapshot (seed {seed})"
    );
}
