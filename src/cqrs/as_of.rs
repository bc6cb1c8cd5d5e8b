//! "As of": the point in the log a query looks from.

use crate::error::Result;
use crate::log::LogView;
use crate::snapshot::SnapshotBound;

/// Which events a rebuilt state reflects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event of the log (as the view holds it).
    Now,
    /// Every event whose timestamp is at or before this one (nanoseconds since
    /// the Unix epoch).
    Time(u64),
    /// Every event at or before this position.
    Position(u64),
}

impl AsOf {
    /// The first position *not* reflected: events at `[first, end)` count.
    /// A time lookup costs one time seek in the log's indexes.
    pub fn end_position(self, view: &LogView) -> Result<u64> {
        Ok(match self {
            AsOf::Now => view.next_position(),
            AsOf::Time(timestamp_ns) => view.position_at(timestamp_ns)?.map_or(view.first_position(), |p| p + 1),
            AsOf::Position(position) => position.saturating_add(1).min(view.next_position()),
        })
    }

    /// Which snapshots may start a rebuild ending at `end`. By time, the
    /// snapshot's own timestamp decides: after a purge the log cannot tell
    /// where an old snapshot stands, but its timestamp can.
    pub(crate) fn snapshot_bound(self, end: u64) -> SnapshotBound {
        match self {
            AsOf::Time(timestamp_ns) => SnapshotBound::AtOrBeforeTime(timestamp_ns),
            AsOf::Now | AsOf::Position(_) => SnapshotBound::Before(end),
        }
    }
}
