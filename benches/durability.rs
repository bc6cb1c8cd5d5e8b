//! Criterion benchmarks of appends by payload size, batch size and durability
//! level, of durable batches against a bare file doing the same fdatasync per
//! batch, and of group commit with 1, 4 and 16 appending threads.
//!
//! ```text
//! cargo bench --bench durability
//! ```

use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use chronolog::record::{self, RecordHeader, FLAG_BATCH_END};
use chronolog::{Durability, Log, LogOptions, NewEvent};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const STREAMS: usize = 1_000;

fn names() -> Vec<String> {
    (0..STREAMS).map(|s| format!("account-{s}")).collect()
}

/// Appends `batches` batches of `batch` events of `payload_bytes` to a fresh
/// log; the time of the appends only (plus the final sync for `None`).
fn timed(durability: Durability, payload_bytes: usize, batch: usize, batches: u64, names: &[String]) -> Duration {
    let directory = tempfile::tempdir().expect("tempdir");
    let log = Log::open(directory.path(), LogOptions::default().durability(durability)).expect("open");
    let payload = vec![0x5au8; payload_bytes];
    let mut events = Vec::with_capacity(batch);
    let started = Instant::now();
    for round in 0..batches {
        events.clear();
        events.extend(
            (0..batch).map(|i| NewEvent::new(&names[(round as usize * batch + i) % STREAMS], "Deposited", &payload)),
        );
        log.append_batch(&events).expect("append");
    }
    if durability == Durability::None {
        log.sync().expect("sync");
    }
    started.elapsed()
}

fn matrix(c: &mut Criterion) {
    let names = names();
    for (durability, label) in [(Durability::None, "none"), (Durability::Sync, "sync")] {
        let mut group = c.benchmark_group(format!("append_matrix/{label}"));
        group.sample_size(10).measurement_time(Duration::from_secs(3));
        for payload_bytes in [64usize, 256, 4096] {
            for batch in [1usize, 16, 256] {
                group.throughput(Throughput::Elements(batch as u64));
                let id = BenchmarkId::new(format!("payload_{payload_bytes}"), format!("batch_{batch}"));
                group.bench_function(id, |b| b.iter_custom(|n| timed(durability, payload_bytes, batch, n, &names)));
            }
        }
        group.finish();
    }
}

/// Durable batches of 10 through the log against the same records written to
/// a bare file with one `write_all` and one fdatasync per batch.
fn durable_against_bare_file(c: &mut Criterion) {
    const BATCH: usize = 10;
    let names = names();
    let mut group = c.benchmark_group("durable_batches_of_10");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("chronolog", |b| b.iter_custom(|n| timed(Durability::Sync, 128, BATCH, n, &names)));
    group.bench_function("bare_file_fdatasync", |b| {
        b.iter_custom(|n| {
            let directory = tempfile::tempdir().expect("tempdir");
            let mut file = std::fs::File::create(directory.path().join("bare")).expect("create");
            let payload = [0x5au8; 128];
            let mut buffer = Vec::with_capacity(BATCH * 256);
            let started = Instant::now();
            for round in 0..n {
                buffer.clear();
                for i in 0..BATCH as u64 {
                    let position = round * BATCH as u64 + i;
                    let header =
                        RecordHeader { position, timestamp_ns: position, stream_version: 0, flags: FLAG_BATCH_END };
                    record::encode_into(
                        &mut buffer,
                        &header,
                        &names[position as usize % STREAMS],
                        "Deposited",
                        b"",
                        &payload,
                    );
                }
                file.write_all(&buffer).expect("write");
                file.sync_data().expect("fdatasync");
            }
            started.elapsed()
        })
    });
    group.finish();
}

/// `threads` threads each appending single events with `Durability::Sync`:
/// group commit shares the fdatasyncs.
fn group_commit(c: &mut Criterion) {
    const APPENDS_PER_THREAD: u64 = 50;
    let mut group = c.benchmark_group("group_commit");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for threads in [1usize, 4, 16] {
        group.throughput(Throughput::Elements(threads as u64 * APPENDS_PER_THREAD));
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let directory = tempfile::tempdir().expect("tempdir");
                    let log =
                        Log::open(directory.path(), LogOptions::default().durability(Durability::Sync)).expect("open");
                    let start = Arc::new(Barrier::new(threads + 1));
                    let handles: Vec<_> = (0..threads)
                        .map(|thread| {
                            let log = log.clone();
                            let start = Arc::clone(&start);
                            std::thread::spawn(move || {
                                let stream = format!("thread-{thread}");
                                start.wait();
                                for _ in 0..APPENDS_PER_THREAD {
                                    log.append(&NewEvent::new(&stream, "Tick", &[0u8; 128])).expect("append");
                                }
                            })
                        })
                        .collect();
                    start.wait();
                    let started = Instant::now();
                    for handle in handles {
                        handle.join().expect("thread");
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, durable_against_bare_file, group_commit, matrix);
criterion_main!(benches);
