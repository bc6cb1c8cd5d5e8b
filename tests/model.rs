//! Checks the log against a simple model (a `Vec` of events) under random
//! sequences of append, batch append, read, reopen, truncate, purge and sync:
//! after every step, forward and backward reads, reads by position and stream
//! versions agree with the model. Segments are tiny so that sequences cross
//! many segment boundaries.

use chronolog::{Durability, Log, LogOptions, NewEvent};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Operation {
    Append { stream: u8, payload_length: usize, batch: usize },
    Read { at: u16 },
    Reopen,
    Truncate { at: u16 },
    Purge { at: u16 },
    Sync,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (0u8..5, 0usize..400, 1usize..6).prop_map(|(stream, payload_length, batch)| Operation::Append { stream, payload_length, batch }),
        2 => any::<u16>().prop_map(|at| Operation::Read { at }),
        1 => Just(Operation::Reopen),
        1 => any::<u16>().prop_map(|at| Operation::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Operation::Purge { at }),
        1 => Just(Operation::Sync),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelEvent {
    stream: String,
    version: u64,
    payload: Vec<u8>,
}

struct Model {
    events: Vec<ModelEvent>,
    first: u64,
}

impl Model {
    fn next_version(&self, stream: &str) -> u64 {
        self.events.iter().filter(|e| e.stream == stream).count() as u64
    }

    fn pick(&self, at: u16) -> Option<u64> {
        let length = self.events.len() as u64 - self.first;
        (length > 0).then(|| self.first + u64::from(at) % length)
    }
}

fn options() -> LogOptions {
    LogOptions::default().segment_capacity_bytes(4096).durability(Durability::None)
}

fn check(log: &Log, model: &Model) {
    assert_eq!(log.first_position(), model.first);
    assert_eq!(log.next_position(), model.events.len() as u64);
    let view = log.view();
    let forward: Vec<_> = view.iter().map(|e| e.expect("forward read")).collect();
    assert_eq!(forward.len() as u64, view.len());
    for event in &forward {
        let expected = &model.events[event.position as usize];
        assert_eq!(event.stream, expected.stream);
        assert_eq!(event.stream_version, expected.version);
        assert_eq!(event.payload, &expected.payload[..]);
    }
    let backward: Vec<u64> = view.iter_rev().map(|e| e.expect("backward read").position).collect();
    let mut positions: Vec<u64> = forward.iter().map(|e| e.position).collect();
    positions.reverse();
    assert_eq!(backward, positions);
    for stream in 0..5 {
        let name = format!("stream-{stream}");
        let expected = model.next_version(&name).checked_sub(1);
        assert_eq!(log.stream_state(&name).unwrap().map(|s| s.last_version), expected, "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(operations in proptest::collection::vec(operation(), 1..60)) {
        let directory = tempfile::tempdir().unwrap();
        let mut log = Log::open(directory.path(), options()).unwrap();
        let mut model = Model { events: Vec::new(), first: 0 };
        for operation in operations {
            match operation {
                Operation::Append { stream, payload_length, batch } => {
                    let names: Vec<String> = (0..batch).map(|i| format!("stream-{}", (stream as usize + i) % 5)).collect();
                    let payloads: Vec<Vec<u8>> = (0..batch)
                        .map(|i| vec![(model.events.len() + i) as u8; payload_length / (i + 1)])
                        .collect();
                    let events: Vec<NewEvent<'_>> = names.iter().zip(&payloads).map(|(s, p)| NewEvent::new(s, "E", p)).collect();
                    let appended = log.append_batch(&events).unwrap();
                    for ((name, payload), result) in names.iter().zip(payloads).zip(appended) {
                        let version = model.next_version(name);
                        prop_assert_eq!(result.position, model.events.len() as u64);
                        prop_assert_eq!(result.stream_version, version);
                        model.events.push(ModelEvent { stream: name.clone(), version, payload });
                    }
                }
                Operation::Read { at } => {
                    if let Some(position) = model.pick(at) {
                        let event = log.read(position).unwrap().expect("present");
                        prop_assert_eq!(&event.payload, &model.events[position as usize].payload);
                    }
                    prop_assert!(log.read(model.events.len() as u64).unwrap().is_none());
                }
                Operation::Reopen => {
                    drop(log);
                    log = Log::open(directory.path(), options()).unwrap();
                    prop_assert!(log.recovery_report().is_clean(), "{:?}", log.recovery_report());
                }
                Operation::Truncate { at } => {
                    if let Some(position) = model.pick(at) {
                        log.truncate_after(position).unwrap();
                        model.events.truncate(position as usize + 1);
                    }
                }
                Operation::Purge { at } => {
                    if let Some(position) = model.pick(at) {
                        log.purge_before(position).unwrap();
                        let first = log.first_position();
                        prop_assert!(first >= model.first && first <= position);
                        model.first = first;
                    }
                }
                Operation::Sync => log.sync().unwrap(),
            }
            check(&log, &model);
        }
        drop(log);
        let log = Log::open(directory.path(), options()).unwrap();
        check(&log, &model);
        prop_assert!(log.verify().unwrap().is_clean());
    }
}
