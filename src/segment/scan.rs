//! Walking the records of a segment, checking framing, CRC, position order,
//! timestamp order and batch completeness.

use crate::error::CorruptionKind;
use crate::record::{self, Decoded, RecordRef, FLAG_BATCH_END};

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Zeros (or the limit) right after a complete batch: a clean end.
    Clean,
    /// Zeros (or the limit) inside a batch: its last record was never written.
    IncompleteBatch {
        /// Offset of the incomplete batch's first record.
        offset: u64,
    },
    /// Bytes that are not a valid next record.
    Invalid {
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong with it.
        kind: CorruptionKind,
    },
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Offset just past the last complete batch.
    pub valid_end: u64,
    /// Position the next record after `valid_end` must have.
    pub next_position: u64,
    /// Records in complete batches.
    pub record_count: u64,
    /// Timestamp of the first record, if any.
    pub first_timestamp_ns: Option<u64>,
    /// Timestamp of the last record in a complete batch (or the one given).
    pub last_timestamp_ns: u64,
    /// Why the scan stopped.
    pub end: ScanEnd,
    /// Offset where the scan stopped (the first byte it could not use).
    pub stop_offset: u64,
    /// Position a record at `stop_offset` would have had.
    pub stop_position: u64,
}

/// Scans `bytes[start..limit]`, which must begin with a record of
/// `first_position` whose timestamp is at least `previous_timestamp_ns`.
/// `on_record` sees each record of a complete batch, with its offset, in order;
/// records of a batch whose last record is missing are never shown.
pub fn scan<'a>(
    bytes: &'a [u8],
    start: u64,
    limit: u64,
    first_position: u64,
    previous_timestamp_ns: u64,
    mut on_record: impl FnMut(&RecordRef<'a>, u64),
) -> ScanOutcome {
    let limit = limit.min(bytes.len() as u64);
    let mut outcome = ScanOutcome {
        valid_end: start,
        next_position: first_position,
        record_count: 0,
        first_timestamp_ns: None,
        last_timestamp_ns: previous_timestamp_ns,
        end: ScanEnd::Clean,
        stop_offset: start,
        stop_position: first_position,
    };
    let mut pending: Vec<(RecordRef<'a>, u64)> = Vec::new();
    let mut offset = start;
    let mut expected_position = first_position;
    let mut timestamp_floor = previous_timestamp_ns;
    let stop = loop {
        if offset >= limit {
            break None;
        }
        let record = match record::decode(&bytes[offset as usize..limit as usize]) {
            Ok(Decoded::End) => break None,
            Ok(Decoded::Record(record)) => record,
            Err(kind) => break Some((offset, kind)),
        };
        if record.header.position != expected_position {
            let kind = CorruptionKind::PositionMismatch { expected: expected_position, found: record.header.position };
            break Some((offset, kind));
        }
        if record.header.timestamp_ns < timestamp_floor {
            break Some((offset, CorruptionKind::TimestampRegression));
        }
        timestamp_floor = record.header.timestamp_ns;
        expected_position += 1;
        let record_offset = offset;
        offset += u64::from(record.encoded_length);
        pending.push((record, record_offset));
        if record.header.flags & FLAG_BATCH_END != 0 {
            for (record, record_offset) in pending.drain(..) {
                outcome.first_timestamp_ns.get_or_insert(record.header.timestamp_ns);
                outcome.last_timestamp_ns = record.header.timestamp_ns;
                outcome.record_count += 1;
                on_record(&record, record_offset);
            }
            outcome.valid_end = offset;
            outcome.next_position = expected_position;
        }
    };
    outcome.stop_offset = offset;
    outcome.stop_position = expected_position;
    outcome.end = match (stop, pending.is_empty()) {
        (Some((offset, kind)), _) => ScanEnd::Invalid { offset, kind },
        (None, true) => ScanEnd::Clean,
        (None, false) => ScanEnd::IncompleteBatch { offset: outcome.valid_end },
    };
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_into, RecordHeader};

    fn batch(buffer: &mut Vec<u8>, first: u64, count: u64) {
        for position in first..first + count {
            let flags = if position == first + count - 1 { FLAG_BATCH_END } else { 0 };
            let header = RecordHeader { position, timestamp_ns: 100 + position, stream_version: 0, flags };
            encode_into(buffer, &header, "s", "t", b"", b"payload");
        }
    }

    #[test]
    fn complete_batches_are_kept_and_an_incomplete_one_is_not() {
        let mut bytes = Vec::new();
        batch(&mut bytes, 5, 2);
        let after_first = bytes.len() as u64;
        batch(&mut bytes, 7, 3);
        let whole = bytes.len();
        bytes.truncate(whole - 30);
        bytes.resize(whole + 64, 0);
        let mut seen = Vec::new();
        let outcome = scan(&bytes, 0, bytes.len() as u64, 5, 0, |record, _| seen.push(record.header.position));
        assert_eq!(seen, vec![5, 6]);
        assert_eq!(outcome.valid_end, after_first);
        assert_eq!(outcome.next_position, 7);
        assert!(matches!(outcome.end, ScanEnd::Invalid { .. }));
    }

    #[test]
    fn missing_batch_end_is_an_incomplete_batch() {
        let mut bytes = Vec::new();
        batch(&mut bytes, 0, 1);
        let after_first = bytes.len() as u64;
        let header = RecordHeader { position: 1, timestamp_ns: 200, stream_version: 0, flags: 0 };
        encode_into(&mut bytes, &header, "s", "t", b"", b"x");
        bytes.resize(bytes.len() + 64, 0);
        let outcome = scan(&bytes, 0, bytes.len() as u64, 0, 0, |_, _| {});
        assert_eq!(outcome.end, ScanEnd::IncompleteBatch { offset: after_first });
        assert_eq!(outcome.record_count, 1);
    }

    #[test]
    fn wrong_position_stops_the_scan() {
        let mut bytes = Vec::new();
        batch(&mut bytes, 0, 1);
        batch(&mut bytes, 3, 1);
        let outcome = scan(&bytes, 0, bytes.len() as u64, 0, 0, |_, _| {});
        assert_eq!(outcome.record_count, 1);
        assert!(matches!(
            outcome.end,
            ScanEnd::Invalid { kind: CorruptionKind::PositionMismatch { expected: 1, found: 3 }, .. }
        ));
    }
}
