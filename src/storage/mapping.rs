//! Read-only memory maps: the only module allowed to use `unsafe`.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;

/// A read-only memory map of a whole file.
///
/// The engine never shrinks a file that may be mapped (segments are allocated
/// to their full capacity when created and are replaced by rename, never cut),
/// so every byte of the map stays backed by the file and reads cannot SIGBUS.
#[derive(Debug)]
pub struct Mapping {
    map: Option<memmap2::Mmap>,
}

impl Mapping {
    /// Maps `file` read-only. An empty file gives an empty mapping (mapping zero
    /// bytes is an error on Linux).
    pub(crate) fn of_file(file: &File) -> io::Result<Mapping> {
        let length = file.metadata()?.len();
        if length == 0 {
            return Ok(Mapping { map: None });
        }
        let length = usize::try_from(length).map_err(|_| io::Error::other("file too large to map"))?;
        // SAFETY: memmap2 requires that the file is not truncated or changed in a
        // way that makes the mapping unsound while it is alive. chronolog never
        // shrinks a segment or index file (segments are fully allocated at
        // creation and rewritten only by creating a new file and renaming it over
        // the old one, which leaves the old inode, and so this map, intact). Bytes
        // inside the map may change as the writer appends with positioned writes,
        // but only in the region past the end published to readers, which readers
        // never look at; a reader copies nothing it has not checked against a CRC.
        // (The length is given so that memmap2 does not ask the file for it
        // a second time.)
        let map = unsafe { memmap2::MmapOptions::new().len(length).map(file)? };
        Ok(Mapping { map: Some(map) })
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Asks the CPU to start loading `[offset, offset + length)` into its
    /// caches: readers that know where their next records are (stream reads
    /// follow postings scattered over a segment) overlap those memory
    /// latencies instead of paying them one after another. Out-of-range parts
    /// are ignored; on other architectures this does nothing.
    pub fn prefetch(&self, offset: usize, length: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            const CACHE_LINE: usize = 64;
            let bytes = self.as_slice();
            let end = offset.saturating_add(length).min(bytes.len());
            let mut at = offset;
            while at < end {
                // SAFETY: `at < bytes.len()`, so the pointer is inside the
                // mapped slice. A prefetch is only a hint: it never faults (a
                // page that is not resident is simply not fetched), never
                // writes, and has no effect the program can observe.
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                        bytes.as_ptr().add(at).cast::<i8>(),
                    );
                }
                at += CACHE_LINE;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (offset, length);
    }
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}
