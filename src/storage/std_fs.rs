//! The real file system.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Mapping, OpenMode, Storage, StorageFile};

/// Files on the local file system, through `std::fs`, `rustix` (fallocate,
/// fdatasync) and `memmap2`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdStorage;

impl Storage for StdStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            // Names that are not UTF-8 cannot be ours; skip them.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::ReadOnly => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        let file = options.open(path)?;
        Ok(Arc::new(StdFile { path: path.to_path_buf(), file }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

/// An open file of [`StdStorage`].
#[derive(Debug)]
pub struct StdFile {
    path: PathBuf,
    file: File,
}

impl StorageFile for StdFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buffer, offset)
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    fn allocate(&self, length: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, length) {
            Ok(()) => Ok(()),
            // Some file systems (tmpfs before 3.5, some FUSE) cannot fallocate:
            // reserve the space by writing zeros instead, which is what fallocate
            // promises (blocks exist before anyone writes into a mapping).
            Err(rustix::io::Errno::OPNOTSUPP) => self.write_zeros_to(length),
            Err(errno) => Err(errno.into()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        rustix::fs::fdatasync(&self.file).map_err(io::Error::from)
    }

    /// `posix_fadvise(POSIX_FADV_DONTNEED)`, which on Linux starts the
    /// writeback of the range's dirty pages without waiting (as
    /// `sync_file_range(SYNC_FILE_RANGE_WRITE)` does, which has no safe
    /// wrapper in rustix), then drops the range's clean pages that are not
    /// mapped. A write error of those pages is not lost: the kernel keeps it
    /// for the next fdatasync. Its costs beside the writeback: pages just
    /// queued cannot be dropped, which makes the kernel drain its per-CPU
    /// page lists once per call, and the range's pages are aged in the page
    /// cache, so readers of the range a while later are more likely to read
    /// them from disk.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn start_writeback(&self, offset: u64, length: u64) -> io::Result<()> {
        // A length of 0 would mean "to the end of the file" to fadvise.
        let Some(length) = std::num::NonZeroU64::new(length) else { return Ok(()) };
        rustix::fs::fadvise(&self.file, offset, Some(length), rustix::fs::Advice::DontNeed).map_err(io::Error::from)
    }

    fn map(&self) -> io::Result<Mapping> {
        Mapping::of_file(&self.file)
    }

    fn try_lock(&self) -> io::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(fs::TryLockError::WouldBlock) => Ok(false),
            Err(fs::TryLockError::Error(error)) => Err(error),
        }
    }
}

impl StdFile {
    fn write_zeros_to(&self, length: u64) -> io::Result<()> {
        const CHUNK_BYTES: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK_BYTES as usize];
        let mut offset = self.len()?;
        while offset < length {
            let chunk = (length - offset).min(CHUNK_BYTES) as usize;
            self.file.write_all_at(&zeros[..chunk], offset)?;
            offset += chunk as u64;
        }
        Ok(())
    }
}
