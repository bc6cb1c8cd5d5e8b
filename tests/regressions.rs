//! Named regression tests for bugs found in review, one per finding: each
//! failed before its fix. They check that a failed truncate or purge poisons
//! the log, that a reopened log does not count page-cache-only records as
//! durable, that read-only readers tolerate a live writer, that a torn tail
//! full of length-like bytes is cut correctly, that crafted positions cannot
//! overflow, that a truncate which cannot find its cut removes nothing, that a
//! version-2 segment header re-encodes as the current version, that a read-only
//! refresh racing a purge lists the directory again, that a view reads the
//! streams of segments purged since it was taken, and that `verify` finds no
//! damage in what a live writer does (a view capped inside a batch by a
//! truncation in progress, a stream table removed after the listing, a
//! read-only handle's state older than the files the writer rewrote), and that
//! a read-only open racing a segment cut and grown back to the same position
//! does not take the other history's stream table or segment index.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chronolog::segment::{SegmentFooter, SegmentHeader};
use chronolog::{Durability, Error, Log, LogOptions, NewEvent};

fn segment_path(directory: &Path, first: u64) -> PathBuf {
    directory.join(format!("{first:020}.seg"))
}

fn append_numbered(log: &Log, count: u64) {
    for i in 0..count {
        let payload = format!("payload-{i}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        log.append(&NewEvent::new("s", "T", payload.as_bytes())).unwrap();
    }
}

#[test]
fn a_truncate_failing_after_its_marker_poisons_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let (options, plan) = common::with_faults(LogOptions::default().durability(Durability::Sync));
    let log = Log::open(directory.path(), options.clone()).unwrap();
    append_numbered(&log, 10);
    // The segment's sync (the records kept) and the marker's file sync pass,
    // its directory sync fails: the marker may be on disk, so the log must
    // take no more appends.
    plan.fail_sync_after(2);
    assert!(log.truncate_after(4).is_err());
    plan.heal();
    assert!(log.failure().is_some());
    assert!(matches!(log.append(&NewEvent::new("s", "T", b"late")), Err(Error::Poisoned { .. })));
    drop(log);
    let log = Log::open(directory.path(), options).unwrap();
    assert_eq!(log.recovery_report().completed_truncation, Some(4));
    assert_eq!(log.next_position(), 5);
}

#[test]
fn records_recovered_after_a_crash_are_synced_by_the_next_sync() {
    let directory = tempfile::tempdir().unwrap();
    let (options, plan) = common::with_faults(LogOptions::default().durability(Durability::None));
    let log = Log::open(directory.path(), options.clone()).unwrap();
    append_numbered(&log, 5);
    // Stands for a crash before any sync: the sync on drop fails.
    plan.fail_sync_after(0);
    drop(log);
    plan.heal();
    let log = Log::open(directory.path(), options).unwrap();
    assert_eq!(log.next_position(), 5);
    assert_eq!(log.durable_position(), 0, "nothing recovered from the active segment is known durable");
    let before = plan.syncs();
    log.sync().unwrap();
    assert!(plan.syncs() > before, "sync() must fdatasync records recovered from the page cache");
    assert_eq!(log.durable_position(), 5);
}

#[test]
fn read_only_refresh_tolerates_a_writer_appending() {
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().durability(Durability::None).segment_capacity_bytes(8 << 20);
    let log = Log::open(directory.path(), options.clone()).unwrap();
    append_numbered(&log, 1);
    let reader = Log::open_read_only(directory.path(), options).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        let log = log.clone();
        std::thread::spawn(move || {
            let payload = vec![7u8; 3000];
            let batch: Vec<NewEvent<'_>> = (0..8).map(|_| NewEvent::new("s", "T", &payload)).collect();
            for _ in 0..200 {
                log.append_batch(&batch).unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut seen = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        reader.refresh().expect("a live writer is not corruption");
        let next = reader.next_position();
        assert!(next >= seen, "a refresh never goes back");
        assert_eq!(reader.view().iter().filter(|e| e.is_ok()).count() as u64, next);
        seen = next;
        if finished {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(seen, 1 + 200 * 8);
}

#[test]
fn a_torn_tail_of_length_like_bytes_is_cut() {
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().durability(Durability::None);
    let log = Log::open(directory.path(), options.clone()).unwrap();
    append_numbered(&log, 1);
    let first_length = chronolog::record::encoded_size(1, 1, 0, log.read(0).unwrap().unwrap().payload.len()) as u64;
    // Little-endian u32s of this payload read as plausible record lengths.
    let payload: Vec<u8> = (0..8192).map(|i| if i % 2 == 0 { 0xFF } else { 0x00 }).collect();
    log.append(&NewEvent::new("s", "T", &payload)).unwrap();
    let end = 64 + first_length + chronolog::record::encoded_size(1, 1, 0, payload.len()) as u64;
    drop(log);
    for entry in std::fs::read_dir(directory.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let file = OpenOptions::new().write(true).open(segment_path(directory.path(), 0)).unwrap();
    file.write_all_at(&[0u8; 512], end - 512).unwrap();
    drop(file);
    let log = Log::open(directory.path(), options).unwrap();
    assert_eq!(log.next_position(), 1);
    assert!(log.recovery_report().torn_tail.is_some());
}

#[test]
fn a_crafted_footer_with_the_largest_position_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let capacity = 4096u64;
    let mut bytes = vec![0u8; capacity as usize];
    bytes[..64].copy_from_slice(&SegmentHeader { first_position: 1, capacity_bytes: capacity }.encode());
    let footer = SegmentFooter {
        last_position: u64::MAX,
        record_count: u64::MAX,
        min_timestamp_ns: 0,
        max_timestamp_ns: 0,
        data_end_offset: 64,
    };
    bytes[capacity as usize - 64..].copy_from_slice(&footer.encode());
    std::fs::write(segment_path(directory.path(), 1), &bytes).unwrap();
    let error = Log::open(directory.path(), LogOptions::default().recovery_mode(chronolog::RecoveryMode::Strict));
    assert!(matches!(error, Err(Error::Corrupted { .. })), "{error:?}");
}

#[test]
fn a_purge_failing_half_way_poisons_the_log() {
    for failing_sync in 0..40 {
        let directory = tempfile::tempdir().unwrap();
        let (options, plan) =
            common::with_faults(LogOptions::default().durability(Durability::None).segment_capacity_bytes(4096));
        let log = Log::open(directory.path(), options.clone()).unwrap();
        append_numbered(&log, 400);
        plan.fail_sync_after(failing_sync);
        let purged = log.purge_before(300);
        plan.heal();
        if purged.is_ok() {
            return;
        }
        if !segment_path(directory.path(), 0).exists() {
            assert!(log.failure().is_some(), "files are gone but the log was not poisoned (sync {failing_sync})");
        }
        drop(log);
        let log = Log::open(directory.path(), options).unwrap();
        assert_eq!(log.next_position(), 400);
        assert!(log.view().iter().all(|e| e.is_ok()));
    }
    panic!("the purge never succeeded");
}

#[test]
fn a_truncate_that_cannot_find_its_cut_removes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().durability(Durability::None).segment_capacity_bytes(4096);
    let log = Log::open(directory.path(), options.clone()).unwrap();
    append_numbered(&log, 200);
    drop(log);
    // Damage the first record of sealed segment 0.
    let file = OpenOptions::new().read(true).write(true).open(segment_path(directory.path(), 0)).unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 100).unwrap();
    file.write_all_at(&[byte[0] ^ 0xFF], 100).unwrap();
    drop(file);
    let segments_before = common::segment_files(directory.path()).len();
    let log = Log::open(directory.path(), options.clone()).unwrap();
    let error = log.truncate_after(10).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    drop(log);
    assert_eq!(common::segment_files(directory.path()).len(), segments_before, "segments were removed");
    // The marker stays: the cut is retried, and refused, at each open until
    // the damage is dealt with (salvage mode cuts the log before it).
    assert!(Log::open(directory.path(), options.clone()).is_err());
    let log = Log::open(directory.path(), options.recovery_mode(chronolog::RecoveryMode::Salvage)).unwrap();
    assert_eq!(log.next_position(), 0);
}

fn index_files(directory: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    files.sort();
    files
}

#[test]
fn an_old_view_never_writes_back_an_index_for_changed_segments() {
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().durability(Durability::None).segment_capacity_bytes(4096);
    let log = Log::open(directory.path(), options.clone()).unwrap();
    append_numbered(&log, 300);
    drop(log);
    for path in index_files(directory.path()) {
        std::fs::remove_file(path).unwrap();
    }
    let log = Log::open(directory.path(), options).unwrap();
    // A view from before the cut; the cut lands in the second segment.
    let view = log.view();
    let second = common::segment_files(directory.path())[1].clone();
    let second_first = chronolog::segment::parse_file_name(second.file_name().unwrap().to_str().unwrap()).unwrap();
    log.truncate_after(second_first + 2).unwrap();
    // Reading through the old view rebuilds the old segment's index...
    assert!(view.get(second_first).unwrap().is_some());
    // ...but must not store it beside the now different (active) segment.
    assert!(!directory.path().join(format!("{second_first:020}.idx")).exists());
    // The same after a purge: no index appears for a purged segment.
    let view = log.view();
    log.purge_before(second_first).unwrap();
    assert!(view.get(0).unwrap().is_some());
    assert!(!directory.path().join(format!("{:020}.idx", 0)).exists());
}

#[test]
fn time_queries_on_an_older_view_ignore_later_index_entries() {
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().durability(Durability::None).index_interval_bytes(1);
    let log = Log::open(directory.path(), options).unwrap();
    for time in 0..10u64 {
        log.append(&NewEvent::new("s", "T", b"x").with_timestamp_ns(100 + time)).unwrap();
    }
    let view = log.view();
    for time in 10..20u64 {
        log.append(&NewEvent::new("s", "T", b"x").with_timestamp_ns(100 + time)).unwrap();
    }
    assert_eq!(view.position_at(u64::MAX).unwrap(), Some(9));
    assert_eq!(view.iter_as_of(150).unwrap().count(), 10);
    assert_eq!(view.read_stream_as_of("s", 150).unwrap().count(), 10);
}

#[test]
fn a_failed_write_leaves_no_index_entry_behind() {
    let directory = tempfile::tempdir().unwrap();
    let (options, plan) = common::with_faults(LogOptions::default().durability(Durability::None));
    let log = Log::open(directory.path(), options).unwrap();
    append_numbered(&log, 5);
    plan.fail_write_after(0, false);
    assert!(log.append(&NewEvent::new("s", "T", b"lost")).is_err());
    let state = log.stream_state("s").unwrap().unwrap();
    assert_eq!((state.last_version, state.last_position), (4, 4));
    assert_eq!(log.view().stream_state("s").unwrap().map(|s| s.last_version), Some(4));
}

/// Found by the `segment_layout` fuzz target after the bump to format version
/// 3: a version-2 header (still readable) re-encodes as the current version
/// with every other field the same, and its footer decodes against it unchanged.
#[test]
fn a_version_2_segment_header_reencodes_as_the_current_version() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), LogOptions::default().segment_capacity_bytes(4096)).unwrap();
    append_numbered(&log, 200);
    drop(log);
    let mut bytes = std::fs::read(segment_path(directory.path(), 0)).unwrap();
    let version_offset = chronolog::segment::layout::HEADER_VERSION_OFFSET;
    bytes[version_offset..version_offset + 4].copy_from_slice(&2u32.to_le_bytes());
    let crc_offset = chronolog::segment::layout::HEADER_CRC_OFFSET;
    let crc = crc32fast::hash(&bytes[..crc_offset]);
    bytes[crc_offset..crc_offset + 4].copy_from_slice(&crc.to_le_bytes());
    let header = SegmentHeader::decode(&bytes).expect("version 2 is readable");
    let encoded = header.encode();
    let written = u32::from_le_bytes(encoded[version_offset..version_offset + 4].try_into().unwrap());
    assert_eq!(written, chronolog::segment::FORMAT_VERSION);
    assert_eq!(SegmentHeader::decode(&encoded).unwrap(), header);
    let footer = &bytes[bytes.len() - chronolog::segment::FOOTER_SIZE..];
    assert!(SegmentFooter::decode(footer, &header).unwrap().is_some());
}

/// Found in review: a read-only follower's refresh could list a segment the
/// writer then purged, fail to open it, and stop the follower (a projection
/// runner or subscription) for good. A storage that lists a segment once
/// that is not there stands for that race.
#[test]
fn a_refresh_racing_a_purge_lists_the_directory_again() {
    use std::sync::atomic::AtomicU32;

    let listings_to_fake = Arc::new(AtomicU32::new(0));
    let fake = Arc::clone(&listings_to_fake);
    let storage = Arc::new(common::hooked::HookedStorage {
        list_dir: Some(Box::new(move |_, names| {
            let left = fake.load(Ordering::SeqCst);
            if left > 0 && names.iter().any(|name| name.ends_with(".seg")) {
                fake.store(left - 1, Ordering::SeqCst);
                // Purged just after this listing: listed, but gone.
                names.push(format!("{:020}.seg", 0));
            }
        })),
        ..Default::default()
    });
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_capacity_bytes(4096);
    let writer = Log::open(directory.path(), options.clone()).unwrap();
    append_numbered(&writer, 200);
    assert!(writer.purge_before(100).unwrap() > 0, "segment 0 is gone");
    let reader = Log::open_read_only(directory.path(), options.storage(storage)).unwrap();
    append_numbered(&writer, 2);
    listings_to_fake.store(1, Ordering::SeqCst);
    reader.refresh().expect("a file gone between listing and opening is listed again");
    assert_eq!(reader.next_position(), 202);
    assert_eq!(listings_to_fake.load(Ordering::SeqCst), 0, "the race happened");
}

/// Found by the `model` fuzz target (fuzz/artifacts/model/crash-4d12ce04…):
/// a snapshot of the first 4 events, then a truncation after event 0 and new
/// events at positions 1 to 12, then a purge of the segment holding position
/// 3. While position 3 was in the log, a lookup saw it diverge (another
/// timestamp and CRC) and skipped the snapshot; once it was purged nothing
/// was left to compare with, and the stale snapshot (one event of `s-0`
/// where the log now has two) was returned. A truncation now removes the
/// snapshots of the events it cuts, under its marker.
#[test]
fn a_snapshot_cut_by_a_truncation_is_never_used_after_a_purge() {
    use chronolog::snapshot::{SnapshotBound, SnapshotMeta, SnapshotStore};
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_capacity_bytes(4096).durability(Durability::None);
    let log = Log::open(directory.path(), options).unwrap();
    let append = |streams: &[&str], payload: usize, timestamp: u64| {
        let payload = vec![7u8; payload];
        let events: Vec<NewEvent<'_>> =
            streams.iter().map(|s| NewEvent::new(s, "E", &payload).with_timestamp_ns(timestamp)).collect();
        log.append_batch(&events).unwrap();
    };
    append(&["s-0", "s-1", "s-2", "s-3"], 137, 1_008);
    let store = SnapshotStore::open(&log);
    let meta =
        SnapshotMeta { name: "count-s-0".into(), next_position: 4, timestamp_ns: 1_008, version: 1, schema_version: 1 };
    let stale = store.write_anchored(&meta, &1u64.to_le_bytes(), &log.view()).unwrap();
    append(&["s-0", "s-1", "s-2", "s-3"], 3, 1_012);
    log.truncate_after(0).unwrap();
    assert!(!stale.exists(), "the truncation removed the snapshot of the events it cut");
    for _ in 0..6 {
        append(&["s-0", "s-1", "s-2", "s-3"], 365, 1_013);
    }
    assert!(log.purge_before(20).unwrap() > 0);
    assert!(log.first_position() > 3, "position 3 was purged");
    let found = store.find("count-s-0", SnapshotBound::Latest, 1, &log.view()).unwrap();
    assert!(found.snapshot.is_none(), "a stale snapshot was used");
}

/// A snapshot computed before a truncation and written after it would
/// describe events that no longer exist (the truncation could not remove a
/// file that was not there yet): an anchored write checks the log as it is,
/// and refuses.
#[test]
fn an_anchored_snapshot_write_after_a_truncation_of_its_events_is_refused() {
    use chronolog::snapshot::SnapshotStore;
    let directory = tempfile::tempdir().unwrap();
    let log = timestamped_log(directory.path(), LogOptions::default().durability(Durability::None), 6, b"x");
    let before = log.view();
    let meta = timestamped_meta;
    let store = SnapshotStore::open(&log);
    log.truncate_after(2).unwrap();
    // Beyond the log's end now.
    assert!(matches!(store.write_anchored(&meta(5), b"5", &before), Err(Error::PositionOutOfRange { .. })));
    // Rewritten: position 4 is another event now.
    log.append(&NewEvent::new("s", "E", b"y").with_timestamp_ns(200)).unwrap();
    log.append(&NewEvent::new("s", "E", b"y").with_timestamp_ns(201)).unwrap();
    let crc_before = before.fingerprint(4).unwrap().map(|(_, crc)| crc);
    let rewritten = store.write_with_anchor_crc(&meta(5), crc_before, b"5");
    assert!(matches!(rewritten, Err(Error::LogRewritten { position: 4 })), "{rewritten:?}");
    // Events the truncation kept: accepted.
    store.write_anchored(&meta(3), b"3", &log.view()).unwrap();
}

/// Found while fixing the one above: a snapshot store that held a clone of
/// its log kept the log open, and its directory locked, after the caller had
/// dropped it (the demo's reopen failed with `Locked`). It holds a weak
/// handle: a closed log is simply not checked against.
#[test]
fn a_snapshot_store_does_not_keep_its_log_open() {
    use chronolog::snapshot::{SnapshotMeta, SnapshotStore};
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None)).unwrap();
    log.append(&NewEvent::new("s", "E", b"x").with_timestamp_ns(7)).unwrap();
    let store = SnapshotStore::open(&log);
    drop(log);
    let reopened = Log::open(directory.path(), LogOptions::default()).expect("not locked by the store");
    let meta = SnapshotMeta { name: "s".into(), next_position: 1, timestamp_ns: 7, version: 1, schema_version: 1 };
    store.write_with_anchor_crc(&meta, None, b"1").expect("a store whose log closed still writes");
    drop(reopened);
}

/// Salvage sets aside events that were acknowledged, and their positions are
/// written again: the snapshots made from them go, like a truncation's.
#[test]
fn salvage_removes_the_snapshots_of_the_events_it_sets_aside() {
    use chronolog::snapshot::SnapshotStore;
    use chronolog::RecoveryMode;
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_capacity_bytes(4096).durability(Durability::None);
    let log = timestamped_log(directory.path(), options.clone(), 120, &[1u8; 64]);
    let store = SnapshotStore::open(&log);
    let meta = timestamped_meta;
    let early = store.write_anchored(&meta(2), b"2", &log.view()).unwrap();
    let late = store.write_anchored(&meta(110), b"110", &log.view()).unwrap();
    drop(log);
    // Damage the second segment: salvage keeps the first one only.
    let second = common::segment_files(directory.path())[1].clone();
    let file = OpenOptions::new().read(true).write(true).open(&second).unwrap();
    file.write_all_at(&[0xff; 8], 200).unwrap();
    drop(file);
    let log = Log::open(directory.path(), options.recovery_mode(RecoveryMode::Salvage)).unwrap();
    assert!(!log.recovery_report().salvaged.is_empty());
    assert!(log.next_position() < 110);
    assert!(early.exists(), "a snapshot of kept events stays");
    assert!(!late.exists(), "a snapshot of events set aside goes");
}

/// An anchored snapshot write makes the events it reflects durable first:
/// a power loss must never keep a snapshot and lose its events.
#[test]
fn an_anchored_snapshot_write_syncs_the_events_it_reflects() {
    use chronolog::snapshot::SnapshotStore;
    let directory = tempfile::tempdir().unwrap();
    let log = timestamped_log(directory.path(), LogOptions::default().durability(Durability::None), 5, b"x");
    assert!(log.durable_position() < 5);
    SnapshotStore::open(&log).write_anchored(&timestamped_meta(5), b"5", &log.view()).unwrap();
    assert_eq!(log.durable_position(), 5);
}

/// A log of `count` events of stream `s`, timestamps 100, 101, ..., not
/// synced.
fn timestamped_log(directory: &Path, options: LogOptions, count: u64, payload: &[u8]) -> Log {
    let log = Log::open(directory, options).unwrap();
    for i in 0..count {
        log.append(&NewEvent::new("s", "E", payload).with_timestamp_ns(100 + i)).unwrap();
    }
    log
}

/// The snapshot of `timestamped_log`'s first `next` events.
fn timestamped_meta(next: u64) -> chronolog::snapshot::SnapshotMeta {
    chronolog::snapshot::SnapshotMeta {
        name: "s".into(),
        next_position: next,
        timestamp_ns: 100 + next - 1,
        version: next,
        schema_version: 1,
    }
}

/// A snapshot write and a truncation of the same process never interleave:
/// while a write is between its check of the log and its rename, a
/// truncation waits (otherwise it could list the folder before the file
/// lands and leave it behind; the check after the rename would still catch
/// that, but at the cost of a failed write). The rename is held up by the
/// storage until the truncation has had every chance to run.
#[test]
fn a_truncation_waits_for_a_snapshot_write_in_progress() {
    use chronolog::snapshot::SnapshotStore;
    use std::sync::mpsc;
    use std::sync::Mutex;

    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered, release) = (Mutex::new(Some(entered_tx)), Mutex::new(Some(release_rx)));
    let storage = Arc::new(common::hooked::HookedStorage {
        rename: Some(Box::new(move |_, to| {
            if to.extension().is_some_and(|e| e == "snap") {
                if let Some(entered) = entered.lock().unwrap().take() {
                    entered.send(()).unwrap();
                    if let Some(release) = release.lock().unwrap().take() {
                        release.recv().unwrap();
                    }
                }
            }
        })),
        ..Default::default()
    });
    let directory = tempfile::tempdir().unwrap();
    let options = LogOptions::default().durability(Durability::None).storage(storage);
    let log = timestamped_log(directory.path(), options, 6, b"x");
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || SnapshotStore::open(&log).write_anchored(&timestamped_meta(6), b"6", &log.view()))
    };
    entered_rx.recv().unwrap();
    let truncated = Arc::new(AtomicBool::new(false));
    let truncation = {
        let (log, truncated) = (log.clone(), Arc::clone(&truncated));
        std::thread::spawn(move || {
            log.truncate_after(2).unwrap();
            truncated.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!truncated.load(Ordering::SeqCst), "the truncation ran during the snapshot write");
    release_tx.send(()).unwrap();
    let written = writer.join().unwrap().expect("checked before the truncation: written");
    truncation.join().unwrap();
    assert!(!written.exists(), "the truncation that followed removed it");
    assert_eq!(log.next_position(), 3);
}

/// Found by the model fuzz target (`Durability::None`): a power loss during
/// a truncation of records never synced left a durable TRUNCATE marker
/// naming a position the log no longer held, and every later open failed
/// (`MissingSegment`). The records kept are now synced before the marker is
/// written: after a power loss at any sync of the truncation, the log opens
/// and holds either nothing (the power went before anything was synced),
/// the records kept, or everything.
#[test]
fn a_power_loss_during_a_truncation_of_unsynced_records_leaves_an_openable_log() {
    use chronolog::storage::PowerLossStorage;
    let options = |storage: &PowerLossStorage| {
        // Small segments: the simulated disk copies a file at each sync.
        LogOptions::default()
            .segment_capacity_bytes(common::SMALL_SEGMENT_BYTES)
            .durability(Durability::None)
            .storage(Arc::new(storage.clone()))
    };
    for syncs in 0.. {
        let directory = tempfile::tempdir().unwrap();
        let storage = PowerLossStorage::new();
        let log = Log::open(directory.path(), options(&storage)).unwrap();
        append_numbered(&log, 11);
        let syncs_before = storage.syncs();
        storage.lose_power_after_syncs(syncs);
        let truncated = log.truncate_after(5).is_ok();
        let syncs_made = storage.syncs() - syncs_before;
        drop(log);
        storage.lose_power();
        storage.restart().unwrap();
        let log = Log::open(directory.path(), options(&storage))
            .unwrap_or_else(|error| panic!("power lost after {syncs} syncs of the truncation: {error}"));
        let next = log.next_position();
        assert!([0, 6, 11].contains(&next), "after {syncs} syncs: {next} events");
        assert!(!truncated || next == 6, "an acknowledged truncation was undone: {next}");
        for (position, event) in log.view().iter().enumerate() {
            let expected = format!("payload-{position}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
            assert_eq!(event.unwrap().payload, expected.as_bytes());
        }
        if truncated && syncs_made <= syncs {
            break;
        }
    }
}

/// Found by `concurrency::a_read_only_reader_follows_appends_truncations_and_purges`:
/// a view holding segments the writer purged since (their files still open
/// in the view) rebuilt their indexes from the stream table before them,
/// which the purge had removed with the index files, and failed the stream
/// read as corruption. The view's own segments give the back links. For a
/// read-only handle's view and for a view of the writing handle.
#[test]
fn a_view_reads_streams_of_segments_purged_since() {
    for read_only in [true, false] {
        let directory = tempfile::tempdir().unwrap();
        let log = Log::open(directory.path(), common::small_options()).unwrap();
        common::append_range(&log, 0, 500, 4);
        // The view starts after a first purge: no empty table at position 0
        // to rebuild from.
        assert!(log.purge_before(100).unwrap() >= 1);
        let reader = match read_only {
            true => Log::open_read_only(directory.path(), common::small_options()).unwrap(),
            false => log.clone(),
        };
        let view = reader.view();
        assert!(view.first_position() > 0);
        // Every segment of the view opened (as a scan does), no index loaded.
        let before: Vec<_> = view.iter().map(|event| event.unwrap().to_event()).collect();
        assert_eq!(before.len() as u64, 500 - view.first_position());
        let purged = log.purge_before(400).unwrap();
        assert!(purged >= 3, "{purged} segments purged");
        for stream in (0..7).map(|s| format!("stream-{s}")) {
            let first_version = before.iter().find(|e| e.stream == stream).map_or(0, |e| e.stream_version);
            let read: Vec<u64> =
                view.read_stream(&stream, first_version).unwrap().map(|event| event.unwrap().position).collect();
            let scanned: Vec<u64> = before.iter().filter(|e| e.stream == stream).map(|e| e.position).collect();
            assert_eq!(read, scanned, "read-only {read_only}: {stream}");
        }
        // Nothing made for the old view was left behind as a hint.
        drop((view, reader));
        let indexes = common::files_with_extension(directory.path(), "idx");
        assert!(indexes
            .iter()
            .all(|path| common::segment_files(directory.path()).contains(&path.with_extension("seg"))));
    }
}

/// Found by `concurrency::a_read_only_reader_follows_appends_truncations_and_purges`
/// with `verify` in its loop: a read-only handle that opens while a
/// truncation is in progress shows the log as the cut will leave it, which
/// may end inside a batch (the writer closes that batch in the copy it
/// rewrites), and `verify` reported that end as an incomplete batch.
#[test]
fn verify_accepts_a_read_only_view_capped_inside_a_batch_by_a_pending_truncation() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None)).unwrap();
    let events: Vec<NewEvent<'_>> = (0..5).map(|_| NewEvent::new("s", "T", b"in one batch")).collect();
    log.append_batch(&events).unwrap();
    log.append(&NewEvent::new("s", "T", b"after")).unwrap();
    // The writer has written its marker for a cut after position 2, the
    // middle of the batch, and not finished.
    let marker = chronolog::segment::truncate_marker::encode(2);
    std::fs::write(directory.path().join(chronolog::segment::truncate_marker::TRUNCATE_MARKER_FILE_NAME), marker)
        .unwrap();
    let reader = Log::open_read_only(directory.path(), LogOptions::default()).unwrap();
    assert_eq!(reader.next_position(), 3, "the log as the cut will leave it");
    let report = reader.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records_checked, 3);
}

/// Found the same way: `verify` lists the stream tables, then reads each,
/// and a live writer may remove one in between (a purge or a truncation
/// supersedes it): that is not an error of the log.
#[test]
fn verify_skips_a_stream_table_removed_after_the_listing() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), common::small_options()).unwrap();
    common::append_range(&log, 0, 100, 4);
    drop(log);
    let storage = common::hooked::HookedStorage {
        // A table the listing shows but the directory no longer holds.
        list_dir: Some(Box::new(|_, names: &mut Vec<String>| names.push(format!("{:020}.streams", 1u64 << 40)))),
        ..Default::default()
    };
    let options = common::small_options().storage(Arc::new(storage));
    let reader = Log::open_read_only(directory.path(), options).unwrap();
    let report = reader.verify().expect("a table gone since the listing is not an error");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Found the same way, with the reader keeping its views longer: a read-only
/// handle's state is older than the directory when the writer has truncated
/// and regrown the log since, and `verify` compared the indexes and the
/// manifest the writer rewrote with that state, reporting them as damage. It
/// now checks again on the log as it is.
#[test]
fn verify_of_a_read_only_handle_older_than_the_directory_reports_no_damage() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), common::small_options()).unwrap();
    common::append_range(&log, 0, 200, 4);
    let reader = Log::open_read_only(directory.path(), common::small_options()).unwrap();
    let sealed = common::segment_files(directory.path()).len() - 1;
    assert!(sealed >= 4, "{sealed} sealed segments");
    // Cut inside an early sealed segment, and grow again: that segment is
    // sealed anew at another end, with another index; later ones are new.
    log.truncate_after(60).unwrap();
    for i in 61..260u64 {
        let payload = vec![b'x'; 10 + (i % 13) as usize];
        log.append(&NewEvent::new(&common::stream_of(i), "Regrown", &payload)).unwrap();
    }
    let report = reader.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(reader.next_position(), 200, "verify leaves the handle's own state as it was");
    // Real damage is still reported, after the checks again.
    let index = common::files_with_extension(directory.path(), "idx")[0].clone();
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&index, bytes).unwrap();
    let report = reader.verify().unwrap();
    assert!(matches!(&report.problems[..], [Error::Corrupted { path, .. }] if *path == index), "{:?}", report.problems);
}

/// A read-only open lists and opens the segments, then maps the stream table
/// of the newest sealed one. If the writer cuts that segment away and grows
/// it back to the same last position meanwhile, the table found under that
/// name, with the position expected, describes the other history; taken as
/// it is, a stream of the view's own segment went missing from its reads.
#[test]
fn a_read_only_open_racing_a_regrown_segment_does_not_take_its_new_stream_table() {
    let directory = tempfile::tempdir().unwrap();
    let options = common::small_options();
    let log = Arc::new(Log::open(directory.path(), options.clone()).unwrap());
    let payload = [b'p'; 40];
    let append = |log: &Log, stream: &str| log.append(&NewEvent::new(stream, "T", &payload)).unwrap().position;
    // Segment 0 of "zz", segment 1 of "aa", a little of "cc" in the active one.
    let segment_files = || common::segment_files(directory.path());
    while segment_files().len() < 2 {
        append(&log, "zz");
    }
    // Records all of one size: every segment holds as many as the first.
    let second_first = log.next_position() - 1;
    let per_segment = second_first;
    let last_aa = 2 * per_segment - 1;
    while log.next_position() <= last_aa {
        append(&log, "aa");
    }
    assert_eq!(segment_files().len(), 2);
    assert_eq!(append(&log, "cc"), last_aa + 1);
    assert_eq!(segment_files().len(), 3, "\"cc\" opened the third segment");
    let armed = Arc::new(AtomicBool::new(true));
    let storage = {
        let (log, armed) = (Arc::clone(&log), Arc::clone(&armed));
        let table = format!("{second_first:020}.streams");
        common::hooked::HookedStorage {
            open: Some(Box::new(move |path, _| {
                if path.file_name().is_some_and(|name| name == table.as_str()) && armed.swap(false, Ordering::SeqCst) {
                    // Cut the second segment away and grow it back, the same
                    // records in size, of "bb": sealed at the same position.
                    log.truncate_after(second_first - 1).unwrap();
                    while log.next_position() <= last_aa {
                        log.append(&NewEvent::new("bb", "T", &[b'q'; 40])).unwrap();
                    }
                    log.append(&NewEvent::new("dd", "T", &[b'q'; 40])).unwrap();
                }
            })),
            ..Default::default()
        }
    };
    let reader = Log::open_read_only(directory.path(), options.storage(Arc::new(storage))).unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the race was made to happen");
    let view = reader.view();
    let state = view.stream_state("aa").unwrap().map(|state| state.last_position);
    let scanned = view.iter().map(|e| e.unwrap().to_event()).filter(|e| e.stream == "aa").map(|e| e.position).last();
    assert_eq!(state, scanned, "the view's own \"aa\" events");
    let read: Vec<u64> = view.read_stream("aa", 0).unwrap().map(|e| e.unwrap().position).collect();
    assert_eq!(read.last().copied(), scanned);
}

/// Review finding: a view that rebuilt a segment index which a truncation
/// had removed also rebuilt the stream table before that segment from its
/// own, cut history, and stored it under the name the regrown history's
/// table has, with no check that a truncation had run since the view (the
/// index itself was stored only after that check). A later open could take
/// the stale table for the new history's.
#[test]
fn a_view_of_a_cut_history_stores_none_of_its_rebuilt_stream_tables() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::open(directory.path(), common::small_options()).unwrap();
    common::append_range(&log, 0, 400, 4);
    drop(log);
    // Reopened: the sealed segments' indexes are loaded from their files on
    // first use, not kept from the appends.
    let log = Log::open(directory.path(), common::small_options()).unwrap();
    let firsts: Vec<u64> = common::segment_files(directory.path())
        .iter()
        .filter_map(|path| chronolog::segment::parse_file_name(path.file_name()?.to_str()?))
        .collect();
    assert!(firsts.len() >= 4, "{firsts:?}");
    let view = log.view();
    let before: Vec<_> = view.iter().map(|event| event.unwrap().to_event()).collect();
    // Cut inside the second segment (its table and every later index go),
    // then grow back past the third segment's start with other records (new
    // timestamps): the second segment is sealed again, with a new table.
    log.truncate_after(firsts[1] + 2).unwrap();
    common::append_range(&log, firsts[1] + 3, firsts[3] + 5, 4);
    let table = directory.path().join(chronolog::index::stream_table::file_name(firsts[1]));
    let regrown_table = std::fs::read(&table).expect("the regrown history's table");
    // The old view reads its own history, rebuilding the indexes it needs.
    for stream in (0..7).map(|s| format!("stream-{s}")) {
        let read: Vec<u64> = view.read_stream(&stream, 0).unwrap().map(|event| event.unwrap().position).collect();
        let scanned: Vec<u64> = before.iter().filter(|e| e.stream == stream).map(|e| e.position).collect();
        assert_eq!(read, scanned, "{stream}");
    }
    assert!(std::fs::read(&table).unwrap() == regrown_table, "the old view stored its table over the new one");
}
