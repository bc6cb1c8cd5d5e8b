//! chronolog against SQLite (bundled, WAL mode, an `events` table with a
//! unique index on (stream, version)) on the same event-store workload, in the
//! same run: bulk append, durable batched append, full replay, a 100-event
//! stream read, and open. Ratios go in BENCHMARKS.md.
//!
//! ```text
//! cd compare && cargo bench --bench versus_sqlite
//! ```

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chronolog::{Durability, Log, LogOptions};
use chronolog_compare::{
    chronolog_append, names, BULK_BATCH, DURABLE_BATCH, DURABLE_BATCHES, EVENTS, PAYLOAD_BYTES, STREAMS,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rusqlite::{params, Connection};

fn sqlite_open(path: &Path, synchronous: &str) -> Connection {
    let connection = Connection::open(path).expect("open sqlite");
    connection.pragma_update(None, "journal_mode", "WAL").expect("wal");
    connection.pragma_update(None, "synchronous", synchronous).expect("synchronous");
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS events (position INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, \
             stream TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL); \
             CREATE UNIQUE INDEX IF NOT EXISTS events_stream_version ON events (stream, version);",
        )
        .expect("schema");
    connection
}

/// Appends positions `from..to` in transactions of `batch` rows.
fn sqlite_append(connection: &mut Connection, names: &[String], from: u64, to: u64, batch: u64) {
    let payload = [0x5au8; PAYLOAD_BYTES];
    let mut position = from;
    while position < to {
        let transaction = connection.transaction().expect("begin");
        {
            let mut insert = transaction
                .prepare_cached("INSERT INTO events (position, timestamp, stream, version, type, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .expect("prepare");
            for p in position..(position + batch).min(to) {
                let stream = &names[(p % STREAMS) as usize];
                insert
                    .execute(params![p as i64, p as i64, stream, (p / STREAMS) as i64, "Deposited", &payload[..]])
                    .expect("insert");
            }
        }
        transaction.commit().expect("commit");
        position += batch;
    }
}

fn appends(c: &mut Criterion) {
    let names = names();
    let mut group = c.benchmark_group("versus_sqlite/bulk_append");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("chronolog", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let directory = tempfile::tempdir().expect("tempdir");
                let log =
                    Log::open(directory.path(), LogOptions::default().durability(Durability::None)).expect("open");
                let started = Instant::now();
                chronolog_append(&log, &names, 0, EVENTS, BULK_BATCH);
                log.sync().expect("sync");
                total += started.elapsed();
            }
            total
        })
    });
    group.bench_function("sqlite", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let directory = tempfile::tempdir().expect("tempdir");
                let mut connection = sqlite_open(&directory.path().join("events.db"), "NORMAL");
                let started = Instant::now();
                sqlite_append(&mut connection, &names, 0, EVENTS, BULK_BATCH);
                connection.pragma_update(None, "wal_checkpoint", "FULL").expect("checkpoint");
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();

    let mut group = c.benchmark_group("versus_sqlite/durable_append_batches_of_10");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(DURABLE_BATCH * DURABLE_BATCHES));
    group.bench_function("chronolog", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let directory = tempfile::tempdir().expect("tempdir");
                let log =
                    Log::open(directory.path(), LogOptions::default().durability(Durability::Sync)).expect("open");
                let started = Instant::now();
                chronolog_append(&log, &names, 0, DURABLE_BATCH * DURABLE_BATCHES, DURABLE_BATCH);
                total += started.elapsed();
            }
            total
        })
    });
    group.bench_function("sqlite", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let directory = tempfile::tempdir().expect("tempdir");
                let mut connection = sqlite_open(&directory.path().join("events.db"), "FULL");
                let started = Instant::now();
                sqlite_append(&mut connection, &names, 0, DURABLE_BATCH * DURABLE_BATCHES, DURABLE_BATCH);
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let names = names();
    let directory = tempfile::tempdir().expect("tempdir");
    let log_path = directory.path().join("log");
    let sqlite_path = directory.path().join("events.db");
    {
        let log = Log::open(&log_path, LogOptions::default().durability(Durability::None)).expect("open");
        chronolog_append(&log, &names, 0, EVENTS, BULK_BATCH);
        log.sync().expect("sync");
        let mut connection = sqlite_open(&sqlite_path, "NORMAL");
        sqlite_append(&mut connection, &names, 0, EVENTS, BULK_BATCH);
        connection.pragma_update(None, "wal_checkpoint", "TRUNCATE").expect("checkpoint");
    }
    let log = Log::open(&log_path, LogOptions::default().durability(Durability::None)).expect("open");
    let connection = sqlite_open(&sqlite_path, "NORMAL");

    let mut group = c.benchmark_group("versus_sqlite/full_replay");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("chronolog", |b| {
        b.iter(|| {
            let view = log.view();
            let mut bytes = 0usize;
            for event in view.iter() {
                let event = event.expect("read");
                bytes += event.payload.len() + event.stream.len();
            }
            assert_eq!(view.len(), EVENTS);
            bytes
        })
    });
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT position, timestamp, stream, version, type, payload FROM events ORDER BY position",
                )
                .expect("prepare");
            let mut rows = statement.query([]).expect("query");
            let (mut bytes, mut count) = (0usize, 0u64);
            while let Some(row) = rows.next().expect("row") {
                let stream = row.get_ref(2).expect("stream").as_str().expect("text");
                let payload = row.get_ref(5).expect("payload").as_blob().expect("blob");
                bytes += payload.len() + stream.len();
                count += 1;
            }
            assert_eq!(count, EVENTS);
            bytes
        })
    });
    group.finish();

    let mut group = c.benchmark_group("versus_sqlite/read_100_event_stream");
    group.throughput(Throughput::Elements(1));
    let view = log.view();
    let mut next = 0u64;
    group.bench_function("chronolog", |b| {
        b.iter(|| {
            next = (next + 7) % STREAMS;
            let mut count = 0;
            for event in view.read_stream(&names[next as usize], 0).expect("stream") {
                count += event.expect("read").payload.len();
            }
            assert_eq!(count, PAYLOAD_BYTES * (EVENTS / STREAMS) as usize);
        })
    });
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            next = (next + 7) % STREAMS;
            let mut statement = connection
                .prepare_cached("SELECT position, timestamp, version, type, payload FROM events WHERE stream = ?1 AND version >= 0 ORDER BY version")
                .expect("prepare");
            let mut rows = statement.query([&names[next as usize]]).expect("query");
            let mut count = 0;
            while let Some(row) = rows.next().expect("row") {
                count += row.get_ref(4).expect("payload").as_blob().expect("blob").len();
            }
            assert_eq!(count, PAYLOAD_BYTES * (EVENTS / STREAMS) as usize);
        })
    });
    group.finish();
    drop(view);
    drop(log);
    drop(connection);

    let mut group = c.benchmark_group("versus_sqlite/open");
    group.bench_function(BenchmarkId::new("chronolog", EVENTS), |b| {
        b.iter(|| black_box(Log::open(&log_path, LogOptions::default()).expect("open").next_position()))
    });
    group.bench_function(BenchmarkId::new("sqlite", EVENTS), |b| {
        b.iter(|| {
            let connection = Connection::open(&sqlite_path).expect("open");
            let last: i64 =
                connection.query_row("SELECT max(position) FROM events", [], |row| row.get(0)).expect("max");
            black_box(last)
        })
    });
    group.finish();
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
