//! Builds a log of 1 M events (10,000 streams) once, then opens it 200 times,
//! for profiling the open path (`perf record`).
use chronolog::{Durability, Log, LogOptions, NewEvent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let names: Vec<String> = (0..10_000).map(|s| format!("stream-{s:08}")).collect();
    let payload = [0x42u8; 100];
    let options = LogOptions::default().durability(Durability::None);
    {
        let log = Log::open(directory.path(), options.clone())?;
        let mut batch = Vec::with_capacity(1000);
        for round in 0..1000u64 {
            batch.clear();
            batch.extend(
                (0..1000).map(|i| NewEvent::new(&names[((round * 1000 + i) % 10_000) as usize], "Happened", &payload)),
            );
            log.append_batch(&batch)?;
        }
    }
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let log = Log::open(directory.path(), options.clone())?;
        std::hint::black_box(log.next_position());
    }
    println!("open: {:?} each", started.elapsed() / 200);
    Ok(())
}
