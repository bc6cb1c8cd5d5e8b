//! Full replay of a 1 M-event log, 20 times, for profiling the read path
//! (`perf record`).
use chronolog::{Durability, Log, LogOptions, NewEvent};
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let names: Vec<String> = (0..1000).map(|s| format!("account-{s}")).collect();
    let payload = [0x42u8; 128];
    let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None))?;
    let mut batch = Vec::with_capacity(1000);
    for round in 0..1000u64 {
        batch.clear();
        batch.extend(
            (0..1000).map(|i| NewEvent::new(&names[((round * 1000 + i) % 1000) as usize], "Deposited", &payload)),
        );
        log.append_batch(&batch)?;
    }
    let view = log.view();
    let started = std::time::Instant::now();
    let mut bytes = 0usize;
    for _ in 0..20 {
        for event in view.iter() {
            bytes += event?.payload.len();
        }
    }
    println!("{:.1} M events/s ({bytes})", 20.0 / started.elapsed().as_secs_f64());
    Ok(())
}
