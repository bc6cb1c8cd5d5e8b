//! Time travel: positions by timestamp, replay as of a time, reading from a
//! time. Timestamps never decrease along the log, so the segments' time ranges
//! and the sparse index entries are sorted by time as well as by position.

use super::view::{Iter, LogView};
use crate::error::Result;

impl LogView {
    /// The last position whose timestamp is at or before `timestamp_ns`, `None`
    /// when every event of the view is later (or the view is empty).
    ///
    /// Costs a binary search over segments by time range, one in the segment's
    /// sparse index, and a scan of at most one index interval.
    ///
    /// ```
    /// # use chronolog::{Durability, Log, LogOptions, NewEvent};
    /// # let directory = tempfile::tempdir()?;
    /// # let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None))?;
    /// for (i, time) in [100u64, 200, 200, 300].into_iter().enumerate() {
    ///     log.append(&NewEvent::new("clock", "Ticked", &[i as u8]).with_timestamp_ns(time))?;
    /// }
    /// let view = log.view();
    /// assert_eq!(view.position_at(99)?, None);
    /// assert_eq!(view.position_at(250)?, Some(2));
    /// let as_of: Vec<u64> = view.iter_as_of(200)?.map(|e| e.map(|e| e.position)).collect::<Result<_, _>>()?;
    /// assert_eq!(as_of, vec![0, 1, 2]);
    /// let since: Vec<u64> = view.iter_from_time(200)?.map(|e| e.map(|e| e.position)).collect::<Result<_, _>>()?;
    /// assert_eq!(since, vec![1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position_at(&self, timestamp_ns: u64) -> Result<Option<u64>> {
        if self.is_empty() {
            return Ok(None);
        }
        let segments = self.segments();
        // Sealed segments know their first timestamp (footer); only the last
        // segment may need its first record read.
        let last = segments.len() - 1;
        let last_first_timestamp = self.first_timestamp(last)?;
        let count = segments.partition_point(|entry| {
            let first = match entry.footer {
                Some(footer) => Some(footer.min_timestamp_ns),
                None => last_first_timestamp,
            };
            first.is_some_and(|t| t <= timestamp_ns)
        });
        let Some(segment_index) = count.checked_sub(1) else { return Ok(None) };
        let first = segments[segment_index].segment.first_position();
        let view_end = self.data_end(segment_index);
        let start = self.with_index(segment_index, |index| index.seek_timestamp_before(timestamp_ns, view_end))?;
        let (mut offset, mut position) = start
            .map_or((crate::segment::HEADER_SIZE as u64, first), |entry| (u64::from(entry.offset), entry.position));
        let end = self.data_end(segment_index);
        let mut last = None;
        while offset < end && position < self.next_position() {
            let record = self.decode_at(segment_index, offset, end, position)?;
            if record.header.timestamp_ns > timestamp_ns {
                break;
            }
            last = Some(position);
            offset += u64::from(record.encoded_length);
            position += 1;
        }
        Ok(last)
    }

    /// Every event whose timestamp is at or before `timestamp_ns`: the log as
    /// it was at that moment.
    pub fn iter_as_of(&self, timestamp_ns: u64) -> Result<Iter<'_>> {
        let end = self.position_at(timestamp_ns)?.map_or(self.first_position(), |position| position + 1);
        Ok(self.iter_range(self.first_position(), end))
    }

    /// Every event whose timestamp is at or after `timestamp_ns` ("catch up
    /// from ten minutes ago").
    pub fn iter_from_time(&self, timestamp_ns: u64) -> Result<Iter<'_>> {
        let start = match timestamp_ns.checked_sub(1) {
            None => self.first_position(),
            Some(before) => self.position_at(before)?.map_or(self.first_position(), |position| position + 1),
        };
        Ok(self.iter_from(start))
    }

    /// Timestamp of a segment's first event in this view (`None`: it holds
    /// none yet).
    fn first_timestamp(&self, segment_index: usize) -> Result<Option<u64>> {
        let entry = &self.segments()[segment_index];
        if let Some(footer) = entry.footer {
            return Ok(Some(footer.min_timestamp_ns));
        }
        let first = entry.segment.first_position();
        if first >= self.next_position() {
            return Ok(None);
        }
        // The active segment: its first record, read through the map.
        let end = self.data_end(segment_index);
        let record = self.decode_at(segment_index, crate::segment::HEADER_SIZE as u64, end, first)?;
        Ok(Some(record.header.timestamp_ns))
    }
}
