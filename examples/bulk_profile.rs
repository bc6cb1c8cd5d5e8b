//! Bulk append loop for profiling (`perf record`): 2 M events in batches of
//! 1,000 across 10,000 streams.
use chronolog::{Durability, Log, LogOptions, NewEvent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let names: Vec<String> = (0..10_000).map(|s| format!("stream-{s:08}")).collect();
    let payload = [0x42u8; 100];
    let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None))?;
    let mut batch = Vec::with_capacity(1000);
    let started = std::time::Instant::now();
    for round in 0..2000u64 {
        batch.clear();
        batch.extend(
            (0..1000).map(|i| NewEvent::new(&names[((round * 1000 + i) % 10_000) as usize], "Happened", &payload)),
        );
        log.append_batch(&batch)?;
    }
    log.sync()?;
    println!("{:.2} M events/s", 2.0 / started.elapsed().as_secs_f64());
    Ok(())
}
