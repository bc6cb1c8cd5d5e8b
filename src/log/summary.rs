//! What a view holds, as an operator asks it: its segments and its streams.

use std::path::PathBuf;

use super::view::LogView;
use crate::error::Result;
use crate::segment::{SegmentFooter, HEADER_SIZE};

/// One segment of a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The segment's file.
    pub path: PathBuf,
    /// Its first position.
    pub first_position: u64,
    /// One past its last position in the view.
    pub next_position: u64,
    /// Size of the file (allocated up front).
    pub capacity_bytes: u64,
    /// Bytes of records in the view.
    pub record_bytes: u64,
    /// Format version in its header.
    pub format_version: u32,
    /// Its footer, when it is sealed.
    pub footer: Option<SegmentFooter>,
}

impl LogView {
    /// The view's segments, oldest first (the last one is the active one).
    ///
    /// ```
    /// use chronolog::{Log, LogOptions, NewEvent};
    ///
    /// let directory = tempfile::tempdir()?;
    /// let log = Log::open(directory.path(), LogOptions::default().segment_capacity_bytes(4096))?;
    /// for i in 0..100u8 {
    ///     log.append(&NewEvent::new("s", "T", &[i; 60]))?;
    /// }
    /// let segments = log.view().segment_summaries();
    /// assert!(segments.len() > 1);
    /// assert!(segments[0].footer.is_some(), "all but the last are sealed");
    /// assert_eq!(segments.last().map(|s| s.next_position), Some(100));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segment_summaries(&self) -> Vec<SegmentSummary> {
        let segments = self.segments();
        segments
            .iter()
            .enumerate()
            .map(|(index, entry)| SegmentSummary {
                path: entry.segment.path().to_path_buf(),
                first_position: entry.segment.first_position(),
                next_position: segments
                    .get(index + 1)
                    .map_or(self.next_position(), |next| next.segment.first_position()),
                capacity_bytes: entry.segment.capacity_bytes(),
                record_bytes: self.data_end(index).saturating_sub(HEADER_SIZE as u64),
                format_version: entry.segment.format_version(),
                footer: entry.footer,
            })
            .collect()
    }

    /// How many streams have events in the log up to the view's end,
    /// including streams whose events were all purged (the log still knows
    /// their versions). Costs the active segment's index, no scan.
    pub fn stream_count(&self) -> Result<u64> {
        let sealed = self.sealed_stream_count()?;
        let table = self.published_sealed_streams().table()?;
        let last = self.segments().len() - 1;
        if self.segments()[last].footer.is_some() {
            return Ok(sealed);
        }
        let end = self.data_end(last);
        // Streams first written in the active segment, within the view.
        let new = self.with_index(last, |index| {
            index
                .streams()
                .filter(|(name, postings)| {
                    postings.offsets.first().is_some_and(|&offset| u64::from(offset) < end) && table.get(name).is_none()
                })
                .count() as u64
        })?;
        Ok(sealed + new)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::{Durability, Log, LogOptions, NewEvent};

    fn distinct_streams(log: &Log) -> u64 {
        let view = log.view();
        let streams: HashSet<String> = view.iter().map(|e| e.unwrap().stream.to_owned()).collect();
        streams.len() as u64
    }

    #[test]
    fn stream_count_matches_a_scan_across_segments_reopens_and_views() {
        let directory = tempfile::tempdir().unwrap();
        let options = LogOptions::default().segment_capacity_bytes(4096).durability(Durability::None);
        let log = Log::open(directory.path(), options.clone()).unwrap();
        assert_eq!(log.view().stream_count().unwrap(), 0);
        for i in 0..300u64 {
            // New streams keep appearing, old ones keep coming back.
            let stream = format!("s-{}", if i % 3 == 0 { i } else { i % 7 });
            log.append(&NewEvent::new(&stream, "T", &[0; 40])).unwrap();
            if i % 37 == 0 {
                assert_eq!(log.view().stream_count().unwrap(), distinct_streams(&log), "after {i}");
            }
        }
        let before = log.view();
        log.append(&NewEvent::new("brand-new", "T", b"")).unwrap();
        assert_eq!(before.stream_count().unwrap(), distinct_streams(&log) - 1, "a view ends where it ends");
        let count = log.view().stream_count().unwrap();
        assert_eq!(count, distinct_streams(&log));
        drop((before, log));

        let log = Log::open_read_only(directory.path(), options.clone()).unwrap();
        assert_eq!(log.view().stream_count().unwrap(), count);
        let summaries = log.view().segment_summaries();
        assert!(summaries.len() > 3);
        assert!(summaries.windows(2).all(|w| w[0].next_position == w[1].first_position));
        assert!(summaries.iter().all(|s| s.format_version == crate::segment::FORMAT_VERSION));
        drop(log);

        // Purged streams still count: the log remembers their versions.
        let log = Log::open(directory.path(), options).unwrap();
        assert!(log.purge_before(200).unwrap() > 0);
        assert_eq!(log.view().stream_count().unwrap(), count);
    }
}
