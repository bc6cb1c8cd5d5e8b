//! Criterion benchmarks of snapshots and the CQRS layer: snapshot write and
//! load by size; loading an aggregate of 10,000 events with and without a
//! snapshot; rebuilding a read model as of a past time with and without
//! snapshots.
//!
//! ```text
//! cargo bench --bench cqrs
//! ```

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use chronolog::cqrs::{
    project_as_of, snapshot_projection_as_of, Aggregate, AggregateStore, AsOf, CodecError, JsonCodec, Projection,
};
use chronolog::snapshot::{SnapshotBound, SnapshotMeta, SnapshotStore};
use chronolog::{Durability, EventRef, Filter, Log, LogOptions, NewEvent};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};

const BASE_TIME_NS: u64 = 1_700_000_000_000_000_000;

fn options() -> LogOptions {
    LogOptions::default().durability(Durability::None)
}

/// A counter with a little history, so that its state is not trivial.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    total: i64,
    count: u64,
    largest: i64,
}

#[derive(Debug, Serialize, Deserialize)]
enum CounterEvent {
    Added { amount: i64, note: String },
}

impl Aggregate for Counter {
    type Event = CounterEvent;
    type Command = i64;
    type Error = std::convert::Infallible;
    const KIND: &'static str = "counter";

    fn event_type(_: &CounterEvent) -> &'static str {
        "Added"
    }

    fn apply(&mut self, CounterEvent::Added { amount, .. }: &CounterEvent) {
        self.total += amount;
        self.count += 1;
        self.largest = self.largest.max(*amount);
    }

    fn handle(&self, amount: &i64) -> Result<Vec<CounterEvent>, Self::Error> {
        Ok(vec![CounterEvent::Added { amount: *amount, note: "bench".into() }])
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals(BTreeMap<String, i64>);

impl Projection for Totals {
    const NAME: &'static str = "totals";

    fn filter() -> Filter {
        Filter::default().stream_prefix("counter-")
    }

    fn apply(&mut self, event: &EventRef<'_>) -> Result<(), CodecError> {
        let CounterEvent::Added { amount, .. } = serde_json::from_slice(event.payload)?;
        *self.0.entry(event.stream.to_owned()).or_default() += amount;
        Ok(())
    }

    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Ok(serde_json::to_vec(self)?)
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

fn snapshots(c: &mut Criterion) {
    let directory = tempfile::tempdir().expect("tempdir");
    let log = Log::open(directory.path(), options()).expect("open");
    let appended = log.append(&NewEvent::new("s", "T", b"")).expect("append");
    let store = SnapshotStore::open(&log).keep_last(2);
    let mut group = c.benchmark_group("snapshot");
    for bytes in [1024usize, 1024 * 1024] {
        let payload = vec![0x5a; bytes];
        let meta = SnapshotMeta {
            name: format!("bench-{bytes}"),
            next_position: appended.position + 1,
            timestamp_ns: appended.timestamp_ns,
            version: 1,
            schema_version: 1,
        };
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::new("write_durable", bytes), &payload, |b, payload| {
            b.iter(|| store.write(&meta, payload).expect("write"))
        });
        group.bench_with_input(BenchmarkId::new("find_and_load", bytes), &meta.name, |b, name| {
            b.iter(|| {
                let view = log.view();
                let found = store.find(name, SnapshotBound::Latest, 1, &view).expect("find");
                black_box(found.snapshot.expect("snapshot").payload().len())
            })
        });
    }
    group.finish();
}

/// One aggregate of `events` events, interleaved with as many events of 99
/// other counters (so its stream is spread over the log), and a snapshot of
/// it at the end when `snapshot` is set.
fn counter_log(directory: &Path, events: u64, snapshot: bool) -> (Log, AggregateStore<Counter, JsonCodec>) {
    let log = Log::open(directory, options()).expect("open");
    let payload = serde_json::to_vec(&CounterEvent::Added { amount: 3, note: "bench".into() }).expect("encode");
    let names: Vec<String> = (0..100).map(|i| format!("counter-{i}")).collect();
    let mut batch = Vec::new();
    for i in 0..events * 2 {
        let stream = if i % 2 == 0 { &names[0] } else { &names[1 + (i as usize / 2) % 99] };
        batch.push(NewEvent::new(stream, "Added", &payload));
        if batch.len() == 1000 {
            log.append_batch(&batch).expect("append");
            batch.clear();
        }
    }
    if !batch.is_empty() {
        log.append_batch(&batch).expect("append");
    }
    let store = AggregateStore::<Counter, _>::new(&log, JsonCodec);
    if snapshot {
        store.snapshot("0").expect("snapshot");
    }
    (log, store)
}

fn aggregate_load(c: &mut Criterion) {
    const EVENTS: u64 = 10_000;
    let mut group = c.benchmark_group("aggregate_load_10000_events");
    for snapshot in [false, true] {
        let directory = tempfile::tempdir().expect("tempdir");
        let (_log, store) = counter_log(directory.path(), EVENTS, snapshot);
        let loaded = store.load("0").expect("load");
        assert_eq!(loaded.version, Some(EVENTS - 1));
        assert_eq!(loaded.report.snapshot.is_some(), snapshot);
        let name = if snapshot { "with_snapshot" } else { "full_replay" };
        group.bench_function(name, |b| b.iter(|| black_box(store.load("0").expect("load").state.total)));
    }
    group.finish();
}

fn read_model_as_of(c: &mut Criterion) {
    const EVENTS: u64 = 200_000;
    let directory = tempfile::tempdir().expect("tempdir");
    let log = Log::open(directory.path(), options()).expect("open");
    let names: Vec<String> = (0..1000).map(|i| format!("counter-{i}")).collect();
    let payload = serde_json::to_vec(&CounterEvent::Added { amount: 3, note: "bench".into() }).expect("encode");
    let mut batch = Vec::new();
    for i in 0..EVENTS {
        batch.push(
            NewEvent::new(&names[(i % 1000) as usize], "Added", &payload).with_timestamp_ns(BASE_TIME_NS + i * 1000),
        );
        if batch.len() == 1000 {
            log.append_batch(&batch).expect("append");
            batch.clear();
        }
    }
    let with = SnapshotStore::open(&log).keep_last(100);
    for at in (20_000..EVENTS).step_by(20_000) {
        snapshot_projection_as_of::<Totals>(&log, &with, AsOf::Position(at - 1)).expect("snapshot");
    }
    let empty = tempfile::tempdir().expect("tempdir");
    let without = SnapshotStore::open(&Log::open(empty.path(), options()).expect("open"));
    // Three quarters of the way, between two snapshots.
    let time = AsOf::Time(BASE_TIME_NS + (EVENTS * 3 / 4 + 5_000) * 1000);
    let (a, report) = project_as_of::<Totals>(&log, &with, time).expect("as of");
    let (b, _) = project_as_of::<Totals>(&log, &without, time).expect("as of");
    assert_eq!(a.0, b.0);
    assert!(report.snapshot.is_some());

    let mut group = c.benchmark_group("read_model_as_of_200000_events");
    group.bench_function("with_snapshots", |b| {
        b.iter(|| black_box(project_as_of::<Totals>(&log, &with, time).expect("as of").0 .0.len()))
    });
    group.sample_size(10);
    group.bench_function("full_replay", |b| {
        b.iter(|| black_box(project_as_of::<Totals>(&log, &without, time).expect("as of").0 .0.len()))
    });
    group.finish();
}

criterion_group!(benches, snapshots, aggregate_load, read_model_as_of);
criterion_main!(benches);
