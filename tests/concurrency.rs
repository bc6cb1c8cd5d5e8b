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
                Err(Error::WrongExpectedVersion { stream: s, expected: e, actual, .. }) => {
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

/// How many streams the writer of `follow_a_changing_writer` appends to.
const STREAMS: u64 = 5;

/// What the writer of `a_read_only_reader_follows_appends_truncations_and_purges`
/// puts in each event: its position and the writer's count of appended
/// events, which grows along the positions of any state the log is ever in
/// (a truncation cuts the tail, and later appends come after what is left).
fn stamped(position: u64, sequence: u64) -> Vec<u8> {
    let stamp = format!("position={position};sequence={sequence};");
    stamp.repeat(1 + (sequence % 7) as usize).into_bytes()
}

/// The position and sequence an event's payload says, if it is one
/// [`stamped`] made.
fn stamp_of(payload: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let first = text.split_inclusive(';').take(2).collect::<String>();
    if first.is_empty() || text != first.repeat(text.len() / first.len()) {
        return None;
    }
    let mut fields = first.split(';').filter(|field| !field.is_empty());
    let position = fields.next()?.strip_prefix("position=")?.parse().ok()?;
    let sequence = fields.next()?.strip_prefix("sequence=")?.parse().ok()?;
    Some((position, sequence))
}

/// The view's other ways in, against its scan (`events`): newest first, by
/// position, a stream's state and its backward read, the position at a
/// time, and the stream count.
fn check_other_reads(view: &chronolog::LogView, events: &[chronolog::Event], stream: &str, views: u64) {
    let label = format!("view {views} ({}..{})", view.first_position(), view.next_position());
    let newest_first: Vec<u64> = view.iter_rev().map(|event| event.expect("iter_rev").position).collect();
    assert!(newest_first.iter().rev().eq(events.iter().map(|event| &event.position)), "{label}: iter_rev");
    for event in events.iter().step_by(17) {
        let got = view.get(event.position).expect("get").map(|found| found.to_event());
        assert_eq!(got.as_ref(), Some(event), "{label}: get({})", event.position);
    }
    let last = events.iter().rev().find(|event| event.stream == stream);
    let state = view.stream_state(stream).expect("stream_state");
    assert_eq!(
        state.map(|state| (state.last_version, state.last_position)),
        last.map(|event| (event.stream_version, event.position)),
        "{label}: stream_state({stream})"
    );
    let backward: Vec<u64> = view
        .read_stream_backward(stream, None)
        .expect("a backward read")
        .map(|event| event.expect("a backward read reads").position)
        .take_while(|&position| position >= view.first_position())
        .collect();
    let scanned: Vec<u64> = events.iter().rev().filter(|event| event.stream == stream).map(|e| e.position).collect();
    assert_eq!(backward, scanned, "{label}: the backward read of {stream}");
    if let Some(middle) = events.get(events.len() / 2) {
        let at = view.position_at(middle.timestamp_ns).expect("position_at");
        let expected = events.iter().rev().find(|event| event.timestamp_ns <= middle.timestamp_ns).map(|e| e.position);
        assert_eq!(at, expected, "{label}: position_at({})", middle.timestamp_ns);
    }
    let distinct: std::collections::HashSet<&str> = events.iter().map(|event| event.stream.as_str()).collect();
    let count = view.stream_count().expect("stream_count");
    assert!(
        count >= distinct.len() as u64 && count <= STREAMS,
        "{label}: {count} streams, {} in the view",
        distinct.len()
    );
}

/// The names in `directory`, sorted (for failure messages).
fn file_names(directory: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .map(|entries| entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A read-only handle, as another process holds it, follows a writer that
/// appends, rolls small segments, truncates its tail and purges its head.
/// Every refresh and every read must succeed (a live writer is not
/// corruption; files it deletes or cuts must not fault a reader's maps), and
/// every view must read a state the log was in: consecutive positions, each
/// event the one written there, sequences growing along the positions, every
/// stream's versions without a gap, and a stream read agreeing with the scan;
/// and `verify` finds no problem.
#[test]
fn a_read_only_reader_follows_appends_truncations_and_purges() {
    follow_a_changing_writer(true);
}

/// The same, with views of the writer's own handle taken by another thread.
#[test]
fn views_of_the_writing_handle_follow_appends_truncations_and_purges() {
    follow_a_changing_writer(false);
}

fn follow_a_changing_writer(read_only: bool) {
    const ROUNDS: u64 = 600;
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_capacity_bytes(16 * 1024).durability(Durability::None);
    let log = Log::open(directory.path(), options.clone()).unwrap();
    log.append(&NewEvent::new("s0", "Stamped", &stamped(0, 0))).unwrap();
    let reader = if read_only { Log::open_read_only(directory.path(), options.clone()).unwrap() } else { log.clone() };
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(std::sync::Mutex::new(std::collections::HashSet::from([(0u64, 0u64)])));

    let writer = {
        let (done, written) = (Arc::clone(&done), Arc::clone(&written));
        let (directory, options) = (directory.path().to_path_buf(), options.clone());
        thread::spawn(move || {
            let mut log = log;
            // A fixed xorshift: the same operations on every run.
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            let mut random = move |bound: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % bound
            };
            let names: Vec<String> = (0..STREAMS).map(|stream| format!("s{stream}")).collect();
            let mut sequence = 1;
            let (mut truncations, mut purged) = (0, 0);
            for round in 0..ROUNDS {
                let next = log.next_position();
                let count = 1 + random(8);
                let payloads: Vec<Vec<u8>> = (0..count).map(|i| stamped(next + i, sequence + i)).collect();
                let events: Vec<NewEvent<'_>> = payloads
                    .iter()
                    .enumerate()
                    .map(|(i, payload)| {
                        NewEvent::new(&names[((sequence + i as u64) % STREAMS) as usize], "Stamped", payload)
                    })
                    .collect();
                log.append_batch(&events).unwrap();
                written.lock().unwrap().extend((0..count).map(|i| (next + i, sequence + i)));
                sequence += count;
                if round % 25 == 24 {
                    let (first, next) = (log.first_position(), log.next_position());
                    let keep = next - 1 - random(40).min(next - 1 - first);
                    log.truncate_after(keep).unwrap();
                    truncations += 1;
                }
                if round % 60 == 59 {
                    purged += log.purge_before(log.next_position().saturating_sub(150)).unwrap();
                }
                // The writer process restarts: a clean close (the active
                // segment's index and the manifest written), then an open
                // that takes the segments from the manifest. Only where the
                // reader is another handle: a clone of this one keeps it open.
                if read_only && round % 100 == 99 {
                    drop(log);
                    log = Log::open(&directory, options.clone()).unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
            (truncations, purged)
        })
    };

    let mut seen = std::collections::HashSet::new();
    let mut views = 0;
    let mut view = reader.view();
    loop {
        let finished = done.load(Ordering::SeqCst);
        // A view is read on three turns while the writer changes the files
        // under it, then replaced by a new one.
        if views % 3 == 0 || finished {
            reader.refresh().expect("a live writer is not corruption");
            view = reader.view();
        }
        let events: Vec<_> = view.iter().map(|event| event.expect("a view reads").to_event()).collect();
        let positions: Vec<u64> = events.iter().map(|event| event.position).collect();
        let expected: Vec<u64> = (view.first_position()..view.next_position()).collect();
        assert_eq!(positions, expected, "view {views}: consecutive positions");
        let mut last_sequence = None;
        let mut versions = std::collections::HashMap::new();
        for event in &events {
            let (position, sequence) = stamp_of(&event.payload).expect("a stamped payload");
            assert_eq!(position, event.position, "view {views}: the event written at its position");
            assert!(last_sequence < Some(sequence), "view {views}: sequences grow at {position}");
            last_sequence = Some(sequence);
            if let Some(previous) = versions.insert(event.stream.clone(), event.stream_version) {
                assert_eq!(event.stream_version, previous + 1, "view {views}: {} has no gap", event.stream);
            }
            seen.insert((position, sequence));
        }
        let stream = format!("s{}", views % STREAMS);
        let first_version = events.iter().find(|event| event.stream == stream).map_or(0, |e| e.stream_version);
        let read: Vec<u64> = match view.read_stream(&stream, first_version) {
            Ok(events) => events.map(|event| event.expect("a stream read reads").position).collect(),
            Err(error) => panic!(
                "view {views} ({}..{}): a stream read: {error:?}; files: {:?}",
                view.first_position(),
                view.next_position(),
                file_names(directory.path())
            ),
        };
        let scanned: Vec<u64> = events.iter().filter(|event| event.stream == stream).map(|e| e.position).collect();
        assert_eq!(read, scanned, "view {views}: the stream read agrees with the scan");
        check_other_reads(&view, &events, &stream, views);
        // A live writer is no damage to `verify` either.
        if views.is_multiple_of(10) {
            let report = reader.verify().expect("verify");
            assert!(
                report.problems.is_empty(),
                "view {views}: a healthy log verified with problems: {:?}; files: {:?}",
                report.problems,
                file_names(directory.path())
            );
        }
        views += 1;
        if finished {
            break;
        }
    }
    let (truncations, purged) = writer.join().unwrap();
    assert!(truncations >= ROUNDS / 25 && purged > 0, "{truncations} truncations, {purged} segments purged");
    assert!(views > 1, "the reader took {views} views");
    let written = written.lock().unwrap();
    assert!(seen.is_subset(&written), "every event read was written");
}

/// Appenders with `Durability::Sync` (group commit) while another thread
/// truncates and purges: a truncation ends the sync waits of the tail it cuts
/// (their generation), so no append hangs or fails, and what is left reopens
/// whole: consecutive positions, every stream's versions without a gap, each
/// event one its thread wrote, in the order it wrote them.
#[test]
fn sync_appenders_survive_truncations_and_purges() {
    const THREADS: usize = 4;
    const APPENDS_PER_THREAD: u64 = 150;
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_capacity_bytes(16 * 1024).durability(Durability::Sync);
    let log = Log::open(directory.path(), options.clone()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(THREADS + 1));
    // Odd while a truncation runs: an append that saw it even and unchanged
    // on both sides raced none, and must be durable when it returns.
    let cutting = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let appenders = {
        let cutting = Arc::clone(&cutting);
        spawn_together(THREADS, &log, &start, move |thread, log| {
            let stream = format!("thread-{thread}");
            let mut checked = 0;
            for sequence in 0..APPENDS_PER_THREAD {
                let payload = stamped(thread as u64, sequence);
                let before = cutting.load(Ordering::SeqCst);
                let appended = log.append(&NewEvent::new(&stream, "Stamped", &payload)).unwrap();
                let durable = log.durable_position() > appended.position;
                if before.is_multiple_of(2) && cutting.load(Ordering::SeqCst) == before {
                    assert!(durable, "thread {thread}: an acknowledged Sync append is durable");
                    checked += 1;
                }
            }
            checked
        })
    };
    let maintenance = {
        let (log, done, start, cutting) = (log.clone(), Arc::clone(&done), Arc::clone(&start), Arc::clone(&cutting));
        thread::spawn(move || {
            start.wait();
            let (mut truncations, mut purged) = (0u32, 0usize);
            let mut round = 0u64;
            while !done.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(3));
                round += 1;
                let (first, next) = (log.first_position(), log.next_position());
                if next > first + 20 && round.is_multiple_of(2) {
                    // Appends race this read of the end: a position already
                    // cut by nobody else is always in range.
                    cutting.fetch_add(1, Ordering::SeqCst);
                    log.truncate_after(next - 1 - (round * 7) % 20).unwrap();
                    cutting.fetch_add(1, Ordering::SeqCst);
                    truncations += 1;
                } else if next > 200 {
                    purged += log.purge_before(next - 200).unwrap();
                }
            }
            (truncations, purged)
        })
    };
    let checked: u64 = appenders.into_iter().map(|appender| appender.join().unwrap()).sum();
    done.store(true, Ordering::SeqCst);
    let (truncations, purged) = maintenance.join().unwrap();
    assert!(truncations > 0 && checked > 0, "{truncations} truncations, {purged} purged, {checked} checked");
    eprintln!("{truncations} truncations, {purged} segments purged, {checked} appends checked durable");
    assert_eq!(log.durable_position(), log.next_position());
    let (first, next) = (log.first_position(), log.next_position());
    drop(log);

    let log = Log::open(directory.path(), options).unwrap();
    assert_eq!((log.first_position(), log.next_position()), (first, next), "reopened as it was");
    assert!(log.verify().unwrap().problems.is_empty());
    let events = common::read_all(&log);
    let positions: Vec<u64> = events.iter().map(|event| event.position).collect();
    assert_eq!(positions, (first..next).collect::<Vec<_>>());
    let mut last = std::collections::HashMap::new();
    for event in &events {
        let (thread, sequence) = stamp_of(&event.payload).expect("a stamped payload");
        assert_eq!(event.stream, format!("thread-{thread}"));
        if let Some((version, previous)) = last.insert(thread, (event.stream_version, sequence)) {
            assert_eq!(event.stream_version, version + 1, "{}: no gap", event.stream);
            assert!(sequence > previous, "{}: in the order written", event.stream);
        }
    }
}
