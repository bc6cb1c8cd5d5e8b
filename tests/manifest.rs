//! The manifest (`MANIFEST`, format version 5) lets a log open without opening
//! its sealed segments: their headers and footers come from it, and each
//! segment file is opened on its first read. These tests check that:
//! - a writable open reads no sealed segment the manifest describes but the
//!   last two (Strict, and read-only handles, open them all), and every event
//!   still reads back;
//! - a segment whose header or footer differs from the manifest's is refused
//!   with `ManifestMismatch` at its first read, and by `verify`, and none of
//!   its events is returned;
//! - a damaged or missing manifest is ignored (and reported by `verify`), and
//!   a clean close writes it again;
//! - views taken before purges and truncates (one after another included)
//!   keep reading the segments those remove or rewrite, though they were not
//!   open yet;
//! - a manifest that contradicts the segments opened at open is not trusted
//!   for any segment;
//! - a new log in a directory whose segments were deleted removes the old
//!   manifest;
//! - a read-only handle keeps reading segments the writer purged or rewrote
//!   since its open, and `refresh` brings it up to date.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chronolog::segment::manifest::{self, MANIFEST_FILE_NAME};
use chronolog::segment::{layout, SegmentFooter, SegmentHeader};
use chronolog::{CorruptionKind, Error, Log, LogOptions, RecoveryMode};
use common::{append_range, assert_deterministic, hooked::HookedStorage, segment_files, small_options};

const EVENTS: u64 = 400;

/// A closed log of `EVENTS` deterministic events over several small segments.
fn closed_log(directory: &Path) -> Vec<PathBuf> {
    let log = Log::open(directory, small_options()).expect("open");
    append_range(&log, 0, EVENTS, 5);
    drop(log);
    let segments = segment_files(directory);
    assert!(segments.len() >= 5, "several sealed segments: {segments:?}");
    segments
}

/// Every event of the log in `directory`, read through a read-only handle.
fn events_in(directory: &Path) -> Vec<chronolog::Event> {
    common::read_all(&Log::open_read_only(directory, small_options()).expect("read-only open"))
}

/// Options whose storage records every segment file opened.
fn watched(options: LogOptions) -> (LogOptions, Arc<Mutex<Vec<PathBuf>>>) {
    let opened = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&opened);
    let storage = HookedStorage {
        open: Some(Box::new(move |path: &Path, _| {
            if path.extension().is_some_and(|extension| extension == "seg") {
                seen.lock().expect("lock").push(path.to_path_buf());
            }
        })),
        ..HookedStorage::default()
    };
    (options.storage(Arc::new(storage)), opened)
}

fn taken(opened: &Mutex<Vec<PathBuf>>) -> Vec<PathBuf> {
    let mut paths = std::mem::take(&mut *opened.lock().expect("lock"));
    paths.sort();
    paths.dedup();
    paths
}

fn manifest_firsts(directory: &Path) -> Vec<u64> {
    let bytes = fs::read(directory.join(MANIFEST_FILE_NAME)).expect("read MANIFEST");
    let entries = manifest::decode(&bytes).expect("a valid manifest");
    entries.iter().map(|entry| entry.header.first_position).collect()
}

fn first_of(path: &Path) -> u64 {
    chronolog::segment::parse_file_name(&path.file_name().expect("name").to_string_lossy()).expect("a segment name")
}

/// Rewrites the manifest without its last entry, as a seal whose manifest
/// write failed leaves it.
fn forget_the_last_seal(directory: &Path) {
    let path = directory.join(MANIFEST_FILE_NAME);
    let entries = manifest::decode(&fs::read(&path).expect("read")).expect("decode");
    fs::write(&path, manifest::encode(entries[..entries.len() - 1].iter())).expect("write");
}

/// Rewrites a sealed segment's footer with `change` applied, its CRC valid.
fn rewrite_footer(path: &Path, change: impl FnOnce(&mut SegmentFooter)) {
    let mut bytes = fs::read(path).expect("read");
    let header = SegmentHeader::decode(&bytes).expect("header");
    let at = bytes.len() - layout::FOOTER_SIZE;
    let mut footer = SegmentFooter::decode(&bytes[at..], &header).expect("footer").expect("sealed");
    change(&mut footer);
    bytes[at..].copy_from_slice(&footer.encode());
    fs::write(path, bytes).expect("write");
}

#[test]
fn an_open_reads_no_sealed_segment_the_manifest_describes() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    let sealed: Vec<u64> = segments[..segments.len() - 1].iter().map(|path| first_of(path)).collect();
    assert_eq!(manifest_firsts(directory.path()), sealed, "the manifest lists every sealed segment");

    let (options, opened) = watched(small_options());
    let log = Log::open(directory.path(), options).expect("open");
    let last_two = &segments[segments.len() - 2..];
    assert_eq!(taken(&opened), last_two, "only the active segment and the one before it");
    assert_deterministic(&log, EVENTS);
    assert_eq!(taken(&opened), segments[..segments.len() - 2], "each of the others opened on its first read");
    assert!(log.verify().expect("verify").is_clean());
    drop(log);

    let (options, opened) = watched(small_options());
    let log = Log::open_read_only(directory.path(), options).expect("read-only open");
    assert_eq!(taken(&opened), segments, "a read-only handle opens every segment");
    assert_deterministic(&log, EVENTS);
    drop(log);

    let (options, opened) = watched(small_options().recovery_mode(RecoveryMode::Strict));
    let log = Log::open(directory.path(), options).expect("Strict open");
    assert_eq!(taken(&opened), segments, "Strict opens every segment");
    assert_deterministic(&log, EVENTS);
}

#[test]
fn a_segment_that_differs_from_the_manifest_is_refused_at_its_first_read() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    // A footer rewritten as something else could (valid, CRC and all): the
    // manifest was written for the segment as it was.
    let changed = &segments[2];
    rewrite_footer(changed, |footer| footer.max_timestamp_ns += 1);
    let log = Log::open(directory.path(), small_options()).expect("the open trusts the manifest");
    let mut read = 0u64;
    let mut failure = None;
    for event in log.view().iter() {
        match event {
            Ok(event) => {
                assert_eq!(event.position, read);
                read += 1;
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    assert_eq!(read, first_of(changed), "every event before the changed segment, none of it");
    let data_limit = fs::metadata(changed).expect("stat").len() - layout::FOOTER_SIZE as u64;
    assert!(
        matches!(&failure, Some(Error::Corrupted { path, offset, kind: CorruptionKind::ManifestMismatch })
            if path == changed && *offset == data_limit),
        "{failure:?}"
    );
    let report = log.verify().expect("verify");
    assert!(
        report.problems.iter().any(|problem| matches!(problem,
            Error::Corrupted { path, kind: CorruptionKind::ManifestMismatch, .. } if path == changed)),
        "{:?}",
        report.problems
    );
    drop(log);

    // A header of another (readable) version: refused at offset 0.
    let other = &segments[1];
    let mut bytes = fs::read(other).expect("read");
    let version_at = layout::HEADER_VERSION_OFFSET;
    bytes[version_at..version_at + 4].copy_from_slice(&(layout::FORMAT_VERSION - 1).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..layout::HEADER_CRC_OFFSET]);
    bytes[layout::HEADER_CRC_OFFSET..layout::HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
    fs::write(other, bytes).expect("write");
    let log = Log::open(directory.path(), small_options()).expect("open");
    let error = log.view().iter_from(first_of(other)).next().expect("an event").map(|_| ());
    assert!(
        matches!(&error, Err(Error::Corrupted { path, offset: 0, kind: CorruptionKind::ManifestMismatch }) if path == other),
        "{error:?}"
    );
    drop(log);

    // Strict checks every segment, finds them sound, and its clean close
    // writes a manifest that describes them as they now are.
    let log = Log::open(directory.path(), small_options().recovery_mode(RecoveryMode::Strict)).expect("Strict");
    assert_deterministic(&log, EVENTS);
    let mut mismatched: Vec<PathBuf> = log
        .verify()
        .expect("verify")
        .problems
        .into_iter()
        .map(|problem| match problem {
            Error::Corrupted { path, kind: CorruptionKind::ManifestMismatch, .. } => path,
            other => panic!("only the two changed segments are reported: {other:?}"),
        })
        .collect();
    mismatched.sort();
    assert_eq!(mismatched, [other.clone(), changed.clone()], "verify compares the open segments with the manifest");
    drop(log);
    let log = Log::open(directory.path(), small_options()).expect("open");
    assert_deterministic(&log, EVENTS);
}

#[test]
fn a_damaged_or_missing_manifest_is_ignored_and_written_again_by_a_clean_close() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    let path = directory.path().join(MANIFEST_FILE_NAME);
    let listed = manifest_firsts(directory.path());
    let intact = fs::read(&path).expect("read");
    for damage in ["flip", "cut", "remove"] {
        match damage {
            "flip" => {
                let mut bytes = intact.clone();
                bytes[40] ^= 0x01;
                fs::write(&path, bytes).expect("write");
            }
            "cut" => fs::write(&path, &intact[..intact.len() - 1]).expect("write"),
            _ => fs::remove_file(&path).expect("remove"),
        }
        if damage != "remove" {
            let reader = Log::open_read_only(directory.path(), small_options()).expect("read-only open");
            let problems = reader.verify().expect("verify").problems;
            assert!(
                matches!(&problems[..], [Error::Corrupted { path: damaged, .. }] if damaged == &path),
                "{damage}: verify reports the manifest: {problems:?}"
            );
        }
        let (options, opened) = watched(small_options());
        let log = Log::open(directory.path(), options).expect("open");
        assert_eq!(taken(&opened), segments, "{damage}: every segment is opened at once");
        assert!(log.recovery_report().is_clean(), "{damage}: a hint, not a repair");
        assert_deterministic(&log, EVENTS);
        drop(log);
        assert_eq!(manifest_firsts(directory.path()), listed, "{damage}: written again by the clean close");
    }
}

#[test]
fn views_taken_before_a_purge_or_a_truncate_keep_reading_segments_not_yet_open() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    let expected = events_in(directory.path());
    let (options, opened) = watched(small_options());
    let log = Log::open(directory.path(), options).expect("open");
    let before_purge = log.view();
    let purge_point = first_of(&segments[2]);
    assert_eq!(log.purge_before(purge_point).expect("purge"), 2);
    let before_truncate = log.view();
    let cut = first_of(&segments[3]) + 1;
    log.truncate_after(cut).expect("truncate");
    // Neither view had read anything: each segment was opened by the purge or
    // the truncate, before its file went or changed.
    assert!(!taken(&opened).is_empty());
    let read = |view: &chronolog::LogView| -> Vec<_> {
        view.iter().map(|event| event.expect("read").to_event()).collect::<Vec<_>>()
    };
    assert_eq!(read(&before_purge), expected, "the view before the purge");
    assert_eq!(read(&before_truncate), expected[purge_point as usize..], "the view before the truncate");
    assert_eq!(common::read_all(&log), expected[purge_point as usize..=cut as usize], "the log now");
}

#[test]
fn a_new_log_removes_the_manifest_of_deleted_segments() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    for path in &segments {
        fs::remove_file(path).expect("remove segment");
    }
    let log = Log::open(directory.path(), small_options()).expect("a new log");
    assert!(!directory.path().join(MANIFEST_FILE_NAME).exists(), "removed before the first segment is created");
    append_range(&log, 0, 50, 1);
    drop(log);
    let log = Log::open(directory.path(), small_options()).expect("reopen");
    assert_eq!(common::read_all(&log).len(), 50);
}

#[test]
fn a_reader_keeps_reading_segments_purged_or_rewritten_since_its_open() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    let expected = events_in(directory.path());
    let reader = Log::open_read_only(directory.path(), small_options()).expect("reader");
    let writer = Log::open(directory.path(), small_options()).expect("writer");
    let purge_point = first_of(&segments[2]);
    assert_eq!(writer.purge_before(purge_point).expect("purge"), 2);
    let cut = first_of(&segments[3]) + 1;
    writer.truncate_after(cut).expect("truncate");
    assert_eq!(common::read_all(&reader), expected, "the reader sees the log as it was at its open");
    reader.refresh().expect("refresh");
    assert_eq!(reader.first_position(), purge_point);
    assert_eq!(common::read_all(&reader), expected[purge_point as usize..=cut as usize]);
}

#[test]
fn a_view_older_than_two_truncates_and_a_purge_keeps_reading() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    let expected = events_in(directory.path());
    let log = Log::open(directory.path(), small_options()).expect("open");
    let oldest = log.view();
    // The first truncate leaves the early segments as they were (and not yet
    // open); the second cuts into one of them, the purge removes another.
    log.truncate_after(EVENTS - 3).expect("truncate near the end");
    log.truncate_after(first_of(&segments[2]) + 1).expect("truncate into segment 2");
    assert_eq!(log.purge_before(first_of(&segments[1])).expect("purge"), 1);
    let read: Vec<_> = oldest.iter().map(|event| event.expect("read").to_event()).collect();
    assert_eq!(read, expected, "the oldest view still reads every event it held");
}

#[test]
fn a_manifest_that_contradicts_the_open_segments_is_not_trusted() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    // The segment before the active one gets another (valid) footer: its
    // max timestamp is the floor for the active segment's records.
    rewrite_footer(&segments[segments.len() - 2], |footer| footer.max_timestamp_ns += 1);
    let (options, opened) = watched(small_options());
    let log = Log::open(directory.path(), options).expect("open");
    assert_eq!(taken(&opened), segments, "every segment is opened when the manifest is contradicted");
    assert_deterministic(&log, EVENTS);
    drop(log);
    // The clean close wrote a manifest that describes the segments as they are.
    let (options, opened) = watched(small_options());
    let log = Log::open(directory.path(), options).expect("open");
    assert_eq!(taken(&opened), segments[segments.len() - 2..], "trusted again");
    assert!(log.verify().expect("verify").is_clean());
}

/// Options whose storage counts the listings of `directory`.
fn counting_listings(directory: &Path) -> (LogOptions, Arc<Mutex<usize>>) {
    let listings = Arc::new(Mutex::new(0usize));
    let counted = Arc::clone(&listings);
    let watched = directory.to_path_buf();
    let storage = HookedStorage {
        list_dir: Some(Box::new(move |path: &Path, _: &mut Vec<String>| {
            if path == watched {
                *counted.lock().expect("lock") += 1;
            }
        })),
        ..HookedStorage::default()
    };
    (small_options().storage(Arc::new(storage)), listings)
}

#[test]
fn an_open_after_a_clean_close_does_not_list_the_directory() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    let (options, listings) = counting_listings(directory.path());
    let log = Log::open(directory.path(), options.clone()).expect("open");
    assert_eq!(*listings.lock().expect("lock"), 0, "segments taken from the manifest");
    assert_deterministic(&log, EVENTS);
    // Still so after a purge (which writes the manifest again) and appends.
    assert_eq!(log.purge_before(first_of(&segments[1])).expect("purge"), 1);
    append_range(&log, EVENTS, EVENTS + 10, 5);
    drop(log);
    *listings.lock().expect("lock") = 0;
    let log = Log::open(directory.path(), options.clone()).expect("open");
    assert_eq!(*listings.lock().expect("lock"), 0, "after a purge too");
    assert_eq!(log.first_position(), first_of(&segments[1]));
    assert_eq!(common::read_all(&log).len() as u64, EVENTS + 10 - first_of(&segments[1]));
    drop(log);

    // Without the index a clean close leaves beside the active segment (as
    // after a crash), the directory is listed.
    let active = segment_files(directory.path()).pop().expect("segments");
    fs::remove_file(active.with_extension("idx")).expect("remove the clean-close index");
    let log = Log::open(directory.path(), options).expect("open");
    assert!(*listings.lock().expect("lock") > 0, "listed after an unclean close");
    assert_eq!(log.next_position(), EVENTS + 10);
}

#[test]
fn a_manifest_without_the_last_seal_does_not_hide_the_segments_after_it() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    // As if the manifest write of the last seal had failed: the segment after
    // the manifest's last one is sealed, with the index its seal wrote, and
    // the active segment comes after it.
    forget_the_last_seal(directory.path());
    let (options, listings) = counting_listings(directory.path());
    let log = Log::open(directory.path(), options.clone()).expect("open");
    assert!(*listings.lock().expect("lock") > 0, "the directory decides");
    assert_deterministic(&log, EVENTS);
    append_range(&log, EVENTS, EVENTS + 10, 5);
    drop(log);
    let log = Log::open(directory.path(), options).expect("reopen");
    assert_deterministic(&log, EVENTS + 10);
    assert!(segment_files(directory.path()).len() >= segments.len(), "no segment was lost");
    assert!(log.verify().expect("verify").is_clean());
}

#[test]
fn a_sealed_segment_whose_footer_was_lost_is_not_taken_for_the_active_one() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    // The manifest write of the last seal failed, and that segment's footer
    // was damaged since: the index its seal wrote is beside it, and the
    // active segment comes after it. Taking it for the active segment would
    // reuse the positions the next one holds.
    forget_the_last_seal(directory.path());
    let sealed = &segments[segments.len() - 2];
    let mut bytes = fs::read(sealed).expect("read");
    let footer_at = bytes.len() - layout::FOOTER_SIZE;
    bytes[footer_at] ^= 0x01;
    fs::write(sealed, &bytes).expect("write");
    let before: Vec<Vec<u8>> = segments.iter().map(|segment| fs::read(segment).expect("read")).collect();
    let result = Log::open(directory.path(), small_options());
    assert!(
        matches!(&result, Err(Error::Corrupted { path, .. }) if path == sealed),
        "the damaged footer is reported, as without a manifest: {:?}",
        result.as_ref().map(|log| log.next_position())
    );
    let after: Vec<Vec<u8>> = segments.iter().map(|segment| fs::read(segment).expect("read")).collect();
    assert!(before == after, "no segment was changed");
    assert_eq!(segment_files(directory.path()), segments);
}

#[test]
fn a_segment_deleted_by_hand_is_reported_as_missing_when_read() {
    let directory = tempfile::tempdir().expect("tempdir");
    let segments = closed_log(directory.path());
    fs::remove_file(&segments[1]).expect("remove a segment");
    let log = Log::open(directory.path(), small_options()).expect("the open trusts the manifest");
    let error = log.view().iter_from(first_of(&segments[1])).next().expect("an event").map(|_| ());
    let position = first_of(&segments[1]);
    assert!(
        matches!(&error, Err(Error::Corrupted { path, offset: 0, kind: CorruptionKind::MissingSegment { position: p } })
            if path == &segments[1] && *p == position),
        "{error:?}"
    );
}
