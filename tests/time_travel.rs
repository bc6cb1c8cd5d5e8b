//! Checks point-in-time replay, stream reads and filters against a brute-force
//! model (a `Vec` of events): for random logs spanning several segments, with
//! timestamps in long runs of equal values and big jumps, `position_at`, as-of
//! replay, reading from a time, stream reads (forward, backward, bounded, as
//! of a time) and filtered reads return exactly what a full scan of the model
//! returns, before and after a reopen, and with every index file deleted,
//! truncated or scrambled.

use chronolog::{Direction, Durability, Filter, Log, LogOptions, LogView, NewEvent};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct ModelEvent {
    position: u64,
    timestamp_ns: u64,
    stream: String,
    version: u64,
    event_type: String,
}

fn options(interval: u32) -> LogOptions {
    LogOptions::default().segment_capacity_bytes(8192).index_interval_bytes(interval).durability(Durability::None)
}

/// Builds the log and the model from (stream, time step, payload size) triples.
fn build(directory: &std::path::Path, interval: u32, plan: &[(u8, u8, u16)]) -> Vec<ModelEvent> {
    let log = Log::open(directory, options(interval)).unwrap();
    let mut model: Vec<ModelEvent> = Vec::new();
    let mut time = 1_000u64;
    for (index, &(stream, step, size)) in plan.iter().enumerate() {
        // Mostly equal timestamps, sometimes a small step, rarely a big jump.
        time += match step {
            0..=179 => 0,
            180..=249 => 1 + u64::from(step % 7),
            _ => 1_000_000,
        };
        let name = format!("{}-{}", if stream % 3 == 0 { "account" } else { "order" }, stream % 7);
        let event_type = ["Opened", "Changed", "Closed"][index % 3].to_string();
        let version = model.iter().filter(|e| e.stream == name).count() as u64;
        let payload = vec![stream; usize::from(size % 700)];
        log.append(&NewEvent::new(&name, &event_type, &payload).with_timestamp_ns(time)).unwrap();
        model.push(ModelEvent { position: index as u64, timestamp_ns: time, stream: name, version, event_type });
    }
    model
}

fn positions<'a>(iter: impl Iterator<Item = chronolog::Result<chronolog::EventRef<'a>>>) -> Vec<u64> {
    iter.map(|event| event.expect("read").position).collect()
}

fn check_against_model(view: &LogView, model: &[ModelEvent], probes: &[(u64, u8, u16)]) {
    let last_time = model.last().map_or(0, |e| e.timestamp_ns);
    for &(time_probe, stream_probe, version_probe) in probes {
        // Times around and between the real timestamps, and before/after all.
        let time = match time_probe % 4 {
            0 => model.get((time_probe / 4) as usize % model.len().max(1)).map_or(0, |e| e.timestamp_ns),
            1 => model.get((time_probe / 4) as usize % model.len().max(1)).map_or(0, |e| e.timestamp_ns) - 1,
            2 => time_probe % (last_time + 2),
            _ => [0, u64::MAX, last_time + 1][(time_probe / 4 % 3) as usize],
        };
        let expected_at = model.iter().rev().find(|e| e.timestamp_ns <= time).map(|e| e.position);
        assert_eq!(view.position_at(time).unwrap(), expected_at, "position_at({time})");
        let as_of: Vec<u64> = model.iter().filter(|e| e.timestamp_ns <= time).map(|e| e.position).collect();
        assert_eq!(positions(view.iter_as_of(time).unwrap()), as_of, "as of {time}");
        let since: Vec<u64> = model.iter().filter(|e| e.timestamp_ns >= time).map(|e| e.position).collect();
        assert_eq!(positions(view.iter_from_time(time).unwrap()), since, "from time {time}");

        let name = format!("{}-{}", if stream_probe % 3 == 0 { "account" } else { "order" }, stream_probe % 7);
        let stream: Vec<&ModelEvent> = model.iter().filter(|e| e.stream == name).collect();
        let from = u64::from(version_probe) % (stream.len() as u64 + 2);
        let forward: Vec<u64> = stream.iter().filter(|e| e.version >= from).map(|e| e.position).collect();
        assert_eq!(positions(view.read_stream(&name, from).unwrap()), forward, "{name} from {from}");
        let backward: Vec<u64> = stream.iter().rev().filter(|e| e.version <= from).map(|e| e.position).collect();
        assert_eq!(
            positions(view.read_stream_backward(&name, Some(from)).unwrap()),
            backward,
            "{name} back from {from}"
        );
        let to = from + 3;
        let bounded: Vec<u64> =
            stream.iter().filter(|e| e.version >= from && e.version <= to).map(|e| e.position).collect();
        assert_eq!(positions(view.stream_range(&name, from, to, Direction::Forward).unwrap()), bounded);
        let stream_as_of: Vec<u64> = stream.iter().filter(|e| e.timestamp_ns <= time).map(|e| e.position).collect();
        assert_eq!(positions(view.read_stream_as_of(&name, time).unwrap()), stream_as_of, "{name} as of {time}");
        let state = view.stream_state(&name).unwrap().map(|s| (s.last_version, s.last_position));
        assert_eq!(state, stream.last().map(|e| (e.version, e.position)));

        let start = u64::from(version_probe) % (model.len() as u64 + 1);
        let filter = Filter::default().stream_prefix("account-").event_types(["Opened", "Closed"]);
        let filtered: Vec<u64> = model
            .iter()
            .filter(|e| e.position >= start && e.stream.starts_with("account-") && e.event_type != "Changed")
            .map(|e| e.position)
            .collect();
        assert_eq!(positions(view.iter_filtered(start, filter)), filtered);
        let range: Vec<u64> = (start..model.len() as u64).collect();
        assert_eq!(positions(view.iter_from(start)), range, "iter_from({start})");
    }
}

fn damage_indexes(directory: &std::path::Path, how: u8) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if extension != "idx" && extension != "streams" {
            continue;
        }
        match how % 3 {
            0 => std::fs::remove_file(&path).unwrap(),
            1 => {
                let length = std::fs::metadata(&path).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(length / 2).unwrap();
            }
            _ => {
                let mut bytes = std::fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0xff;
                std::fs::write(&path, bytes).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn queries_match_a_full_scan(
        plan in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u16>()), 1..300),
        probes in proptest::collection::vec((any::<u64>(), any::<u8>(), any::<u16>()), 1..12),
        interval in prop_oneof![Just(1u32), Just(200), Just(4096)],
        damage in any::<u8>(),
    ) {
        let directory = tempfile::tempdir().unwrap();
        let model = build(directory.path(), interval, &plan);
        {
            let log = Log::open(directory.path(), options(interval)).unwrap();
            check_against_model(&log.view(), &model, &probes);
        }
        damage_indexes(directory.path(), damage);
        let log = Log::open(directory.path(), options(interval)).unwrap();
        check_against_model(&log.view(), &model, &probes);
        // Reading used the damaged sealed-segment indexes: each was rebuilt.
        let sealed_segments = std::fs::read_dir(directory.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
            .saturating_sub(1);
        if sealed_segments > 0 {
            // Reading from position 0 uses the first segment's (damaged) index.
            prop_assert!(log.view().iter_from(0).next().is_some());
            prop_assert!(!log.rebuilt_indexes().is_empty(), "damaged segment indexes must be rebuilt");
        }
        // A reader in another handle sees the same.
        let reader = Log::open_read_only(directory.path(), options(interval)).unwrap();
        check_against_model(&reader.view(), &model, &probes);
        // Damaged hint files may still be reported by verify, but the log
        // itself never is.
        for problem in log.verify().unwrap().problems {
            let chronolog::Error::Corrupted { path, .. } = &problem else { panic!("{problem}") };
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            prop_assert!(extension == "idx" || extension == "streams", "{}", problem);
        }
    }
}

/// A stream read looks the stream up in a few segments before the one its
/// back link names, all at once (their cache misses overlap), but only in
/// segments whose index is already in memory: a read never loads (or
/// rebuilds) the index of a segment it does not need. Here every index file
/// is deleted, so each load is a rebuild and is listed.
#[test]
fn stream_reads_load_only_the_indexes_they_need() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), options(512)).unwrap();
    let filler = |log: &Log, count: usize| {
        for i in 0..count {
            log.append(&NewEvent::new(&format!("filler-{}", i % 5), "Filled", &[0u8; 64])).unwrap();
        }
    };
    filler(&log, 300);
    log.append(&NewEvent::new("sparse", "Happened", b"first")).unwrap();
    filler(&log, 300);
    log.append(&NewEvent::new("sparse", "Happened", b"second")).unwrap();
    filler(&log, 300);
    let segments = log.view().segment_summaries().len();
    assert!(segments > 10, "{segments} segments");
    drop(log);
    for entry in std::fs::read_dir(directory.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let log = Log::open(directory.path(), options(512)).unwrap();
    let view = log.view();
    let forward: Vec<Vec<u8>> = view.read_stream("sparse", 0).unwrap().map(|e| e.unwrap().payload.to_vec()).collect();
    assert_eq!(forward, vec![b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(log.rebuilt_indexes().len(), 2, "{:?}", log.rebuilt_indexes());
    let backward: Vec<u64> =
        view.read_stream_backward("sparse", None).unwrap().map(|e| e.unwrap().stream_version).collect();
    assert_eq!(backward, vec![1, 0]);
    assert_eq!(log.rebuilt_indexes().len(), 2, "{:?}", log.rebuilt_indexes());
    // A dense stream, read whole, loads what it walks over and still matches.
    let dense: Vec<u64> = view.read_stream("filler-3", 0).unwrap().map(|e| e.unwrap().stream_version).collect();
    assert_eq!(dense, (0..180).collect::<Vec<u64>>());
}
