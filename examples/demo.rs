//! The main job on an embedded default: writes a million events to
//! `./chronolog-data` (or the directory given as the first argument), makes them
//! durable, reopens the log, replays every event with its CRC checked, verifies
//! the files, and prints what it did and how fast.
//!
//! ```text
//! cargo run --release --example demo [DIR] [EVENTS]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use chronolog::{Durability, Log, LogOptions, NewEvent};

const BATCH: usize = 1_000;
const STREAMS: u64 = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let directory = PathBuf::from(arguments.next().unwrap_or_else(|| "chronolog-data".into()));
    let events: u64 = match arguments.next() {
        Some(count) => count.parse()?,
        None => 1_000_000,
    };
    reset(&directory)?;

    let options = LogOptions::default().durability(Durability::None);
    let log = Log::open(&directory, options.clone())?;
    println!("writing {events} events across {STREAMS} streams to {} ...", directory.display());
    let started = Instant::now();
    let mut payload_bytes = 0u64;
    let mut position = 0u64;
    while position < events {
        let end = (position + BATCH as u64).min(events);
        let streams: Vec<String> = (position..end).map(|p| format!("account-{}", p % STREAMS)).collect();
        let payloads: Vec<String> = (position..end)
            .map(|p| {
                format!(r#"{{"amount":{},"currency":"EUR","reference":"invoice-{p:012}","note":"demo"}}"#, p % 997)
            })
            .collect();
        let batch: Vec<NewEvent<'_>> = streams
            .iter()
            .zip(&payloads)
            .zip(position..end)
            .map(|((stream, payload), p)| {
                payload_bytes += payload.len() as u64;
                let kind = if p.is_multiple_of(3) { "Deposited" } else { "Withdrawn" };
                NewEvent::new(stream, kind, payload.as_bytes())
            })
            .collect();
        log.append_batch(&batch)?;
        position = end;
    }
    log.sync()?;
    let write_time = started.elapsed();
    println!(
        "  appended and synced in {:.2?}: {:.0} events/s, {:.1} MB/s of payload",
        write_time,
        events as f64 / write_time.as_secs_f64(),
        payload_bytes as f64 / write_time.as_secs_f64() / 1e6
    );
    drop(log);

    let started = Instant::now();
    let log = Log::open(&directory, options)?;
    let open_time = started.elapsed();
    println!("reopened in {open_time:.2?}: positions {}..{}", log.first_position(), log.next_position());

    let started = Instant::now();
    let view = log.view();
    let mut replayed = 0u64;
    let mut checksum = 0u64;
    for event in view.iter() {
        let event = event?;
        replayed += 1;
        checksum = checksum.wrapping_add(event.payload.len() as u64);
    }
    let replay_time = started.elapsed();
    assert_eq!(replayed, events, "every event comes back");
    assert_eq!(checksum, payload_bytes, "every payload byte comes back");
    println!(
        "replayed {replayed} events (CRC checked) in {replay_time:.2?}: {:.0} events/s",
        replayed as f64 / replay_time.as_secs_f64()
    );

    let newest: Vec<u64> = view.iter_rev().take(3).map(|e| e.map(|e| e.position)).collect::<Result<_, _>>()?;
    println!("newest positions, read backwards: {newest:?}");
    if let Some(state) = log.stream_state("account-42")? {
        println!("stream account-42: version {}, last at position {}", state.last_version, state.last_position);
    }

    // Time travel: the log as it was half-way through the write.
    let first_time = view.iter().next().transpose()?.map_or(0, |e| e.timestamp_ns);
    let middle_time = first_time + (view.last_timestamp_ns() - first_time) / 2;
    let started = Instant::now();
    let as_of = view.position_at(middle_time)?;
    let seek_time = started.elapsed();
    println!(
        "as of {middle_time} ns the log ended at position {as_of:?} (found in {seek_time:.2?}, loading that segment's index on first use)"
    );
    let started = Instant::now();
    let mut balance = 0i64;
    let mut read = 0u64;
    for event in view.read_stream_as_of("account-42", middle_time)? {
        let event = event?;
        let sign = if event.event_type == "Deposited" { 1 } else { -1 };
        balance += sign * amount_of(event.payload);
        read += 1;
    }
    println!(
        "account-42 as of then: {read} events, balance {balance} (read through the stream index in {:.2?})",
        started.elapsed()
    );

    let started = Instant::now();
    let report = log.verify()?;
    println!(
        "verified {} segments, {} records, {} index files in {:.2?}: {}",
        report.segments_checked,
        report.records_checked,
        report.indexes_checked,
        started.elapsed(),
        if report.is_clean() { "clean".to_string() } else { format!("{} problems", report.problems.len()) }
    );
    if !report.is_clean() {
        return Err("verification found problems".into());
    }
    Ok(())
}

/// The `amount` field of a demo payload.
fn amount_of(payload: &[u8]) -> i64 {
    let text = std::str::from_utf8(payload).unwrap_or("");
    text.split("\"amount\":").nth(1).and_then(|rest| rest.split(',').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Starts from an empty directory. Refuses to delete a directory that holds
/// anything but a chronolog log, so a wrong argument cannot wipe user files.
fn reset(directory: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if !directory.exists() {
        println!("creating {}", directory.display());
        return Ok(());
    }
    for entry in std::fs::read_dir(directory)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = [".seg", ".streams", ".idx", ".tmp"].iter().any(|suffix| name.ends_with(suffix)) || name == "LOCK";
        if !ours {
            return Err(format!(
                "{} holds {name}, which is not a chronolog file; not resetting it",
                directory.display()
            )
            .into());
        }
    }
    println!("resetting {} (left by an earlier run)", directory.display());
    std::fs::remove_dir_all(directory)?;
    Ok(())
}
