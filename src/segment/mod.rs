//! Segment files: fixed-capacity files of records, named by their first
//! position, with a header at the start and, once sealed, a footer at the end.
//!
//! A segment is allocated to its full capacity when it is created (so writes
//! never need new blocks and a read through the map never meets a hole), written
//! with positioned writes, and read through one read-only memory map.

pub mod layout;
pub mod manifest;
mod scan;
pub mod truncate_marker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{CorruptionKind, Error, Result};
use crate::storage::{self, Mapping, OpenMode, Storage, StorageFile};

pub use layout::{
    is_readable_format_version, SegmentFooter, SegmentHeader, FOOTER_SIZE, FORMAT_VERSION,
    FORMAT_VERSION_OLDEST_READABLE, HEADER_SIZE,
};
pub use scan::{scan, ScanEnd, ScanOutcome};

/// File name extension of segment files.
pub const SEGMENT_EXTENSION: &str = "seg";

/// The file name of the segment whose first record is `first_position`.
pub fn file_name(first_position: u64) -> String {
    crate::naming::numbered(first_position, SEGMENT_EXTENSION)
}

/// The first position encoded in a segment file name, if `name` is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    crate::naming::parse_numbered(name, SEGMENT_EXTENSION)
}

/// One open segment file and its map.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    /// The header exactly as on disk (its format version may be older than
    /// this build's): what the manifest records and compares.
    header_bytes: [u8; HEADER_SIZE],
    file: Arc<dyn StorageFile>,
    map: Mapping,
}

impl Segment {
    /// Creates a new, empty segment, fully allocated and durable (file and
    /// directory entry) before it is returned. The file appears under its final
    /// name only once its header is on disk. A segment file of that name must
    /// not exist: the log creates a segment only past its end, so one there
    /// means the directory holds segments the log does not know of, which are
    /// never written over.
    pub fn create(
        storage: &dyn Storage,
        directory: &Path,
        first_position: u64,
        capacity_bytes: u64,
    ) -> Result<Segment> {
        let path = directory.join(file_name(first_position));
        let temporary = storage::temporary_path(&path);
        let header = SegmentHeader { first_position, capacity_bytes };
        let build = || -> std::io::Result<Arc<dyn StorageFile>> {
            if storage.exists(&temporary)? {
                storage.remove_file(&temporary)?;
            }
            let file = storage.open(&temporary, OpenMode::CreateNew)?;
            file.allocate(capacity_bytes)?;
            file.write_all_at(&header.encode(), 0)?;
            file.sync_data()?;
            Ok(file)
        };
        let file = match build() {
            Ok(file) => file,
            Err(error) => {
                // Give back the space of a half-made file; the error that matters
                // is the first one.
                let _ = storage.remove_file(&temporary);
                return Err(Error::io("create segment", &temporary, error));
            }
        };
        if storage.exists(&path).unwrap_or(true) {
            let _ = storage.remove_file(&temporary);
            let error = std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a segment file of this name exists past the end of the log",
            );
            return Err(Error::io("create segment", &path, error));
        }
        storage.rename(&temporary, &path).map_err(|e| Error::io("rename", &path, e))?;
        storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))?;
        let map = file.map().map_err(|e| Error::io("map", &path, e))?;
        Ok(Segment { path, header, header_bytes: header.encode(), file, map })
    }

    /// Opens an existing segment and checks its header against the position its
    /// name promises.
    pub fn open(storage: &dyn Storage, path: &Path, expected_first_position: u64, writable: bool) -> Result<Segment> {
        let mode = if writable { OpenMode::ReadWrite } else { OpenMode::ReadOnly };
        let file = storage.open(path, mode).map_err(|e| Error::io("open segment", path, e))?;
        let mut map = file.map().map_err(|e| Error::io("map", path, e))?;
        let read = read_or_map(&*file, &map, 0, HEADER_SIZE, path)?;
        let header = SegmentHeader::decode(&read).map_err(|(offset, kind)| Error::corrupted(path, offset, kind))?;
        let mut header_bytes = [0u8; HEADER_SIZE];
        header_bytes.copy_from_slice(&read[..HEADER_SIZE]);
        if header.first_position != expected_first_position {
            return Err(Error::corrupted(
                path,
                layout::HEADER_FIRST_POSITION_OFFSET as u64,
                CorruptionKind::SegmentMismatch,
            ));
        }
        if writable && (map.len() as u64) < header.capacity_bytes {
            // A file cut short (by hand, or by a tool that copied it badly): give
            // it back its full, allocated size; the missing bytes read as zeros
            // and recovery treats them like any other tail that never arrived.
            drop(map);
            file.allocate(header.capacity_bytes).map_err(|e| Error::io("allocate", path, e))?;
            map = file.map().map_err(|e| Error::io("map", path, e))?;
        }
        if header.capacity_bytes != map.len() as u64 {
            return Err(Error::corrupted(
                path,
                layout::HEADER_CAPACITY_OFFSET as u64,
                CorruptionKind::Truncated { needed: header.capacity_bytes, available: map.len() as u64 },
            ));
        }
        Ok(Segment { path: path.to_path_buf(), header, header_bytes, file, map })
    }

    /// The segment's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Position of the first record this segment holds (or will hold).
    pub fn first_position(&self) -> u64 {
        self.header.first_position
    }

    /// The format version in the segment's header (checked readable when the
    /// segment was opened).
    pub fn format_version(&self) -> u32 {
        layout::header_format_version(&self.header_bytes)
    }

    /// The header's bytes, exactly as on disk.
    pub fn header_bytes(&self) -> &[u8; HEADER_SIZE] {
        &self.header_bytes
    }

    /// Size of the file.
    pub fn capacity_bytes(&self) -> u64 {
        self.header.capacity_bytes
    }

    /// Offset where the footer starts; records must end at or before it.
    pub fn data_limit(&self) -> u64 {
        self.header.capacity_bytes - FOOTER_SIZE as u64
    }

    /// The mapped bytes of the whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The stored CRC of the record that ends at offset `end` (found through
    /// the length copy in its trailer), once the record is checked whole;
    /// `None` when no valid record ends there.
    pub fn record_crc_before(&self, end: u64) -> Option<u32> {
        let start = self.record_start_before(end)?;
        match crate::record::decode(self.bytes().get(start..usize::try_from(end).ok()?)?) {
            Ok(crate::record::Decoded::Record(_)) => self.stored_crc_before(end),
            _ => None,
        }
    }

    /// [`Segment::record_crc_before`] for a record the caller has just
    /// decoded (and so checked): the CRC field only.
    pub fn stored_crc_before(&self, end: u64) -> Option<u32> {
        let start = self.record_start_before(end)?;
        self.bytes().get(start..start + size_of::<u32>()).map(LittleEndian::read_u32)
    }

    fn record_start_before(&self, end: u64) -> Option<usize> {
        let end = usize::try_from(end).ok()?;
        end.checked_sub(crate::record::preceding_length(self.bytes(), end)?)
    }

    /// Hints that the bytes at `[offset, offset + length)` will be read soon.
    pub fn prefetch(&self, offset: u64, length: usize) {
        self.map.prefetch(offset as usize, length);
    }

    /// The footer, `None` when the segment is not sealed.
    pub fn footer(&self) -> Result<Option<SegmentFooter>> {
        let start = self.data_limit() as usize;
        let bytes = read_or_map(&*self.file, &self.map, start, FOOTER_SIZE, &self.path)?;
        SegmentFooter::decode(&bytes, &self.header)
            .map_err(|(offset, kind)| Error::corrupted(&self.path, start as u64 + offset, kind))
    }

    /// Writes bytes at an offset inside the data region.
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> Result<()> {
        debug_assert!(offset >= HEADER_SIZE as u64 && offset + bytes.len() as u64 <= self.capacity_bytes());
        self.file.write_all_at(bytes, offset).map_err(|e| Error::io("write", &self.path, e))
    }

    /// Makes written bytes durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    /// Starts writing `[from, to)` to disk without waiting (a hint: see
    /// [`crate::storage::StorageFile::start_writeback`]).
    pub fn start_writeback(&self, from: u64, to: u64) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        self.file.start_writeback(from, to - from).map_err(|e| Error::io("start writeback", &self.path, e))
    }

    /// Makes the records durable, then writes the footer and makes it durable:
    /// after this the segment is sealed. The records are synced first so that
    /// a footer on disk always describes records on disk (pages may otherwise
    /// reach the disk in any order).
    pub fn seal(&self, footer: &SegmentFooter) -> Result<()> {
        self.sync()?;
        self.write_at(&footer.encode(), self.data_limit())?;
        self.sync()
    }

    /// Zeroes `[from, to)` and syncs: used to cut a torn tail so that no stale
    /// byte can ever be read as a record again.
    pub fn zero_range(&self, from: u64, to: u64) -> Result<()> {
        const CHUNK_BYTES: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK_BYTES.min(to.saturating_sub(from)) as usize];
        let mut offset = from;
        while offset < to {
            let length = (to - offset).min(CHUNK_BYTES);
            self.write_at(&zeros[..length as usize], offset)?;
            offset += length;
        }
        self.sync()
    }
}

/// The `length` bytes at `offset`, read with one `pread` rather than through
/// the map: opening a log reads every segment's header and footer, and
/// touching them through the maps cost two page faults and two page-table
/// pages per segment (a third of the open time of a 25-segment log). When the
/// file is shorter, the map's bytes (whatever is there) are returned, so that
/// the decoder names the truncation.
fn read_or_map(file: &dyn StorageFile, map: &Mapping, offset: usize, length: usize, path: &Path) -> Result<Vec<u8>> {
    if offset.checked_add(length).is_none_or(|end| end > map.len()) {
        return Ok(map.get(offset..).unwrap_or(&[]).to_vec());
    }
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, offset as u64).map_err(|e| Error::io("read", path, e))?;
    Ok(bytes)
}

/// Replaces the segment file at `path` by a copy of its first `data_end` bytes
/// (header and records), fully allocated, unsealed, with `patch` (offset,
/// bytes) written over the copy. The old file is replaced by rename, so maps
/// of it held by readers stay valid and unchanged.
pub fn rewrite_prefix(
    storage: &dyn Storage,
    segment: &Segment,
    data_end: u64,
    patch: Option<&(u64, Vec<u8>)>,
) -> Result<()> {
    let path = segment.path();
    let temporary = storage::temporary_path(path);
    let prefix = segment
        .bytes()
        .get(..data_end as usize)
        .ok_or_else(|| Error::corrupted(path, data_end, CorruptionKind::InvalidField { field: "data end" }))?;
    let build = || -> std::io::Result<()> {
        if storage.exists(&temporary)? {
            storage.remove_file(&temporary)?;
        }
        let file = storage.open(&temporary, OpenMode::CreateNew)?;
        file.allocate(segment.capacity_bytes())?;
        file.write_all_at(prefix, 0)?;
        if let Some((offset, bytes)) = patch {
            file.write_all_at(bytes, *offset)?;
        }
        file.sync_data()
    };
    if let Err(error) = build() {
        let _ = storage.remove_file(&temporary);
        return Err(Error::io("rewrite segment", &temporary, error));
    }
    storage.rename(&temporary, path).map_err(|e| Error::io("rename", path, e))?;
    let directory = storage::parent_of(path);
    storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))
}

/// Offset of the last non-zero byte of `bytes[from..]`, if any.
pub fn last_non_zero(bytes: &[u8], from: u64) -> Option<u64> {
    let tail = bytes.get(from as usize..)?;
    // This runs over up to a whole segment of mostly zero bytes: test 4 KiB
    // chunks with an OR fold (which vectorises) before looking at bytes.
    const CHUNK: usize = 4096;
    let chunk_index = tail.chunks(CHUNK).rposition(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | b) != 0)?;
    let chunk = &tail[chunk_index * CHUNK..tail.len().min((chunk_index + 1) * CHUNK)];
    let index = chunk.iter().rposition(|&b| b != 0)?;
    Some(from + (chunk_index * CHUNK + index) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StdStorage;

    #[test]
    fn a_segment_is_never_created_over_an_existing_one() {
        let directory = tempfile::tempdir().expect("tempdir");
        let capacity = layout::SEGMENT_CAPACITY_BYTES_MIN;
        let first = Segment::create(&StdStorage, directory.path(), 7, capacity).expect("create");
        first.write_at(b"records", HEADER_SIZE as u64).expect("write");
        first.sync().expect("sync");
        let again = Segment::create(&StdStorage, directory.path(), 7, capacity);
        assert!(
            matches!(&again, Err(Error::Io { path, source, .. })
                if path == first.path() && source.kind() == std::io::ErrorKind::AlreadyExists),
            "{again:?}"
        );
        let bytes = std::fs::read(first.path()).expect("read");
        assert_eq!(&bytes[HEADER_SIZE..HEADER_SIZE + 7], b"records", "the existing segment is untouched");
        let names: Vec<_> =
            std::fs::read_dir(directory.path()).expect("list").map(|entry| entry.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary is left: {names:?}");
    }
}
