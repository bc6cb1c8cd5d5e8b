//! Checks the durability promise against real crashes: a child process appends
//! with `Durability::Sync` and prints each acknowledged position; the parent
//! kills it with SIGKILL at a random moment, reopens the log, and checks that
//! every acknowledged event is present and intact, that the log is a gap-free
//! prefix of what was written (stream versions included), and that appending
//! works again. Segments are tiny so that kills also land in segment rolls.
//!
//! Set `CHRONOLOG_CRASH_CYCLES` to run more cycles and `CHRONOLOG_CRASH_SEED`
//! to replay a run; the seed is printed on failure.

mod common;

use std::time::{Duration, Instant};

use chronolog::{Durability, Log, LogOptions, NewEvent};
use common::*;

const CHILD_ENV: &str = "CHRONOLOG_CRASH_CHILD_DIR";

fn options() -> LogOptions {
    LogOptions::default().segment_capacity_bytes(SMALL_SEGMENT_BYTES).durability(Durability::Sync)
}

/// The child: appends deterministic batches forever, printing `ack N` after
/// each append returns (N = one past the last position acknowledged).
#[test]
#[ignore = "run by crash_kill_and_recover as a child process"]
fn crash_child_writer() {
    let Ok(directory) = std::env::var(CHILD_ENV) else { return };
    let log = Log::open(&directory, options()).expect("child open");
    let mut position = log.next_position();
    let mut batch = 1 + position % 4;
    loop {
        let end = position + batch;
        let streams: Vec<String> = (position..end).map(stream_of).collect();
        let payloads: Vec<Vec<u8>> = (position..end).map(payload_of).collect();
        let events: Vec<NewEvent<'_>> =
            streams.iter().zip(&payloads).map(|(stream, payload)| NewEvent::new(stream, "Happened", payload)).collect();
        log.append_batch(&events).expect("child append");
        position = end;
        println!("ack {position}");
        batch = batch % 4 + 1;
    }
}

/// xorshift64*: enough randomness for kill timing, reproducible from a seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn crash_kill_and_recover() {
    let cycles: u64 = std::env::var("CHRONOLOG_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed: u64 = std::env::var("CHRONOLOG_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1;
    // Printed with the test's output when it fails: rerun with this seed.
    eprintln!("crash test seed: CHRONOLOG_CRASH_SEED={seed}");
    let mut random = Random(seed);
    let directory = tempfile::tempdir().unwrap();
    let mut acknowledged = 0u64;
    let mut kills_after_ack = 0;
    for cycle in 0..cycles {
        let child = AckingChild::spawn("crash_child_writer", CHILD_ENV, directory.path());
        // Wait for a random number of acknowledgements (0 to 7), or a short
        // random time, then kill: a kill may land anywhere, even during open.
        let wanted = random.next() % 8;
        let deadline = Instant::now() + Duration::from_millis(5 + random.next() % 40);
        let mut seen = 0;
        while seen < wanted && Instant::now() < deadline {
            if let Ok(position) = child.acks.recv_timeout(Duration::from_millis(1)) {
                acknowledged = acknowledged.max(position.parse().unwrap());
                seen += 1;
            }
        }
        // Acknowledgements printed before the kill count too.
        for position in child.kill().try_iter() {
            acknowledged = acknowledged.max(position.parse().unwrap());
        }
        if seen > 0 {
            kills_after_ack += 1;
        }

        let log = Log::open(directory.path(), options())
            .unwrap_or_else(|error| panic!("cycle {cycle} (seed {seed}): reopen failed: {error}"));
        let next = log.next_position();
        assert!(
            next >= acknowledged,
            "cycle {cycle} (seed {seed}): acknowledged up to {acknowledged} but the log ends at {next}"
        );
        assert_deterministic(&log, next);
        acknowledged = next;
    }
    eprintln!("crash test: {cycles} cycles, {kills_after_ack} killed after an acknowledgement, {acknowledged} events");
    assert!(kills_after_ack > cycles / 4, "too few kills came after an append (seed {seed})");
    let log = Log::open(directory.path(), options()).unwrap();
    let next = log.next_position();
    append_range(&log, next, next + 10, 3);
    assert_deterministic(&log, next + 10);
    assert!(segment_files(directory.path()).len() > 2, "the crashes never crossed a segment roll");
}
