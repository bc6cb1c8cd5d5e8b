//! Model-based: random sequences of append, batch append, append under an
//! expected version, read, time seek, stream read, truncate, purge, snapshot,
//! reopen and power loss, run on a
//! real log over `PowerLossStorage` and checked after every step against a
//! `Vec` of the events acknowledged, field by field (stream versions
//! included). The input's first byte chooses the durability. With
//! `Durability::Sync` every acknowledged event must survive a power loss;
//! with `Durability::None`, every event before the last `sync`, clean close
//! or snapshot must, and the log after a power loss ends at the end of a
//! batch or of a cut, never inside one. The power can go at any sync or any
//! write of a batch append, a truncation, a purge, a snapshot write or a
//! clean close: an operation that failed then left the log either as it was
//! or as if it had succeeded, never in between. Snapshots (of a stream's event count) must
//! never be found when the log no longer holds the events they were made
//! from. An append that names the stream's last event
//! (`ExpectedVersion::LastEvent`) must succeed exactly when the model's last
//! event of the stream is that event, bytes and all: a guard taken before a
//! truncation or a power loss fails once other events took its place. A
//! fingerprint taken by a read names its event exactly while the model holds
//! it (`LogView::holds_fingerprint`), also once a cut left it last in its batch.
#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chronolog::snapshot::{SnapshotBound, SnapshotMeta, SnapshotStore};
use chronolog::storage::PowerLossStorage;
use chronolog::{Appended, Durability, Error, EventRef, ExpectedVersion, Log, LogOptions, NewEvent};
use libfuzzer_sys::fuzz_target;

const STREAMS: usize = 5;

#[derive(Clone, Debug, PartialEq)]
struct Written {
    stream: String,
    event_type: &'static str,
    metadata: Vec<u8>,
    payload: Vec<u8>,
    timestamp_ns: u64,
}

fn options(storage: &PowerLossStorage, durability: Durability) -> LogOptions {
    LogOptions::default()
        .segment_capacity_bytes(4096)
        .index_interval_bytes(300)
        .durability(durability)
        .storage(Arc::new(storage.clone()))
}

/// What a power loss may leave of the model's events: at least `durable`
/// of them, and a length in `ends` (the end of a batch or of a cut).
struct Survivors {
    durable: u64,
    ends: BTreeSet<u64>,
}

impl Survivors {
    /// The model now holds `length` events, all of them durable or not.
    fn ended(&mut self, length: u64, durable: bool) {
        self.ends.insert(length);
        if durable {
            self.durable = length;
        }
    }

    /// The model was cut to `length` events.
    fn cut(&mut self, length: u64) {
        self.ends.retain(|&end| end <= length);
        self.ends.insert(length);
        self.durable = self.durable.min(length);
    }
}

/// Each event's version in its stream: how many events of its stream come
/// before it in the model (purged ones included).
fn versions(model: &[Written]) -> Vec<u64> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    model
        .iter()
        .map(|w| {
            let count = counts.entry(&w.stream).or_default();
            *count += 1;
            *count - 1
        })
        .collect()
}

fn assert_event(event: &EventRef<'_>, model: &[Written], versions: &[u64]) {
    let position = event.position as usize;
    let expected = model.get(position).unwrap_or_else(|| panic!("an event at {position}, past the model"));
    assert_eq!(event.stream, expected.stream, "stream at {position}");
    assert_eq!(event.stream_version, versions[position], "version at {position}");
    assert_eq!(event.event_type, expected.event_type, "type at {position}");
    assert_eq!(event.metadata, &expected.metadata[..], "metadata at {position}");
    assert_eq!(event.payload, &expected.payload[..], "payload at {position}");
    assert_eq!(event.timestamp_ns, expected.timestamp_ns, "timestamp at {position}");
}

/// The log must hold exactly the model's events from its first position on.
fn check(log: &Log, model: &[Written], first: u64) {
    assert_eq!(log.next_position(), model.len() as u64, "next position");
    assert_eq!(log.first_position(), first, "first position");
    let versions = versions(model);
    let view = log.view();
    let mut expected_position = first;
    for event in view.iter() {
        let event = event.expect("forward read");
        assert_eq!(event.position, expected_position, "positions in order, without a gap");
        assert_event(&event, model, &versions);
        expected_position += 1;
    }
    assert_eq!(expected_position, model.len() as u64, "the forward read reaches the end");
    // Whatever snapshot a lookup returns must describe the model's events.
    let store = SnapshotStore::open(log);
    for stream in 0..STREAMS {
        let stream = format!("s-{stream}");
        let found = store.find(&format!("count-{stream}"), SnapshotBound::Latest, 1, &view).expect("find");
        let Some(snapshot) = found.snapshot else { continue };
        let next = snapshot.meta.next_position as usize;
        assert!(next <= model.len(), "a snapshot ahead of the log was used");
        let count = model[..next].iter().filter(|w| w.stream == stream).count() as u64;
        assert_eq!(snapshot.payload(), count.to_le_bytes(), "snapshot of {stream} at {next}");
        assert_eq!(snapshot.meta.version, count);
    }
}

/// One operation that writes, for the power to fail in.
struct Run<'a> {
    log: &'a Log,
    model: &'a [Written],
    first: u64,
    clock: &'a mut u64,
}

impl Run<'_> {
    /// A batch of 1 to 4 events. Returns the batch and whether it was acknowledged.
    fn append(&mut self, a: u8, b: u8) -> (Vec<Written>, bool) {
        let count = 1 + usize::from(a % 4);
        let mut batch = Vec::new();
        for i in 0..count {
            *self.clock += u64::from(b % 3);
            batch.push(Written {
                stream: format!("s-{}", (usize::from(a) + i) % STREAMS),
                event_type: if (a >> 4) & 1 == 0 { "E" } else { "Moved" },
                metadata: vec![a ^ b; usize::from(a >> 5)],
                payload: vec![b; usize::from(b) * 3 % 400],
                timestamp_ns: *self.clock,
            });
        }
        let events: Vec<NewEvent<'_>> = batch
            .iter()
            .map(|w| {
                NewEvent::new(&w.stream, w.event_type, &w.payload)
                    .with_metadata(&w.metadata)
                    .with_timestamp_ns(w.timestamp_ns)
            })
            .collect();
        let acknowledged = self.log.append_batch(&events).is_ok();
        (batch, acknowledged)
    }

    /// One event on `stream` under `expected`. Returns it, and where it was
    /// appended (`None`: refused, which must be a wrong expected version
    /// that wrote nothing).
    fn append_expecting(&mut self, stream: &str, expected: ExpectedVersion) -> (Written, Option<Appended>) {
        *self.clock += 1;
        let written = Written {
            stream: stream.to_owned(),
            event_type: "Guarded",
            metadata: Vec::new(),
            payload: self.clock.to_le_bytes().to_vec(),
            timestamp_ns: *self.clock,
        };
        let event = NewEvent::new(stream, written.event_type, &written.payload)
            .with_timestamp_ns(written.timestamp_ns)
            .with_expected_version(expected);
        let before = self.log.next_position();
        match self.log.append(&event) {
            Ok(appended) => (written, Some(appended)),
            Err(Error::WrongExpectedVersion { .. }) => {
                assert_eq!(self.log.next_position(), before, "a refused append wrote nothing");
                (written, None)
            }
            Err(error) => panic!("append under {expected} with the power on: {error}"),
        }
    }

    /// A cut after a position from the first to the last. Returns the
    /// position and whether the cut was acknowledged.
    fn truncate(&mut self, a: u8) -> Option<(u64, bool)> {
        let length = self.model.len() as u64;
        if length <= self.first {
            return None;
        }
        let position = self.first + u64::from(a) % (length - self.first);
        let acknowledged = self.log.truncate_after(position).is_ok();
        // Clocks move on: an event written after the cut never has the
        // timestamp of one cut (snapshots rely on it).
        *self.clock += 1;
        Some((position, acknowledged))
    }

    /// A purge before an even position. Returns that position.
    fn purge(&mut self, a: u8) -> (u64, bool) {
        let position = u64::from(a) * 2;
        (position, self.log.purge_before(position).is_ok())
    }

    /// A snapshot of a stream's event count at the end of the log. Returns
    /// its name and position when it was written, `Ok(None)` when the log
    /// has no event to snapshot.
    fn snapshot(&mut self, a: u8, b: u8) -> Result<Option<(String, u64)>, chronolog::Error> {
        let stream = format!("s-{}", usize::from(a) % STREAMS);
        let Some(last) = (self.model.len() as u64).checked_sub(1).filter(|&p| p >= self.first) else {
            return Ok(None);
        };
        let next = last as usize + 1;
        let count = self.model[..next].iter().filter(|w| w.stream == stream).count() as u64;
        let meta = SnapshotMeta {
            name: format!("count-{stream}"),
            next_position: next as u64,
            timestamp_ns: self.model[last as usize].timestamp_ns,
            version: count,
            schema_version: 1,
        };
        SnapshotStore::open(self.log).keep_last(1 + usize::from(b % 3)).write_anchored(
            &meta,
            &count.to_le_bytes(),
            &self.log.view(),
        )?;
        Ok(Some((meta.name, meta.next_position)))
    }
}

/// The last event of `stream` in the model: its position and version.
fn last_of(model: &[Written], stream: &str) -> Option<(u64, u64)> {
    let position = model.iter().rposition(|w| w.stream == stream)?;
    Some((position as u64, versions(model)[position]))
}

/// An expectation taken from the log: the stream's last event (version,
/// position, record CRC when not purged), and that event as the model had it.
struct Guard {
    expected: ExpectedVersion,
    stream: String,
    event: Written,
}

/// A fingerprint taken where a read found an event: the log must say it
/// still holds that event exactly while the model does (a truncation that
/// leaves it last in its batch included), and not once it is cut, replaced
/// or purged.
struct Held {
    position: u64,
    version: u64,
    timestamp_ns: u64,
    crc: u32,
    event: Written,
}

fn assert_held(log: &Log, model: &[Written], first: u64, held: &Held) {
    let position = held.position as usize;
    let same = held.position >= first
        && model.get(position) == Some(&held.event)
        && versions(model).get(position) == Some(&held.version);
    let holds = log
        .view()
        .holds_fingerprint(held.position, Some(held.timestamp_ns), Some(held.crc))
        .expect("holds_fingerprint");
    assert_eq!(holds, same, "the fingerprint taken at {position}");
}

fn assert_purged(first: u64, before: u64, position: u64) {
    assert!(first == before || (first > before && first <= position), "purge moved the start past {position}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&header, steps)) = data.split_first() else { return };
    let durability = if header & 1 == 0 { Durability::Sync } else { Durability::None };
    let options = |storage: &PowerLossStorage| options(storage, durability);
    let synced = durability == Durability::Sync;
    let Ok(directory) = tempfile::tempdir() else { return };
    let storage = PowerLossStorage::new();
    let Ok(mut log) = Log::open(directory.path(), options(&storage)) else { return };
    let mut model: Vec<Written> = Vec::new();
    let mut survivors = Survivors { durable: 0, ends: BTreeSet::from([0]) };
    let mut first = 0u64;
    let mut clock = 1_000u64;
    let mut guard: Option<Guard> = None;
    let mut held: Option<Held> = None;
    for step in steps.chunks_exact(3).take(64) {
        let (operation, a, b) = (step[0] % 13, step[1], step[2]);
        let mut run = Run { log: &log, model: &model, first, clock: &mut clock };
        match operation {
            0..=3 => {
                let (batch, acknowledged) = run.append(a, b);
                assert!(acknowledged, "append with the power on");
                model.extend(batch);
                survivors.ended(model.len() as u64, synced);
            }
            4 => {
                if let Some(position) = (model.len() as u64).checked_sub(1 + u64::from(a) % 5).filter(|&p| p >= first) {
                    let event = log.read(position).expect("read").expect("present");
                    assert_event(&event.as_event_ref(), &model, &versions(&model));
                    let (timestamp_ns, crc) = log.view().fingerprint(position).expect("fingerprint").expect("held");
                    let version = event.stream_version;
                    held = Some(Held { position, version, timestamp_ns, crc, event: model[position as usize].clone() });
                }
            }
            5 => {
                let view = log.view();
                let time = 1_000 + u64::from(a) * 4;
                let expected =
                    model.iter().enumerate().skip(first as usize).rev().find(|(_, w)| w.timestamp_ns <= time);
                assert_eq!(view.position_at(time).expect("seek"), expected.map(|(p, _)| p as u64));
                // A stream read from a version returns exactly the stream's
                // events from that version on (those not purged), in order.
                let stream = format!("s-{}", usize::from(a) % STREAMS);
                let from = u64::from(b % 8);
                let versions = versions(&model);
                let expected: Vec<u64> = (first..model.len() as u64)
                    .filter(|&p| model[p as usize].stream == stream && versions[p as usize] >= from)
                    .collect();
                let mut read = Vec::new();
                for event in view.read_stream(&stream, from).expect("stream") {
                    let event = event.expect("stream event");
                    assert_event(&event, &model, &versions);
                    read.push(event.position);
                }
                assert_eq!(read, expected, "stream {stream} from version {from}");
            }
            6 => {
                if let Some((position, acknowledged)) = run.truncate(a) {
                    assert!(acknowledged, "truncate with the power on");
                    model.truncate(position as usize + 1);
                    survivors.cut(model.len() as u64);
                }
            }
            7 => {
                let before = first;
                let (position, acknowledged) = run.purge(a);
                assert!(acknowledged, "purge with the power on");
                first = log.first_position();
                assert_purged(first, before, position);
            }
            8 if a % 2 == 1 => {
                log.sync().expect("sync with the power on");
                survivors.ended(model.len() as u64, true);
            }
            8 => {
                // A clean close syncs everything.
                drop(log);
                survivors.ended(model.len() as u64, true);
                log = Log::open(directory.path(), options(&storage)).expect("reopen");
            }
            9 => {
                // An anchored snapshot syncs the events it reflects.
                if run.snapshot(a, b).expect("snapshot with the power on").is_some() {
                    survivors.ended(model.len() as u64, true);
                }
            }
            12 => {
                let stream = format!("s-{}", usize::from(a) % STREAMS);
                let kept = if b % 4 == 1 { guard.take() } else { None };
                let (stream, expected, should_append) = match (kept, last_of(&model, &stream)) {
                    // The guard kept from the last guarded append: it passes
                    // only while its event is the stream's last, the same
                    // bytes at the same position, and not purged (a purged
                    // record's CRC cannot be checked).
                    (Some(Guard { expected, stream, event }), _) => {
                        let ExpectedVersion::LastEvent { version, position, .. } = expected else { continue };
                        let same = last_of(&model, &stream) == Some((position, version))
                            && model.get(position as usize) == Some(&event)
                            && position >= first;
                        (stream, expected, same)
                    }
                    // The stream's last event with another record CRC: refused.
                    (None, Some((position, version))) if b % 4 == 2 && position >= first => {
                        let crc = log.view().fingerprint(position).expect("fingerprint").map(|(_, crc)| crc ^ 1);
                        (stream, ExpectedVersion::LastEvent { version, position, record_crc: crc }, false)
                    }
                    // The stream's last event as the log has it now: passes.
                    (None, Some((position, version))) if b % 4 == 0 => {
                        let record_crc = log.view().fingerprint(position).expect("fingerprint").map(|(_, crc)| crc);
                        assert_eq!(record_crc.is_some(), position >= first, "fingerprint of {position}");
                        (stream, ExpectedVersion::LastEvent { version, position, record_crc }, true)
                    }
                    (None, Some((_, version))) => (stream, ExpectedVersion::Exact(version), true),
                    (None, None) => (stream, ExpectedVersion::NoStream, true),
                };
                let (written, appended) = run.append_expecting(&stream, expected);
                assert_eq!(appended.is_some(), should_append, "{expected} on {stream}: {:?}", last_of(&model, &stream));
                if let Some(appended) = appended {
                    let expected = ExpectedVersion::LastEvent {
                        version: appended.stream_version,
                        position: appended.position,
                        record_crc: Some(appended.record_crc),
                    };
                    guard = Some(Guard { expected, stream, event: written.clone() });
                    model.push(written);
                    survivors.ended(model.len() as u64, synced);
                }
            }
            _ => {
                // The power goes at one of the next few syncs or writes of
                // an operation chosen by `b`.
                let countdown = u64::from(a % 8);
                if a & 0x80 == 0 {
                    storage.lose_power_after_syncs(countdown);
                } else {
                    storage.lose_power_after_writes(countdown);
                }
                let before = (model.len() as u64, first);
                let mut batch = None;
                let mut cut = None;
                let mut purge = None;
                let mut snapshot = None;
                match b % 5 {
                    // `a`'s low and high bits chose the cut: the batch's
                    // shape comes from `b` (and the rest of `a`).
                    0 => batch = Some(run.append((b / 5).rotate_left(3) ^ (a >> 3), b / 5)),
                    1 => cut = run.truncate(b / 5),
                    2 => {
                        let (position, acknowledged) = run.purge(b / 5);
                        purge = Some((position, acknowledged.then(|| log.first_position())));
                    }
                    3 => {
                        snapshot = run.snapshot(b / 5, a >> 3).ok().flatten();
                        if snapshot.is_some() {
                            // It synced the events it reflects.
                            survivors.ended(before.0, true);
                        }
                    }
                    // Only the clean close.
                    _ => {}
                }
                // The close runs under what is left of the countdown.
                drop(log);
                storage.lose_power();
                storage.restart().expect("restart");
                log = Log::open(directory.path(), options(&storage)).expect("open after power loss");
                // Clocks move on, as after a cut: an event written from here
                // never has the bytes of one the power loss took.
                clock += 1;
                let next = log.next_position();
                // Where the log may end now: at the end of a batch or of a
                // cut, no earlier than what was durable before.
                let within = |ends: &BTreeSet<u64>, low: u64, high: u64| -> Vec<u64> {
                    ends.range(low..=high.max(low)).copied().collect()
                };
                let (durable, ends) = (survivors.durable, &survivors.ends);
                let mut candidates = BTreeSet::new();
                match (&batch, cut) {
                    (Some((written, acknowledged)), _) => {
                        // A batch is there whole or not at all; acknowledged
                        // with `Sync`, it is there.
                        if !(*acknowledged && synced) {
                            candidates.extend(within(ends, durable, before.0));
                        }
                        candidates.insert(before.0 + written.len() as u64);
                    }
                    (None, Some((position, acknowledged))) => {
                        // A cut is done or not; acknowledged, it is done.
                        if !acknowledged {
                            candidates.extend(within(ends, durable, before.0));
                        }
                        let kept = position + 1;
                        let mut cut_ends: BTreeSet<u64> = ends.range(..=kept).copied().collect();
                        cut_ends.insert(kept);
                        candidates.extend(within(&cut_ends, durable.min(kept), kept));
                    }
                    (None, None) => candidates.extend(within(ends, durable, before.0)),
                }
                assert!(candidates.contains(&next), "the log ends at {next}, not one of {candidates:?}");
                match batch {
                    Some((written, _)) if next > before.0 => model.extend(written),
                    _ => model.truncate(next as usize),
                }
                // What survived a power loss is durable.
                survivors.cut(next);
                survivors.durable = next;
                if let Some((name, next_position)) = snapshot {
                    // An acknowledged snapshot is durable (its events were
                    // durable before it): the newest of its name, it is found.
                    let found = SnapshotStore::open(&log)
                        .find(&name, SnapshotBound::Latest, 1, &log.view())
                        .expect("find after power loss");
                    let found = found.snapshot.map(|snapshot| snapshot.meta.next_position);
                    assert_eq!(found, Some(next_position), "an acknowledged snapshot of {name} was lost");
                }
                if let Some((position, acknowledged_first)) = purge {
                    first = log.first_position();
                    assert_purged(first, before.1, position);
                    // An acknowledged purge is durable: its removals stay removed.
                    if let Some(acknowledged_first) = acknowledged_first {
                        assert_eq!(first, acknowledged_first, "an acknowledged purge was undone");
                    }
                }
            }
        }
        check(&log, &model, first);
        if let Some(held) = &held {
            assert_held(&log, &model, first, held);
        }
    }
});
