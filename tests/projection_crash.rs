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

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chronolog::cqrs::ProjectionRunner;
use chronolog::snapshot::SnapshotStore;
use chronolog::{Durability, Log, LogOptions, NewEvent};
use common::bank::*;

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
    let executable = std::env::current_exe().unwrap();
    let mut resumed_from_snapshot = 0;
    for cycle in 0..12 {
        let mut child = Command::new(&executable)
            .args(["--exact", "projection_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, directory.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("ack ") {
                    let _ = sender.send(line);
                }
            }
        });
        let wanted = 5 + next_random() % 60;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen < wanted && Instant::now() < deadline {
            if receiver.recv_timeout(Duration::from_millis(5)).is_ok() {
                seen += 1;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();

        let log = Log::open(directory.path(), options())
            .unwrap_or_else(|error| panic!("cycle {cycle} (seed {seed}): reopen failed: {error}"));
        let (runner, report) = ProjectionRunner::<Balances>::start(&log, SnapshotStore::open(&log), 5)
            .unwrap_or_else(|error| panic!("cycle {cycle} (seed {seed}): restart failed: {error}"));
        assert!(report.skipped.is_empty(), "cycle {cycle} (seed {seed}): skipped {:?}", report.skipped);
        if report.snapshot.is_some() {
            resumed_from_snapshot += 1;
        }
        let last = log.next_position() - 1;
        assert!(runner.wait_for(last, Some(Duration::from_secs(30))).unwrap(), "cycle {cycle}: caught up");
        let events = common::read_all(&log);
        let expected = brute_force_balances(&events, last + 1);
        assert_eq!(runner.read(Clone::clone), expected, "cycle {cycle} (seed {seed})");
        // Dropping the runner saves a final snapshot; the next child starts
        // from it, and its own mid-run snapshots, newer, are what the next
        // restart resumes from.
        drop(runner);
    }
    assert!(resumed_from_snapshot >= 6, "most restarts should start from a snapshot (seed {seed})");
}
