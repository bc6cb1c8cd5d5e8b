//! Bulk append loop for profiling (`perf record`): events in batches of 1,000
//! across 10,000 streams, with the append loop and the final sync timed
//! apart, and the same records written to a bare file for comparison.
//!
//! `cargo run --release --example bulk_profile -- [EVENTS] [log|bare|both] [WRITEBACK_BYTES]`
use std::io::Write;
use std::time::{Duration, Instant};

use chronolog::record::{self, RecordHeader, FLAG_BATCH_END};
use chronolog::{Durability, Log, LogOptions, NewEvent};

const BATCH: u64 = 1000;
/// Streams the events go to, round robin (`STREAMS` in the environment;
/// 10,000 by default, as in the bench).
static STREAMS: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| std::env::var("STREAMS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000).max(1));

fn log_run(
    events: u64,
    names: &[String],
    payload: &[u8],
    options: LogOptions,
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let log = Log::open(directory.path(), options)?;
    let mut batch = Vec::with_capacity(BATCH as usize);
    let started = Instant::now();
    for round in 0..events / BATCH {
        batch.clear();
        batch.extend(
            (0..BATCH).map(|i| NewEvent::new(&names[((round * BATCH + i) % *STREAMS) as usize], "Happened", payload)),
        );
        log.append_batch(&batch)?;
    }
    let appended = started.elapsed();
    log.sync()?;
    Ok((appended, started.elapsed() - appended))
}

fn bare_run(events: u64, names: &[String], payload: &[u8]) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let mut file = std::fs::File::create(directory.path().join("bare"))?;
    let mut buffer = Vec::with_capacity(BATCH as usize * 200);
    let started = Instant::now();
    for round in 0..events / BATCH {
        buffer.clear();
        for p in round * BATCH..(round + 1) * BATCH {
            let header =
                RecordHeader { position: p, timestamp_ns: p, stream_version: p / *STREAMS, flags: FLAG_BATCH_END };
            record::encode_into(&mut buffer, &header, &names[(p % *STREAMS) as usize], "Happened", b"", payload);
        }
        file.write_all(&buffer)?;
    }
    let appended = started.elapsed();
    file.sync_data()?;
    Ok((appended, started.elapsed() - appended))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    // Whole batches only, so that the rates divide by what was written.
    let events: u64 = arguments.next().map_or(Ok(2_000_000), |a| a.parse::<u64>())? / BATCH * BATCH;
    let which = arguments.next().unwrap_or_else(|| "log".to_owned());
    let mut options = LogOptions::default().durability(Durability::None);
    if let Some(bytes) = arguments.next() {
        options = options.writeback_bytes(bytes.parse()?);
    }
    let names: Vec<String> = (0..*STREAMS).map(|s| format!("stream-{s:08}")).collect();
    let payload = [0x42u8; 100];
    let report = |label: &str, (appended, synced): (Duration, Duration)| {
        let total = appended + synced;
        println!(
            "{label}: {:.2} M events/s (append {:.1} ms, sync {:.1} ms)",
            events as f64 / total.as_secs_f64() / 1e6,
            appended.as_secs_f64() * 1e3,
            synced.as_secs_f64() * 1e3
        );
    };
    if which == "log" || which == "both" {
        report("log ", log_run(events, &names, &payload, options)?);
    }
    if which == "bare" || which == "both" {
        report("bare", bare_run(events, &names, &payload)?);
    }
    Ok(())
}
