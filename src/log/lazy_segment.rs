//! A segment of the log's list: open, or described by the manifest and opened
//! on first use.
//!
//! Opening a segment costs a handful of system calls (open, map, two reads).
//! A log of many sealed segments opens in constant time by taking their
//! headers and footers from the manifest and opening each file only when
//! something reads it. The segment opened then must be the one the manifest
//! described: a different header or footer is reported as
//! [`CorruptionKind::ManifestMismatch`], never read as the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::error::{CorruptionKind, Error, Result};
use crate::segment::layout::header_format_version;
use crate::segment::manifest::ManifestEntry;
use crate::segment::{Segment, SegmentFooter, SegmentHeader, HEADER_SIZE};
use crate::storage::Storage;

/// How to open a segment the manifest described, and the footer it must have.
#[derive(Debug)]
struct Opener {
    storage: Arc<dyn Storage>,
    writable: bool,
    footer: SegmentFooter,
}

/// A segment, opened now or on first use.
#[derive(Debug)]
pub(crate) struct LazySegment {
    header_bytes: [u8; HEADER_SIZE],
    header: SegmentHeader,
    path: PathBuf,
    /// Set for a segment made from the manifest; `opened` is set at once for
    /// every other segment.
    opener: Option<Opener>,
    opened: OnceLock<Arc<Segment>>,
}

impl LazySegment {
    /// A segment already open.
    pub fn open(segment: Segment) -> LazySegment {
        let header_bytes = *segment.header_bytes();
        let header =
            SegmentHeader { first_position: segment.first_position(), capacity_bytes: segment.capacity_bytes() };
        let path = segment.path().to_path_buf();
        LazySegment { header_bytes, header, path, opener: None, opened: OnceLock::from(Arc::new(segment)) }
    }

    /// A sealed segment described by the manifest, opened on first use.
    pub fn described(storage: Arc<dyn Storage>, path: PathBuf, entry: ManifestEntry, writable: bool) -> LazySegment {
        LazySegment {
            header_bytes: entry.header_bytes,
            header: entry.header,
            path,
            opener: Some(Opener { storage, writable, footer: entry.footer }),
            opened: OnceLock::new(),
        }
    }

    /// Position of the segment's first record.
    pub fn first_position(&self) -> u64 {
        self.header.first_position
    }

    /// The segment's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segment, opened (and checked against the manifest) on first call.
    /// Two threads may race to open it: both copies are the same file, one
    /// is kept.
    pub fn get(&self) -> Result<&Arc<Segment>> {
        match (self.opened.get(), &self.opener) {
            (Some(segment), _) => Ok(segment),
            (None, Some(opener)) => self.open_described(opener),
            (None, None) => unreachable!("a segment not made from the manifest is open from the start"),
        }
    }

    #[cold]
    fn open_described(&self, opener: &Opener) -> Result<&Arc<Segment>> {
        match self.check_and_open(opener) {
            Ok(segment) => Ok(self.opened.get_or_init(|| Arc::new(segment))),
            // Another thread (a truncate or purge, which opens the segments
            // it is about to change) may have opened it meanwhile, and then
            // changed the file: its copy is the one to read.
            Err(error) => self.opened.get().ok_or(error),
        }
    }

    fn check_and_open(&self, opener: &Opener) -> Result<Segment> {
        let segment = match Segment::open(&*opener.storage, &self.path, self.first_position(), opener.writable) {
            Ok(segment) => segment,
            // Gone since the open (removed by hand: the log removes a segment
            // only after opening it, see `truncate_after` and `purge_before`).
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let kind = CorruptionKind::MissingSegment { position: self.first_position() };
                return Err(Error::corrupted(&self.path, 0, kind));
            }
            Err(error) => return Err(error),
        };
        let mismatch = |offset: u64| Error::corrupted(&self.path, offset, CorruptionKind::ManifestMismatch);
        if segment.header_bytes() != &self.header_bytes {
            return Err(mismatch(0));
        }
        if segment.footer()? != Some(opener.footer) {
            return Err(mismatch(segment.data_limit()));
        }
        Ok(segment)
    }

    /// The segment if it is open: for hints (prefetches) that must not open it.
    pub fn if_open(&self) -> Option<&Arc<Segment>> {
        self.opened.get()
    }

    /// Size of the segment file.
    pub fn capacity_bytes(&self) -> u64 {
        self.header.capacity_bytes
    }

    /// Offset where the footer starts; records end at or before it.
    pub fn data_limit(&self) -> u64 {
        self.header.capacity_bytes - crate::segment::FOOTER_SIZE as u64
    }

    /// The format version in the segment's header.
    pub fn format_version(&self) -> u32 {
        header_format_version(&self.header_bytes)
    }

    /// What the manifest says of this segment, sealed with `footer`.
    pub fn manifest_entry(&self, footer: SegmentFooter) -> ManifestEntry {
        ManifestEntry { header_bytes: self.header_bytes, header: self.header, footer }
    }
}
