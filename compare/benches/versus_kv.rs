//! chronolog against two embedded key-value stores written in Rust, fjall (an
//! LSM tree) and redb (a B-tree), used as event stores the way one would:
//! events keyed by position, plus a (stream, version) -> position index, on
//! the same workload as `versus_sqlite.rs`, in the same run. (RocksDB itself
//! takes too long to build on this 2-core machine.)
//!
//! ```text
//! cd compare && cargo bench --bench versus_kv
//! ```

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chronolog::{Durability, Log, LogOptions};
use chronolog_compare::{
    chronolog_append, names, BULK_BATCH, DURABLE_BATCH, DURABLE_BATCHES, EVENTS, PAYLOAD_BYTES, STREAMS,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fjall::{PartitionCreateOptions, PersistMode};
use redb::{ReadableTable, TableDefinition};

const REDB_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const REDB_STREAMS: TableDefinition<(&str, u64), u64> = TableDefinition::new("streams");

/// The stored value of an event: stream, type and payload, length-prefixed.
fn value(stream: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + stream.len() + 9 + payload.len());
    bytes.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    bytes.extend_from_slice(stream.as_bytes());
    bytes.push(9);
    bytes.extend_from_slice(b"Deposited");
    bytes.extend_from_slice(payload);
    bytes
}

fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = stream.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn redb_append(db: &redb::Database, names: &[String], from: u64, to: u64, batch: u64, durability: redb::Durability) {
    let payload = [0x5au8; PAYLOAD_BYTES];
    let mut position = from;
    while position < to {
        let mut transaction = db.begin_write().expect("begin");
        transaction.set_durability(durability);
        {
            let mut events = transaction.open_table(REDB_EVENTS).expect("events");
            let mut streams = transaction.open_table(REDB_STREAMS).expect("streams");
            for p in position..(position + batch).min(to) {
                let stream = &names[(p % STREAMS) as usize];
                events.insert(p, value(stream, &payload).as_slice()).expect("insert");
                streams.insert((stream.as_str(), p / STREAMS), p).expect("insert");
            }
        }
        transaction.commit().expect("commit");
        position += batch;
    }
}

fn fjall_open(path: &Path) -> (fjall::Keyspace, fjall::PartitionHandle, fjall::PartitionHandle) {
    let keyspace = fjall::Config::new(path).open().expect("open fjall");
    let events = keyspace.open_partition("events", PartitionCreateOptions::default()).expect("events");
    let streams = keyspace.open_partition("streams", PartitionCreateOptions::default()).expect("streams");
    (keyspace, events, streams)
}

fn fjall_append(
    store: &(fjall::Keyspace, fjall::PartitionHandle, fjall::PartitionHandle),
    names: &[String],
    from: u64,
    to: u64,
    batch: u64,
    durability: Option<PersistMode>,
) {
    let (keyspace, events, streams) = store;
    let payload = [0x5au8; PAYLOAD_BYTES];
    let mut position = from;
    while position < to {
        let mut write = keyspace.batch().durability(durability);
        for p in position..(position + batch).min(to) {
            let stream = &names[(p % STREAMS) as usize];
            write.insert(events, p.to_be_bytes(), value(stream, &payload));
            write.insert(streams, stream_key(stream, p / STREAMS), p.to_be_bytes());
        }
        write.commit().expect("commit");
        position += batch;
    }
}

/// Times `run` on a fresh directory per iteration.
fn fresh(iterations: u64, mut run: impl FnMut(&Path) -> Duration) -> Duration {
    (0..iterations).map(|_| run(tempfile::tempdir().expect("tempdir").path())).sum()
}

fn appends(c: &mut Criterion) {
    let names = names();
    let mut group = c.benchmark_group("versus_kv/bulk_append");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("chronolog", |b| {
        b.iter_custom(|n| {
            fresh(n, |path| {
                let log = Log::open(path, LogOptions::default().durability(Durability::None)).expect("open");
                let started = Instant::now();
                chronolog_append(&log, &names, 0, EVENTS, BULK_BATCH);
                log.sync().expect("sync");
                started.elapsed()
            })
        })
    });
    group.bench_function("fjall", |b| {
        b.iter_custom(|n| {
            fresh(n, |path| {
                let store = fjall_open(path);
                let started = Instant::now();
                fjall_append(&store, &names, 0, EVENTS, BULK_BATCH, None);
                store.0.persist(PersistMode::SyncData).expect("persist");
                started.elapsed()
            })
        })
    });
    group.bench_function("redb", |b| {
        b.iter_custom(|n| {
            fresh(n, |path| {
                let db = redb::Database::create(path.join("events.redb")).expect("create");
                let started = Instant::now();
                redb_append(&db, &names, 0, EVENTS - BULK_BATCH, BULK_BATCH, redb::Durability::None);
                redb_append(&db, &names, EVENTS - BULK_BATCH, EVENTS, BULK_BATCH, redb::Durability::Immediate);
                started.elapsed()
            })
        })
    });
    group.finish();

    let durable = DURABLE_BATCH * DURABLE_BATCHES;
    let mut group = c.benchmark_group("versus_kv/durable_append_batches_of_10");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(durable));
    group.bench_function("chronolog", |b| {
        b.iter_custom(|n| {
            fresh(n, |path| {
                let log = Log::open(path, LogOptions::default().durability(Durability::Sync)).expect("open");
                let started = Instant::now();
                chronolog_append(&log, &names, 0, durable, DURABLE_BATCH);
                started.elapsed()
            })
        })
    });
    group.bench_function("fjall", |b| {
        b.iter_custom(|n| {
            fresh(n, |path| {
                let store = fjall_open(path);
                let started = Instant::now();
                fjall_append(&store, &names, 0, durable, DURABLE_BATCH, Some(PersistMode::SyncData));
                started.elapsed()
            })
        })
    });
    group.bench_function("redb", |b| {
        b.iter_custom(|n| {
            fresh(n, |path| {
                let db = redb::Database::create(path.join("events.redb")).expect("create");
                let started = Instant::now();
                redb_append(&db, &names, 0, durable, DURABLE_BATCH, redb::Durability::Immediate);
                started.elapsed()
            })
        })
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let names = names();
    let directory = tempfile::tempdir().expect("tempdir");
    let log_path = directory.path().join("log");
    let fjall_path = directory.path().join("fjall");
    let redb_path = directory.path().join("events.redb");
    {
        let log = Log::open(&log_path, LogOptions::default().durability(Durability::None)).expect("open");
        chronolog_append(&log, &names, 0, EVENTS, BULK_BATCH);
        log.sync().expect("sync");
        let store = fjall_open(&fjall_path);
        fjall_append(&store, &names, 0, EVENTS, BULK_BATCH, None);
        store.0.persist(PersistMode::SyncData).expect("persist");
        let db = redb::Database::create(&redb_path).expect("create");
        redb_append(&db, &names, 0, EVENTS, BULK_BATCH, redb::Durability::Immediate);
    }
    let log = Log::open(&log_path, LogOptions::default().durability(Durability::None)).expect("open");
    let store = fjall_open(&fjall_path);
    let db = redb::Database::open(&redb_path).expect("open redb");

    let mut group = c.benchmark_group("versus_kv/full_replay");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("chronolog", |b| {
        b.iter(|| {
            let view = log.view();
            let bytes: usize = view.iter().map(|e| e.expect("read").payload.len()).sum();
            assert_eq!(bytes, EVENTS as usize * PAYLOAD_BYTES);
        })
    });
    group.bench_function("fjall", |b| {
        b.iter(|| {
            let mut count = 0u64;
            for pair in store.1.iter() {
                let (_, value) = pair.expect("read");
                black_box(value.len());
                count += 1;
            }
            assert_eq!(count, EVENTS);
        })
    });
    group.bench_function("redb", |b| {
        b.iter(|| {
            let transaction = db.begin_read().expect("begin");
            let events = transaction.open_table(REDB_EVENTS).expect("events");
            let mut count = 0u64;
            for row in events.iter().expect("iter") {
                let (_, value) = row.expect("read");
                black_box(value.value().len());
                count += 1;
            }
            assert_eq!(count, EVENTS);
        })
    });
    group.finish();

    let per_stream = (EVENTS / STREAMS) as usize;
    let mut group = c.benchmark_group("versus_kv/read_100_event_stream");
    group.throughput(Throughput::Elements(1));
    let view = log.view();
    let mut next = 0u64;
    group.bench_function("chronolog", |b| {
        b.iter(|| {
            next = (next + 7) % STREAMS;
            let count = view.read_stream(&names[next as usize], 0).expect("stream").map(|e| e.expect("read")).count();
            assert_eq!(count, per_stream);
        })
    });
    group.bench_function("fjall", |b| {
        b.iter(|| {
            next = (next + 7) % STREAMS;
            let mut prefix = names[next as usize].as_bytes().to_vec();
            prefix.push(0);
            let mut count = 0;
            for pair in store.2.prefix(&prefix) {
                let (_, position) = pair.expect("index");
                let event = store.1.get(&position).expect("get").expect("present");
                black_box(event.len());
                count += 1;
            }
            assert_eq!(count, per_stream);
        })
    });
    group.bench_function("redb", |b| {
        b.iter(|| {
            next = (next + 7) % STREAMS;
            let transaction = db.begin_read().expect("begin");
            let events = transaction.open_table(REDB_EVENTS).expect("events");
            let streams = transaction.open_table(REDB_STREAMS).expect("streams");
            let name = names[next as usize].as_str();
            let mut count = 0;
            for row in streams.range((name, 0)..=(name, u64::MAX)).expect("range") {
                let (_, position) = row.expect("index");
                let event = events.get(position.value()).expect("get").expect("present");
                black_box(event.value().len());
                count += 1;
            }
            assert_eq!(count, per_stream);
        })
    });
    group.finish();
    drop(view);
    drop(log);
    drop(store);
    drop(db);

    let mut group = c.benchmark_group("versus_kv/open");
    group.sample_size(20);
    group.bench_function("chronolog", |b| {
        b.iter(|| black_box(Log::open(&log_path, LogOptions::default()).expect("open").next_position()))
    });
    group.bench_function("fjall", |b| {
        b.iter(|| {
            let store = fjall_open(&fjall_path);
            black_box(store.1.last_key_value().expect("last").is_some())
        })
    });
    group.bench_function("redb", |b| {
        b.iter(|| {
            let db = redb::Database::open(&redb_path).expect("open");
            let transaction = db.begin_read().expect("begin");
            let events = transaction.open_table(REDB_EVENTS).expect("events");
            let found = events.last().expect("last").is_some();
            black_box(found)
        })
    });
    group.finish();
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
