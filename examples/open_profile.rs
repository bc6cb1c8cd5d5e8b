//! Opens a log many times, for profiling the open path (`perf record`).
//!
//! ```text
//! cargo run --release --example open_profile -- [DIR] [EVENTS] [read-only|after-crash]
//! ```
//!
//! Builds a log of EVENTS events (default 1,000,000) in DIR (default a
//! temporary directory) with `EVENTS / 100` streams written round robin, as
//! `benches/index.rs` does, unless DIR already holds one; then opens it 200
//! times (20 after a crash) and prints the mean time of an open and of a
//! close (after a crash, the close also writes the active segment's index
//! and syncs).
use chronolog::{Durability, Log, LogOptions, NewEvent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let temporary = tempfile::tempdir()?;
    let directory = arguments.next().map_or_else(|| temporary.path().to_path_buf(), std::path::PathBuf::from);
    let events: u64 = arguments.next().map_or(Ok(1_000_000), |text| text.parse())?;
    let mode = arguments.next().unwrap_or_default();
    let read_only = mode == "read-only";
    // `after-crash`: each open finds no clean-close index beside the active
    // segment, as after a crash, and scans that segment (20 opens).
    let after_crash = mode == "after-crash";
    let opens = if after_crash { 20 } else { 200 };
    let streams = (events / 100).max(1);
    let payload = [0x42u8; 100];
    let options = LogOptions::default().durability(Durability::None);
    let log = Log::open(&directory, options.clone())?;
    if log.next_position() == 0 {
        let names: Vec<String> = (0..streams).map(|s| format!("stream-{s:08}")).collect();
        let mut batch = Vec::with_capacity(1000);
        let mut written = 0u64;
        while written < events {
            batch.clear();
            let count = (events - written).min(1000);
            batch.extend(
                (written..written + count).map(|i| NewEvent::new(&names[(i % streams) as usize], "Happened", &payload)),
            );
            log.append_batch(&batch)?;
            written += count;
        }
    }
    drop(log);
    // Open and close (drop) are timed apart: a clean close unmaps what open
    // mapped, and its cost is paid by every open-use-close cycle.
    let (mut opening, mut closing) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for _ in 0..opens {
        if after_crash {
            let last = std::fs::read_dir(&directory)?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".seg"))
                .max()
                .ok_or("no segment")?;
            std::fs::remove_file(directory.join(last.replace(".seg", ".idx")))?;
        }
        let started = std::time::Instant::now();
        let log = if read_only {
            Log::open_read_only(&directory, options.clone())?
        } else {
            Log::open(&directory, options.clone())?
        };
        std::hint::black_box(log.next_position());
        let opened = std::time::Instant::now();
        drop(log);
        opening += opened - started;
        closing += opened.elapsed();
    }
    println!("open: {:?} each, then close: {:?} each", opening / opens, closing / opens);
    Ok(())
}
