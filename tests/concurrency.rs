//! Checks the promises about threads: several writers and readers at once,
//! where readers only ever see whole, correct events in position order with
//! per-stream versions that have no gap; and group commit, where threads
//! appending with `Durability::Sync` share fsyncs instead of paying one each.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use chronolog::{Durability, Log, LogOptions, NewEvent};

const WRITERS: usize = 4;
const READERS: usize = 4;
const EVENTS_PER_WRITER: u64 = 2_000;

fn payload(writer: usize, sequence: u64) -> Vec<u8> {
    // Long enough to span pages now and then, content tied to its identity.
    format!("writer={writer};sequence={sequence};").repeat(1 + (sequence % 9) as usize).into_bytes()
}

/// Spawns `count` threads running `work(index, log)`, all let go at once by
/// `start` (which also counts any thread of the caller's that waits on it).
fn spawn_together<T: Send + 'static>(
    count: usize,
    log: &Log,
    start: &Arc<Barrier>,
    work: impl Fn(usize, Log) -> T + Send + Sync + 'static,
) -> Vec<thread::JoinHandle<T>> {
    let work = Arc::new(work);
    (0..count)
        .map(|index| {
            let (log, start, work) = (log.clone(), Arc::clone(start), Arc::clone(&work));
            thread::spawn(move || {
                start.wait();
                work(index, log)
            })
        })
        .collect()
}

#[test]
fn readers_see_only_whole_events_in_order_while_writers_append() {
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_capacity_bytes(64 * 1024).durability(Durability::None);
    let log = Log::open(directory.path(), options).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(WRITERS + READERS));

    let writers = spawn_together(WRITERS, &log, &start, |writer, log| {
        let stream = format!("writer-{writer}");
        let mut sequence = 0;
        while sequence < EVENTS_PER_WRITER {
            // Alternate single appends and small batches.
            let count = (1 + sequence % 3).min(EVENTS_PER_WRITER - sequence);
            let payloads: Vec<Vec<u8>> = (sequence..sequence + count).map(|s| payload(writer, s)).collect();
            let events: Vec<NewEvent<'_>> = payloads.iter().map(|p| NewEvent::new(&stream, "Wrote", p)).collect();
            let appended = log.append_batch(&events).unwrap();
            for (offset, result) in appended.iter().enumerate() {
                assert_eq!(result.stream_version, sequence + offset as u64);
            }
            sequence += count;
        }
    });

    let readers_done = Arc::clone(&done);
    let readers = spawn_together(READERS, &log, &start, move |reader, log| {
        let mut passes = 0u64;
        loop {
            let finished = readers_done.load(Ordering::SeqCst);
            let view = log.view();
            let mut next_version = [0u64; WRITERS];
            // Half the readers go forwards, half backwards.
            let events: Vec<_> = if reader % 2 == 0 {
                view.iter().map(|e| e.unwrap().to_event()).collect()
            } else {
                let mut events: Vec<_> = view.iter_rev().map(|e| e.unwrap().to_event()).collect();
                events.reverse();
                events
            };
            assert_eq!(events.len() as u64, view.len());
            for (expected_position, event) in (view.first_position()..).zip(events) {
                assert_eq!(event.position, expected_position);
                let writer: usize = event.stream["writer-".len()..].parse().unwrap();
                assert_eq!(event.stream_version, next_version[writer], "gap in {}", event.stream);
                next_version[writer] += 1;
                assert_eq!(event.payload, payload(writer, event.stream_version));
            }
            passes += 1;
            if finished {
                break passes;
            }
        }
    });

    for writer in writers {
        writer.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert_eq!(log.next_position(), WRITERS as u64 * EVENTS_PER_WRITER);
}

#[test]
fn concurrent_sync_appenders_share_fsyncs() {
    const THREADS: usize = 8;
    const APPENDS_PER_THREAD: u64 = 40;
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), LogOptions::default().durability(Durability::Sync)).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let threads = spawn_together(THREADS, &log, &start, |thread, log| {
        let stream = format!("thread-{thread}");
        for _ in 0..APPENDS_PER_THREAD {
            log.append(&NewEvent::new(&stream, "Tick", b"0123456789abcdef")).unwrap();
            // Every acknowledged append is durable.
        }
    });
    for thread in threads {
        thread.join().unwrap();
    }
    let appends = THREADS as u64 * APPENDS_PER_THREAD;
    assert_eq!(log.durable_position(), appends);
    let syncs = log.sync_count();
    // Without group commit this would be one fsync per append. Rounds of 8
    // threads must need far fewer than 8 fsyncs each: demand at most half.
    assert!(syncs * 2 <= appends, "{syncs} fsyncs for {appends} appends by {THREADS} threads");
    eprintln!("group commit: {syncs} fsyncs for {appends} appends by {THREADS} threads");
}

/// A thread waiting for another's fdatasync sleeps with `thread::park`, and
/// anything in the process may unpark any thread: such a wake-up must not
/// make an append return before its event is durable. Run with waiters that
/// sleep at once and with waiters that poll first (the default).
#[test]
fn a_stray_unpark_never_ends_a_sync_wait_early() {
    stray_unparks_with(Duration::ZERO);
    stray_unparks_with(chronolog::log::SYNC_SPIN_MAX_DEFAULT);
}

fn stray_unparks_with(sync_spin_max: Duration) {
    const THREADS: usize = 6;
    const APPENDS_PER_THREAD: u64 = 60;
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().durability(Durability::Sync).sync_spin_max(sync_spin_max);
    let log = Log::open(directory.path(), options).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let appenders = spawn_together(THREADS, &log, &start, |thread, log| {
        let stream = format!("thread-{thread}");
        let mut early = 0;
        for _ in 0..APPENDS_PER_THREAD {
            let appended = log.append(&NewEvent::new(&stream, "Tick", b"0123456789abcdef")).unwrap();
            if log.durable_position() <= appended.position {
                early += 1;
            }
        }
        early
    });
    let handles: Vec<thread::Thread> = appenders.iter().map(|appender| appender.thread().clone()).collect();
    let disturber = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut unparks = 0u64;
            while !done.load(Ordering::SeqCst) {
                for handle in &handles {
                    handle.unpark();
                }
                unparks += 1;
                thread::yield_now();
            }
            unparks
        })
    };
    start.wait();
    let early: Vec<u64> = appenders.into_iter().map(|appender| appender.join().unwrap()).collect();
    done.store(true, Ordering::SeqCst);
    let unparks = disturber.join().unwrap();
    assert!(unparks > 0);
    assert_eq!(
        early,
        vec![0; THREADS],
        "appends acknowledged before their fdatasync ({unparks} rounds of unparks, spin {sync_spin_max:?})"
    );
    assert_eq!(log.durable_position(), THREADS as u64 * APPENDS_PER_THREAD);
}

#[test]
fn log_and_views_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<chronolog::LogView>();
}

#[test]
fn optimistic_concurrency_never_gives_a_gap_or_a_duplicate_version() {
    use chronolog::{Error, ExpectedVersion};
    const THREADS: usize = 6;
    const STREAMS: usize = 3;
    const SUCCESSES_PER_THREAD: u64 = 150;
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_capacity_bytes(16 * 1024).durability(Durability::None);
    let log = Log::open(directory.path(), options).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let threads = spawn_together(THREADS, &log, &start, |thread, log| {
        let (mut successes, mut conflicts) = (0u64, 0u64);
        let mut round = 0usize;
        while successes < SUCCESSES_PER_THREAD {
            let stream = format!("shared-{}", (thread + round) % STREAMS);
            round += 1;
            let current = log.stream_state(&stream).unwrap().map(|s| s.last_version);
            let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            // Widen the window between reading and writing so that the
            // threads really race for the same versions.
            thread::yield_now();
            let payload = format!("{thread}:{successes}");
            let event = NewEvent::new(&stream, "Claimed", payload.as_bytes()).with_expected_version(expected);
            match log.append(&event) {
                Ok(appended) => {
                    assert_eq!(appended.stream_version, current.map_or(0, |v| v + 1));
                    successes += 1;
                }
                Err(Error::WrongExpectedVersion { stream: s, expected: e, actual }) => {
                    assert_eq!((s, e), (stream, expected));
                    assert_ne!(actual, current, "a conflict must report the version that won");
                    conflicts += 1;
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        conflicts
    });
    let conflicts: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("optimistic concurrency: {conflicts} conflicts");
    let total = THREADS as u64 * SUCCESSES_PER_THREAD;
    assert_eq!(log.next_position(), total, "only successful appends wrote");
    let mut next_version = [0u64; STREAMS];
    for event in log.view().iter() {
        let event = event.unwrap();
        let index: usize = event.stream["shared-".len()..].parse().unwrap();
        assert_eq!(event.stream_version, next_version[index], "gap or duplicate in {}", event.stream);
        next_version[index] += 1;
    }
    assert_eq!(next_version.iter().sum::<u64>(), total);
}
