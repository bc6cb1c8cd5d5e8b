//! The one door to the disk.
//!
//! Every byte the engine writes, every sync, every rename and every memory map
//! goes through [`Storage`] and [`StorageFile`]. The real implementation is
//! [`StdStorage`]; [`FaultyStorage`] wraps it to inject the failures a storage
//! engine must survive (EIO on the Nth write or sync, a torn write, a full
//! disk), and [`PowerLossStorage`] to lose power at a chosen sync and keep
//! only what was made durable, so the same tests run against all three.

mod faulty;
mod mapping;
mod power_loss;
mod std_fs;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use faulty::{FaultPlan, FaultyStorage};
pub use mapping::Mapping;
pub use power_loss::PowerLossStorage;
pub use std_fs::StdStorage;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, reads and maps only.
    ReadOnly,
    /// Existing file, reads and writes.
    ReadWrite,
    /// New file (an existing one is an error), reads and writes.
    CreateNew,
}

/// A directory tree of files: the operations the engine needs and no more.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (not sorted).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing the target atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// True when the path exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// An open file.
#[expect(clippy::len_without_is_empty, reason = "a file's length is a size, not a collection's")]
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// The file's path.
    fn path(&self) -> &Path;
    /// Current size in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buffer` from `offset`; a short file is an `UnexpectedEof` error.
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `bytes` at `offset`.
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Reserves real disk blocks for `[0, length)` and extends the file to
    /// `length` (never a sparse `set_len`: writing into a mapped hole could then
    /// fail with SIGBUS on a full disk).
    fn allocate(&self, length: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Asks the OS to start writing the dirty pages of `[offset, offset +
    /// length)` to disk, without waiting for them and without making anything
    /// durable: a later [`StorageFile::sync_data`] then has less left to
    /// write. A hint that may do nothing (the default does nothing; a length
    /// of 0 asks for nothing). It may also drop clean cached pages of the
    /// range that no process maps (they are read from disk again if needed).
    fn start_writeback(&self, offset: u64, length: u64) -> io::Result<()> {
        let _ = (offset, length);
        Ok(())
    }
    /// Maps the whole file read-only.
    fn map(&self) -> io::Result<Mapping>;
    /// Takes an exclusive advisory lock without waiting; `Ok(false)` when
    /// another handle holds it. Released when the file is closed.
    fn try_lock(&self) -> io::Result<bool>;
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of
/// the directory. After a crash the file holds either the old or the new bytes.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    if storage.exists(&temporary)? {
        storage.remove_file(&temporary)?;
    }
    let file = storage.open(&temporary, OpenMode::CreateNew)?;
    let written = file.write_all_at(bytes, 0).and_then(|()| file.sync_data());
    drop(file);
    if let Err(error) = written.and_then(|()| storage.rename(&temporary, path)) {
        // No temporary is left behind by a failure the caller survives (a
        // full disk): a log closed cleanly since holds none (see
        // `log::open::listed_by_clean_close`). The error that matters is the
        // first one.
        let _ = storage.remove_file(&temporary);
        return Err(error);
    }
    storage.sync_dir(parent_of(path))
}

/// The bytes of a whole file: read into memory, or mapped (no copy).
#[derive(Debug)]
pub enum FileBytes {
    /// Bytes in memory.
    Owned(Vec<u8>),
    /// A read-only map of the file.
    Mapped(Mapping),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Owned(bytes) => bytes,
            FileBytes::Mapped(map) => map,
        }
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(bytes: Vec<u8>) -> Self {
        FileBytes::Owned(bytes)
    }
}

/// Maps a whole file read-only (for index files: written once, replaced only
/// by rename, never changed in place, so the map stays valid).
pub fn map_all(storage: &dyn Storage, path: &Path) -> io::Result<FileBytes> {
    let file = storage.open(path, OpenMode::ReadOnly)?;
    Ok(FileBytes::Mapped(file.map()?))
}

/// Reads a whole (small) file.
pub fn read_all(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, OpenMode::ReadOnly)?;
    let length =
        usize::try_from(file.len()?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// The name a file is written under before it is renamed into place.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
