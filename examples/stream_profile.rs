//! Reads whole streams of a log built by `open_profile` (`EVENTS / 100`
//! streams of 100 events, written round robin), for profiling stream reads
//! (`perf record`).
//!
//! ```text
//! cargo run --release --example open_profile -- /tmp/log 10000000
//! cargo run --release --example stream_profile -- /tmp/log 10000000
//! ```
use chronolog::{Durability, Log, LogOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let directory = arguments.next().ok_or("usage: stream_profile DIR EVENTS")?;
    let events: u64 = arguments.next().map_or(Ok(10_000_000), |text| text.parse())?;
    let streams = (events / 100).max(1);
    // `first` as a third argument reads only each stream's first event.
    let first_only = arguments.next().as_deref() == Some("first");
    // `CHRONOLOG_WRITABLE=1`: through a writable handle, as the bench does.
    let options = LogOptions::default().durability(Durability::None);
    let log = if std::env::var_os("CHRONOLOG_WRITABLE").is_some() {
        Log::open(&directory, options)?
    } else {
        Log::open_read_only(&directory, options)?
    };
    let view = log.view();
    // Warm: every segment index loaded, as in a running process.
    let mut stream = 0u64;
    let mut read = |count: u64| -> Result<u64, chronolog::Error> {
        let mut events = 0;
        for _ in 0..count {
            stream = (stream + 7_919) % streams;
            let take = if first_only { 1 } else { usize::MAX };
            for event in view.read_stream(&format!("stream-{stream:08}"), 0)?.take(take) {
                events += event?.payload.len() as u64 / 100;
            }
        }
        Ok(events)
    };
    read(2_000)?;
    let started = std::time::Instant::now();
    let reads = 50_000;
    let events = read(reads)?;
    let elapsed = started.elapsed();
    println!(
        "{:.1} µs per stream, {:.1} k streams/s ({events} events)",
        elapsed.as_secs_f64() * 1e6 / reads as f64,
        reads as f64 / elapsed.as_secs_f64() / 1e3
    );
    Ok(())
}
