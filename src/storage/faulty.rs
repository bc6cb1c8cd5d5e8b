//! A storage that fails on purpose, for tests of the failure paths.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Mapping, OpenMode, StdStorage, Storage, StorageFile};

/// Size of the unit a torn write keeps a prefix of.
const SECTOR_BYTES: usize = 512;

/// What to break, shared between a [`FaultyStorage`] and the test driving it.
/// Countdowns are "operations to let through before failing one"; a negative
/// value means never.
#[derive(Debug)]
pub struct FaultPlan {
    writes_before_failure: AtomicI64,
    tear_failed_write: AtomicI64,
    /// The failed write's error: EIO, or ENOSPC (a file system that
    /// allocates on write, copy-on-write ones, can run out of space inside
    /// a preallocated file).
    failed_write_no_space: AtomicBool,
    syncs_before_failure: AtomicI64,
    metadata_before_failure: AtomicI64,
    listings_before_failure: AtomicI64,
    space_left_bytes: AtomicI64,
    fail_writebacks: AtomicBool,
    writes: AtomicU64,
    syncs: AtomicU64,
    metadata_operations: AtomicU64,
    listings: AtomicU64,
    writeback_requests: Mutex<Vec<(PathBuf, u64, u64)>>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            writes_before_failure: AtomicI64::new(-1),
            tear_failed_write: AtomicI64::new(0),
            failed_write_no_space: AtomicBool::new(false),
            syncs_before_failure: AtomicI64::new(-1),
            metadata_before_failure: AtomicI64::new(-1),
            listings_before_failure: AtomicI64::new(-1),
            space_left_bytes: AtomicI64::new(-1),
            fail_writebacks: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            metadata_operations: AtomicU64::new(0),
            listings: AtomicU64::new(0),
            writeback_requests: Mutex::new(Vec::new()),
        }
    }
}

impl FaultPlan {
    /// Lets `count` writes through, then fails the next one with EIO. With
    /// `torn`, the failing write first writes its leading whole sectors, as a
    /// crash or a dying disk would.
    pub fn fail_write_after(&self, count: u64, torn: bool) {
        self.failed_write_no_space.store(false, Ordering::SeqCst);
        self.tear_failed_write.store(i64::from(torn), Ordering::SeqCst);
        self.writes_before_failure.store(count as i64, Ordering::SeqCst);
    }

    /// Lets `count` writes through, then fails the next one with ENOSPC,
    /// wherever it writes (inside a file's allocation too, as a
    /// copy-on-write file system can).
    pub fn fail_write_with_no_space_after(&self, count: u64) {
        self.failed_write_no_space.store(true, Ordering::SeqCst);
        self.tear_failed_write.store(0, Ordering::SeqCst);
        self.writes_before_failure.store(count as i64, Ordering::SeqCst);
    }

    /// Lets `count` syncs (file or directory) through, then fails the next one
    /// with EIO.
    pub fn fail_sync_after(&self, count: u64) {
        self.syncs_before_failure.store(count as i64, Ordering::SeqCst);
    }

    /// Lets `count` changes of directory entries (renames, removals,
    /// directory creations) through, then fails the next one with EIO.
    pub fn fail_metadata_after(&self, count: u64) {
        self.metadata_before_failure.store(count as i64, Ordering::SeqCst);
    }

    /// Lets `count` directory listings through, then fails the next one
    /// with EIO (as a dying disk would; EMFILE at the open-file limit is
    /// the same failure to a caller).
    pub fn fail_list_after(&self, count: u64) {
        self.listings_before_failure.store(count as i64, Ordering::SeqCst);
    }

    /// Allows `bytes` more bytes of growth (allocation or writes past a file's
    /// end) before returning ENOSPC.
    pub fn limit_space(&self, bytes: u64) {
        self.space_left_bytes.store(bytes as i64, Ordering::SeqCst);
    }

    /// Makes every [`StorageFile::start_writeback`] fail with EIO (until
    /// [`FaultPlan::heal`]): a hint's failure must change nothing.
    pub fn fail_writebacks(&self) {
        self.fail_writebacks.store(true, Ordering::SeqCst);
    }

    /// Removes every planned fault.
    pub fn heal(&self) {
        self.writes_before_failure.store(-1, Ordering::SeqCst);
        self.syncs_before_failure.store(-1, Ordering::SeqCst);
        self.metadata_before_failure.store(-1, Ordering::SeqCst);
        self.listings_before_failure.store(-1, Ordering::SeqCst);
        self.space_left_bytes.store(-1, Ordering::SeqCst);
        self.fail_writebacks.store(false, Ordering::SeqCst);
    }

    /// Writes seen so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Syncs (file and directory) seen so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Renames, removals and directory creations seen so far.
    pub fn metadata_operations(&self) -> u64 {
        self.metadata_operations.load(Ordering::SeqCst)
    }

    /// Directory listings seen so far.
    pub fn listings(&self) -> u64 {
        self.listings.load(Ordering::SeqCst)
    }

    /// Calls of [`StorageFile::start_writeback`] seen so far, failed ones
    /// included.
    pub fn writebacks(&self) -> u64 {
        self.writeback_requests.lock().len() as u64
    }

    /// Bytes those calls asked to write back, in all.
    pub fn writeback_bytes(&self) -> u64 {
        self.writeback_requests.lock().iter().map(|(_, _, length)| length).sum()
    }

    /// Each of those calls: the file, the offset and the length.
    pub fn writeback_requests(&self) -> Vec<(PathBuf, u64, u64)> {
        self.writeback_requests.lock().clone()
    }

    /// Counts down; true when this operation is the one to fail.
    fn countdown(counter: &AtomicI64) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| (left >= 0).then_some(left - 1))
            .is_ok_and(|left| left == 0)
    }

    fn check_sync(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if Self::countdown(&self.syncs_before_failure) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()));
        }
        Ok(())
    }

    fn check_metadata(&self) -> io::Result<()> {
        self.metadata_operations.fetch_add(1, Ordering::SeqCst);
        if Self::countdown(&self.metadata_before_failure) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()));
        }
        Ok(())
    }

    fn check_listing(&self) -> io::Result<()> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        if Self::countdown(&self.listings_before_failure) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()));
        }
        Ok(())
    }

    fn take_space(&self, bytes: u64) -> io::Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let taken = self.space_left_bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            if left < 0 {
                Some(left)
            } else {
                (left as u64 >= bytes).then(|| left - bytes as i64)
            }
        });
        taken.map(|_| ()).map_err(|_| io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()))
    }
}

/// A [`Storage`] that forwards to [`StdStorage`] and injects the faults of its
/// [`FaultPlan`].
#[derive(Debug, Clone, Default)]
pub struct FaultyStorage {
    plan: Arc<FaultPlan>,
}

impl FaultyStorage {
    /// A faulty storage with nothing planned yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The plan, to arm faults while the storage is in use.
    pub fn plan(&self) -> Arc<FaultPlan> {
        Arc::clone(&self.plan)
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.plan.check_metadata()?;
        StdStorage.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.plan.check_listing()?;
        StdStorage.list_dir(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let inner = StdStorage.open(path, mode)?;
        Ok(Arc::new(FaultyFile { inner, plan: Arc::clone(&self.plan) }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.plan.check_metadata()?;
        StdStorage.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plan.check_metadata()?;
        StdStorage.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.plan.check_sync()?;
        StdStorage.sync_dir(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdStorage.exists(path)
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    plan: Arc<FaultPlan>,
}

impl StorageFile for FaultyFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buffer, offset)
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.plan.writes.fetch_add(1, Ordering::SeqCst);
        if FaultPlan::countdown(&self.plan.writes_before_failure) {
            if self.plan.tear_failed_write.load(Ordering::SeqCst) != 0 {
                let kept = (bytes.len() / 2) / SECTOR_BYTES * SECTOR_BYTES;
                self.inner.write_all_at(&bytes[..kept], offset)?;
            }
            let errno = if self.plan.failed_write_no_space.load(Ordering::SeqCst) {
                rustix::io::Errno::NOSPC
            } else {
                rustix::io::Errno::IO
            };
            return Err(io::Error::from_raw_os_error(errno.raw_os_error()));
        }
        let growth = (offset + bytes.len() as u64).saturating_sub(self.inner.len()?);
        self.plan.take_space(growth)?;
        self.inner.write_all_at(bytes, offset)
    }

    fn allocate(&self, length: u64) -> io::Result<()> {
        let growth = length.saturating_sub(self.inner.len()?);
        self.plan.take_space(growth)?;
        self.inner.allocate(length)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.plan.check_sync()?;
        self.inner.sync_data()
    }

    fn start_writeback(&self, offset: u64, length: u64) -> io::Result<()> {
        self.plan.writeback_requests.lock().push((self.inner.path().to_path_buf(), offset, length));
        if self.plan.fail_writebacks.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()));
        }
        self.inner.start_writeback(offset, length)
    }

    fn map(&self) -> io::Result<Mapping> {
        self.inner.map()
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_fails_exactly_the_planned_operation() {
        let plan = FaultPlan::default();
        plan.fail_sync_after(2);
        assert!(plan.check_sync().is_ok());
        assert!(plan.check_sync().is_ok());
        assert!(plan.check_sync().is_err());
        assert!(plan.check_sync().is_ok(), "a planned fault fires once");
        assert_eq!(plan.syncs(), 4);
    }

    #[test]
    fn space_limit_gives_enospc() {
        let plan = FaultPlan::default();
        plan.limit_space(10);
        assert!(plan.take_space(6).is_ok());
        let error = plan.take_space(6).expect_err("over the limit");
        assert_eq!(error.raw_os_error(), Some(rustix::io::Errno::NOSPC.raw_os_error()));
        assert!(plan.take_space(4).is_ok());
    }
}
