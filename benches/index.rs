//! Criterion benchmarks of the indexes on large logs: time seek, stream read,
//! open time against log size (after a clean close, and after a crash: the
//! recovery), and bulk append against a bare file writer (the
//! cost of everything the log maintains besides the bytes: indexes, stream
//! versions, locking).
//!
//! ```text
//! cargo bench --bench index                 # 1e5, 1e6 and 1e7 events
//! CHRONOLOG_BENCH_MAX_EVENTS=1000000 cargo bench --bench index   # smaller
//! ```

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use chronolog::record::{self, RecordHeader, FLAG_BATCH_END};
use chronolog::{Durability, Log, LogOptions, NewEvent};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const PAYLOAD_BYTES: usize = 100;
/// Events per stream: streams are written round robin, so each stream's 100
/// events are spread over the whole log (the hard case for a stream read).
const EVENTS_PER_STREAM: u64 = 100;
const BATCH: u64 = 1000;
const BASE_TIME_NS: u64 = 1_700_000_000_000_000_000;

fn sizes() -> Vec<u64> {
    let max: u64 = std::env::var("CHRONOLOG_BENCH_MAX_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    [100_000u64, 1_000_000, 10_000_000].into_iter().filter(|&n| n <= max).collect()
}

fn options() -> LogOptions {
    LogOptions::default().durability(Durability::None)
}

/// Writes `events` events, `events / 100` streams of 100 events, one
/// microsecond apart (timestamps given, so that seeks are reproducible).
fn build(directory: &Path, events: u64) {
    let streams = events / EVENTS_PER_STREAM;
    let names: Vec<String> = (0..streams).map(|s| format!("stream-{s:08}")).collect();
    let payload = [0x42u8; PAYLOAD_BYTES];
    let log = Log::open(directory, options()).expect("open");
    let mut batch = Vec::with_capacity(BATCH as usize);
    let mut position = 0;
    while position < events {
        batch.clear();
        let end = (position + BATCH).min(events);
        for p in position..end {
            let event = NewEvent::new(&names[(p % streams) as usize], "Happened", &payload)
                .with_timestamp_ns(BASE_TIME_NS + p * 1000);
            batch.push(event);
        }
        log.append_batch(&batch).expect("append");
        position = end;
    }
    log.sync().expect("sync");
}

/// Leaves the log as a crash would: without the index a clean close writes
/// beside the active segment, so that open lists the directory and scans the
/// active segment's records (the recovery).
fn remove_clean_close_index(directory: &Path) {
    let last = std::fs::read_dir(directory)
        .expect("list")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".seg"))
        .max()
        .expect("a segment");
    let index = directory.join(last.replace(".seg", ".idx"));
    std::fs::remove_file(&index).expect("the clean-close index");
}

fn large_logs(c: &mut Criterion) {
    for events in sizes() {
        let directory = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        build(directory.path(), events);
        eprintln!("built a log of {events} events in {:.2?}", started.elapsed());

        let mut group = c.benchmark_group("open");
        group.sample_size(20).measurement_time(Duration::from_secs(3));
        group.bench_function(BenchmarkId::new("clean", events), |b| {
            b.iter(|| black_box(Log::open(directory.path(), options()).expect("open").next_position()))
        });
        group.finish();

        let mut group = c.benchmark_group("open");
        group.sample_size(10).measurement_time(Duration::from_secs(3));
        group.bench_function(BenchmarkId::new("after_crash", events), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    remove_clean_close_index(directory.path());
                    let started = Instant::now();
                    let log = Log::open(directory.path(), options()).expect("open");
                    total += started.elapsed();
                    black_box(log.next_position());
                    // Its clean close, not timed, writes the index again.
                    drop(log);
                }
                total
            })
        });
        group.finish();

        let log = Log::open(directory.path(), options()).expect("open");
        let view = log.view();
        // Warm the lazily loaded segment indexes once, as a long-running
        // process would have.
        for position in (0..events).step_by(100_000) {
            view.iter_from(position).next();
        }
        for stream in 0..(events / EVENTS_PER_STREAM).min(10) {
            let _ = view.read_stream(&format!("stream-{stream:08}"), 0).expect("stream").count();
        }

        let mut group = c.benchmark_group("time_seek");
        let mut probe = 0u64;
        group.bench_function(BenchmarkId::new("position_at", events), |b| {
            b.iter(|| {
                probe = (probe + 7_919_993) % events;
                let position = view.position_at(BASE_TIME_NS + probe * 1000 + 500).expect("seek");
                assert_eq!(position, Some(probe));
            })
        });
        group.finish();

        let streams = events / EVENTS_PER_STREAM;
        let mut group = c.benchmark_group("stream_read");
        let mut stream = 0u64;
        group.bench_function(BenchmarkId::new("first_event_of_100", events), |b| {
            b.iter(|| {
                stream = (stream + 7_919) % streams;
                let name = format!("stream-{stream:08}");
                let first = view.read_stream(&name, 0).expect("stream").next().expect("one").expect("read");
                black_box(first.position)
            })
        });
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("whole_100_event_stream", events), |b| {
            b.iter(|| {
                stream = (stream + 7_919) % streams;
                let name = format!("stream-{stream:08}");
                let mut count = 0;
                for event in view.read_stream(&name, 0).expect("stream") {
                    count += event.expect("read").payload.len();
                }
                assert_eq!(count, PAYLOAD_BYTES * EVENTS_PER_STREAM as usize);
            })
        });
        group.finish();
    }
}

/// Bulk append through the log against the same records written to a bare
/// file with `write_all` from one buffer per batch (no index, no stream
/// versions, no lock): the ratio bounds what the log's bookkeeping costs.
fn append_against_bare_file(c: &mut Criterion) {
    const EVENTS: u64 = 200_000;
    let names: Vec<String> = (0..10_000).map(|s| format!("stream-{s:08}")).collect();
    let payload = [0x42u8; PAYLOAD_BYTES];
    let mut group = c.benchmark_group("bulk_append");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("chronolog", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let directory = tempfile::tempdir().expect("tempdir");
                let log = Log::open(directory.path(), options()).expect("open");
                let mut batch = Vec::with_capacity(BATCH as usize);
                let started = Instant::now();
                let mut position = 0;
                while position < EVENTS {
                    batch.clear();
                    batch.extend(
                        (position..position + BATCH)
                            .map(|p| NewEvent::new(&names[(p % 10_000) as usize], "Happened", &payload)),
                    );
                    log.append_batch(&batch).expect("append");
                    position += BATCH;
                }
                log.sync().expect("sync");
                total += started.elapsed();
            }
            total
        })
    });
    group.bench_function("bare_file", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let directory = tempfile::tempdir().expect("tempdir");
                let mut file = std::fs::File::create(directory.path().join("bare")).expect("create");
                let mut buffer = Vec::with_capacity(BATCH as usize * 200);
                let started = Instant::now();
                let mut position = 0;
                while position < EVENTS {
                    buffer.clear();
                    for p in position..position + BATCH {
                        let header = RecordHeader {
                            position: p,
                            timestamp_ns: p,
                            stream_version: p / 10_000,
                            flags: FLAG_BATCH_END,
                        };
                        record::encode_into(
                            &mut buffer,
                            &header,
                            &names[(p % 10_000) as usize],
                            "Happened",
                            b"",
                            &payload,
                        );
                    }
                    file.write_all(&buffer).expect("write");
                    position += BATCH;
                }
                file.sync_data().expect("sync");
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, append_against_bare_file, large_logs);
criterion_main!(benches);
