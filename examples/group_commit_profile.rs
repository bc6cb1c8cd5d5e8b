//! Group commit under load, for profiling: THREADS threads (default 16) each
//! append APPENDS single events (default 200) with `Durability::Sync`; prints
//! the rate, how many appends each fdatasync covered, and the latency of an
//! append (median, 99th percentile, maximum). SPIN_US sets
//! `LogOptions::sync_spin_max` (default: its default; 0: waiters sleep at once).
//!
//! `cargo run --release --example group_commit_profile -- [THREADS] [APPENDS] [SPIN_US]`
use std::sync::{Arc, Barrier};

use chronolog::{Durability, Log, LogOptions, NewEvent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let threads: usize = arguments.next().map_or(Ok(16), |a| a.parse())?;
    let appends: u64 = arguments.next().map_or(Ok(200), |a| a.parse())?;
    let mut options = LogOptions::default().durability(Durability::Sync);
    if let Some(spin) = arguments.next() {
        options = options.sync_spin_max(std::time::Duration::from_micros(spin.parse()?));
    }
    let directory = tempfile::tempdir()?;
    let log = Log::open(directory.path(), options)?;
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let (log, start) = (log.clone(), Arc::clone(&start));
            std::thread::spawn(move || -> Result<Vec<std::time::Duration>, chronolog::Error> {
                let stream = format!("thread-{thread}");
                let mut latencies = Vec::with_capacity(appends as usize);
                start.wait();
                for _ in 0..appends {
                    let started = std::time::Instant::now();
                    log.append(&NewEvent::new(&stream, "Tick", &[0u8; 128]))?;
                    latencies.push(started.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    start.wait();
    let started = std::time::Instant::now();
    let syncs_before = log.sync_count();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.join().map_err(|_| "an appending thread panicked")??);
    }
    let elapsed = started.elapsed();
    let total = threads as u64 * appends;
    let syncs = log.sync_count() - syncs_before;
    latencies.sort_unstable();
    let at = |fraction: f64| latencies[((latencies.len() - 1) as f64 * fraction) as usize].as_secs_f64() * 1e6;
    println!(
        "{threads} threads: {:.1} k appends/s, {syncs} fdatasyncs, {:.1} appends each, latency p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        total as f64 / elapsed.as_secs_f64() / 1e3,
        total as f64 / syncs.max(1) as f64,
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
