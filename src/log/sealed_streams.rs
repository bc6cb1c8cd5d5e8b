//! The stream table of the log's last sealed segment, checked on first use.
//!
//! Opening a log finds the newest stream table and checks its header, but
//! not its CRC: that is a pass over the whole file (3.7 MB and about 200 µs
//! for 100,000 streams), and most opens of a large log do not need the table
//! straight away. The first lookup checks the CRC; when it fails, the table is
//! rebuilt as opening would have rebuilt it (from an older table and the
//! segments after it), stored back unless a truncate or purge has run since,
//! and reported by [`crate::Log::rebuilt_indexes`].

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::indexes::IndexContext;
use super::open::load_stream_table;
use super::state::SegmentEntry;
use crate::error::Result;
use crate::index::{StreamState, StreamTable};
use crate::storage;

/// A stream table, either checked or waiting for its first use to be checked.
#[derive(Debug)]
pub(crate) struct SealedStreams {
    checked: OnceLock<StreamTable>,
    unchecked: Mutex<Option<Unchecked>>,
}

/// A table whose CRC was not checked yet, and what rebuilding it needs.
#[derive(Debug)]
pub(crate) struct Unchecked {
    pub table: StreamTable,
    pub path: PathBuf,
    /// The segments of the log when the table was found (they stay readable
    /// whatever happens to the files since: their maps outlive the files, and
    /// a truncate or purge opens those not yet open before it changes them).
    pub segments: Vec<SegmentEntry>,
    pub context: Arc<IndexContext>,
    /// The index generation then: a rebuilt table is stored back only if no
    /// truncate or purge has changed the files since.
    pub generation: u64,
}

impl SealedStreams {
    /// A table already checked (or built in memory).
    pub fn checked(table: StreamTable) -> SealedStreams {
        SealedStreams { checked: OnceLock::from(table), unchecked: Mutex::new(None) }
    }

    /// A table whose header was checked, to be checked whole on first use.
    pub fn unchecked(unchecked: Unchecked) -> SealedStreams {
        SealedStreams { checked: OnceLock::new(), unchecked: Mutex::new(Some(unchecked)) }
    }

    /// The checked table: checked (or rebuilt) on the first call. An error
    /// when the table is damaged and cannot be rebuilt (the next call tries
    /// again).
    pub fn table(&self) -> Result<&StreamTable> {
        loop {
            if let Some(table) = self.checked.get() {
                return Ok(table);
            }
            let mut unchecked = self.unchecked.lock();
            // Nothing pending: another thread checked the table while this
            // one waited (it sets `checked` before it lets the lock go).
            let Some(pending) = unchecked.as_ref() else { continue };
            // The pending table is taken only once a checked one is at hand:
            // a failure (or a panic) leaves it for the next call to try again.
            let table = if pending.table.verify().is_ok() {
                let Some(pending) = unchecked.take() else { continue };
                pending.table
            } else {
                let table = rebuild(pending)?;
                *unchecked = None;
                table
            };
            let _ = self.checked.set(table);
        }
    }

    /// A stream's state as of the table (see [`SealedStreams::table`]).
    pub fn get(&self, stream: &str) -> Result<Option<StreamState>> {
        Ok(self.table()?.get(stream))
    }
}

/// Rebuilds a damaged table from an older one and the segments after it, as
/// opening does, and stores it back.
fn rebuild(pending: &Unchecked) -> Result<StreamTable> {
    let context = &pending.context;
    let storage = &*context.storage;
    let table = load_stream_table(
        storage,
        &context.directory,
        &pending.segments,
        pending.table.next_position(),
        false,
        &mut Default::default(),
    )?;
    if context.writable {
        let current = context.generation.lock();
        if *current == pending.generation {
            // A hint: failing to store it costs another rebuild next time.
            let _ = storage::write_atomic(storage, &pending.path, table.as_bytes());
        }
    }
    context.rebuilt.lock().push(pending.path.clone());
    Ok(table)
}
