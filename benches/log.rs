//! Criterion benchmarks of the core log: CRC32, record encode/decode, append
//! per durability level and batch size, full replay with CRC checks, and open.
//!
//! ```text
//! cargo bench --bench log
//! ```

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chronolog::record::{self, RecordHeader, FLAG_BATCH_END};
use chronolog::{Durability, Log, LogOptions, NewEvent};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const PAYLOAD_BYTES: usize = 128;
const STREAMS: usize = 1_000;

fn stream_names() -> Vec<String> {
    (0..STREAMS).map(|i| format!("account-{i}")).collect()
}

fn crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32");
    for bytes in [64usize, 256, 4096] {
        let data = vec![0xa5u8; bytes];
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(bytes), &data, |b, data| {
            b.iter(|| crc32fast::hash(black_box(data)))
        });
    }
    group.finish();
}

fn record_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    for payload_bytes in [64usize, 256, 4096] {
        let payload = vec![0xabu8; payload_bytes];
        let header = RecordHeader {
            position: 42,
            timestamp_ns: 1_700_000_000_000_000_000,
            stream_version: 7,
            flags: FLAG_BATCH_END,
        };
        let mut buffer = Vec::with_capacity(payload_bytes + 128);
        group.throughput(Throughput::Bytes(payload_bytes as u64));
        group.bench_with_input(BenchmarkId::new("encode", payload_bytes), &payload, |b, payload| {
            b.iter(|| {
                buffer.clear();
                record::encode_into(&mut buffer, &header, "account-42", "Deposited", b"", black_box(payload));
                black_box(buffer.len())
            })
        });
        buffer.clear();
        record::encode_into(&mut buffer, &header, "account-42", "Deposited", b"", &payload);
        group.bench_with_input(BenchmarkId::new("decode", payload_bytes), &buffer, |b, bytes| {
            b.iter(|| black_box(record::decode(black_box(bytes)).is_ok()))
        });
    }
    group.finish();
}

/// Appends `batches` batches of `batch` events to a fresh log; returns the time
/// spent appending (open and close excluded).
fn timed_appends(durability: Durability, batch: usize, batches: u64, streams: &[String]) -> Duration {
    let directory = tempfile::tempdir().expect("tempdir");
    let log = Log::open(directory.path(), LogOptions::default().durability(durability)).expect("open");
    let payload = [0x5au8; PAYLOAD_BYTES];
    let mut events: Vec<NewEvent<'_>> = Vec::with_capacity(batch);
    let started = Instant::now();
    for round in 0..batches {
        events.clear();
        events.extend(
            (0..batch).map(|i| NewEvent::new(&streams[(round as usize * batch + i) % STREAMS], "Deposited", &payload)),
        );
        log.append_batch(&events).expect("append");
    }
    if durability == Durability::None {
        log.sync().expect("sync");
    }
    started.elapsed()
}

fn append(c: &mut Criterion) {
    let streams = stream_names();
    let mut group = c.benchmark_group("append");
    group.sample_size(10).measurement_time(Duration::from_secs(4));
    for (durability, name) in [(Durability::None, "none"), (Durability::Sync, "sync")] {
        let batches: &[usize] = if durability == Durability::None { &[1, 16, 256, 1000] } else { &[1, 10, 256] };
        for &batch in batches {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter_custom(|iterations| timed_appends(durability, batch, iterations, &streams))
            });
        }
    }
    group.finish();
}

fn build_log(directory: &Path, events: u64) {
    let streams = stream_names();
    let log = Log::open(directory, LogOptions::default().durability(Durability::None)).expect("open");
    let payload = [0x5au8; PAYLOAD_BYTES];
    let mut position = 0;
    while position < events {
        let end = (position + 1000).min(events);
        let batch: Vec<NewEvent<'_>> =
            (position..end).map(|p| NewEvent::new(&streams[p as usize % STREAMS], "Deposited", &payload)).collect();
        log.append_batch(&batch).expect("append");
        position = end;
    }
    log.sync().expect("sync");
}

fn replay_and_open(c: &mut Criterion) {
    const EVENTS: u64 = 1_000_000;
    let directory = tempfile::tempdir().expect("tempdir");
    build_log(directory.path(), EVENTS);
    let options = LogOptions::default().durability(Durability::None);

    let mut group = c.benchmark_group("replay");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(EVENTS));
    let log = Log::open(directory.path(), options.clone()).expect("open");
    group.bench_function(BenchmarkId::new("full_crc_checked", EVENTS), |b| {
        b.iter(|| {
            let view = log.view();
            let mut bytes = 0usize;
            for event in view.iter() {
                bytes += event.expect("read").payload.len();
            }
            assert_eq!(bytes, EVENTS as usize * PAYLOAD_BYTES);
            bytes
        })
    });
    drop(log);
    group.finish();

    let mut group = c.benchmark_group("open");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.bench_function(BenchmarkId::new("clean", EVENTS), |b| {
        b.iter(|| black_box(Log::open(directory.path(), options.clone()).expect("open").next_position()))
    });
    group.finish();
}

criterion_group!(benches, crc, record_codec, append, replay_and_open);
criterion_main!(benches);
