//! The workload shared by the comparison benches (`benches/`): the same
//! events, streams and batches for chronolog and every peer.

use chronolog::{Log, NewEvent};

/// Events written by the bulk and read benches.
pub const EVENTS: u64 = 200_000;
/// Streams, written round robin (100 events each).
pub const STREAMS: u64 = 2_000;
/// Payload size of every event.
pub const PAYLOAD_BYTES: usize = 128;
/// Events per bulk batch (one sync at the end).
pub const BULK_BATCH: u64 = 1_000;
/// Events per durable batch (one sync per batch).
pub const DURABLE_BATCH: u64 = 10;
/// Durable batches per sample.
pub const DURABLE_BATCHES: u64 = 200;

/// The stream names.
pub fn names() -> Vec<String> {
    (0..STREAMS).map(|s| format!("account-{s:05}")).collect()
}

/// Appends positions `from..to` to a chronolog log in batches of `batch`.
pub fn chronolog_append(log: &Log, names: &[String], from: u64, to: u64, batch: u64) {
    let payload = [0x5au8; PAYLOAD_BYTES];
    let mut events = Vec::with_capacity(batch as usize);
    let mut position = from;
    while position < to {
        events.clear();
        let end = (position + batch).min(to);
        events.extend((position..end).map(|p| NewEvent::new(&names[(p % STREAMS) as usize], "Deposited", &payload)));
        log.append_batch(&events).expect("append");
        position = end;
    }
}
