//! A storage that can lose power: it remembers what has been made durable
//! (file contents by `sync_data`, directory entries by `sync_dir`, of files
//! and of the directories it created) and, on a simulated power loss, puts
//! the directories back to exactly that.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Mapping, OpenMode, StdStorage, Storage, StorageFile};

/// The durable state a power loss goes back to, and the countdown to it.
#[derive(Debug, Default)]
struct Shadow {
    /// Directory entries as of the last `sync_dir` of their directory:
    /// path -> file identity.
    durable_entries: HashMap<PathBuf, u64>,
    /// Directory entries now.
    current_entries: HashMap<PathBuf, u64>,
    /// File contents as of each file's last `sync_data`.
    durable_contents: HashMap<u64, Vec<u8>>,
    /// Directories made by `create_dir_all` (each one it had to create).
    created_directories: HashSet<PathBuf>,
    /// Of those, the ones whose entry a `sync_dir` of their parent made
    /// durable.
    durable_directories: HashSet<PathBuf>,
    next_identity: u64,
    /// Syncs (file or directory) still allowed before the power goes.
    syncs_before_loss: Option<u64>,
    /// Writes (and allocations) still allowed before the power goes.
    writes_before_loss: Option<u64>,
    /// The power is out: every change fails with EIO until `restart`.
    dead: bool,
    syncs: u64,
    writes: u64,
}

/// A [`Storage`] over real files that simulates power loss: after
/// [`PowerLossStorage::lose_power_after_syncs`] syncs (or
/// [`PowerLossStorage::lose_power_after_writes`] writes) the power goes (that
/// operation and every later change fail with EIO), and [`PowerLossStorage::restart`]
/// rewrites the directory as a disk would hold it: only files whose directory
/// entry was synced, each with the content of its last sync. Every byte not
/// yet synced, every rename or new file not yet made durable by a directory
/// sync, is gone; so is a directory it created whose entry no sync of its
/// parent made durable, with all it holds. All files must be created
/// through this storage.
#[derive(Debug, Clone, Default)]
pub struct PowerLossStorage {
    shadow: Arc<Mutex<Shadow>>,
}

impl PowerLossStorage {
    /// A storage with the power on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `count` syncs through; the next one fails and the power is out.
    pub fn lose_power_after_syncs(&self, count: u64) {
        self.shadow.lock().syncs_before_loss = Some(count);
    }

    /// Lets `count` writes (or allocations) through; the next one fails and the
    /// power is out.
    pub fn lose_power_after_writes(&self, count: u64) {
        self.shadow.lock().writes_before_loss = Some(count);
    }

    /// Writes and allocations seen so far.
    pub fn writes(&self) -> u64 {
        self.shadow.lock().writes
    }

    /// Cuts the power now.
    pub fn lose_power(&self) {
        self.shadow.lock().dead = true;
    }

    /// Syncs seen so far (file and directory).
    pub fn syncs(&self) -> u64 {
        self.shadow.lock().syncs
    }

    /// True once the power is out.
    pub fn is_dead(&self) -> bool {
        self.shadow.lock().dead
    }

    /// Puts every directory that holds a known file back to its durable state
    /// (removing the directories it created whose entries were never made
    /// durable, with what they hold) and turns the power back on. Handles opened before stay usable for
    /// nothing (their files are replaced).
    pub fn restart(&self) -> io::Result<()> {
        let mut shadow = self.shadow.lock();
        let mut directories: Vec<PathBuf> = shadow
            .current_entries
            .keys()
            .chain(shadow.durable_entries.keys())
            .map(|path| super::parent_of(path).to_path_buf())
            .collect();
        directories.sort();
        directories.dedup();
        for directory in &directories {
            for name in StdStorage.list_dir(directory)? {
                let path = directory.join(name);
                if path.is_file() {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        let durable: Vec<(PathBuf, u64)> = shadow.durable_entries.iter().map(|(p, i)| (p.clone(), *i)).collect();
        for (path, identity) in &durable {
            let contents = shadow.durable_contents.get(identity).cloned().unwrap_or_default();
            std::fs::write(path, contents)?;
        }
        // A directory whose entry never became durable is gone, with all it
        // holds, and so is every directory under it.
        let vanished: Vec<PathBuf> = shadow
            .created_directories
            .iter()
            .filter(|directory| !shadow.durable_directories.contains(*directory))
            .cloned()
            .collect();
        for directory in &vanished {
            match std::fs::remove_dir_all(directory) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        let survives = |path: &Path| !vanished.iter().any(|directory| path.starts_with(directory));
        shadow.durable_entries.retain(|path, _| survives(path));
        shadow.created_directories.retain(|path| survives(path));
        shadow.durable_directories.retain(|path| survives(path));
        shadow.current_entries = shadow.durable_entries.clone();
        shadow.dead = false;
        shadow.syncs_before_loss = None;
        shadow.writes_before_loss = None;
        Ok(())
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.shadow.lock().dead {
            return Err(power_is_out());
        }
        Ok(())
    }

    /// Counts a write; fails it (and cuts the power) when the countdown ends.
    fn write_point(&self) -> io::Result<()> {
        let mut shadow = self.shadow.lock();
        if shadow.dead {
            return Err(power_is_out());
        }
        shadow.writes += 1;
        match shadow.writes_before_loss {
            Some(0) => {
                shadow.dead = true;
                Err(power_is_out())
            }
            Some(left) => {
                shadow.writes_before_loss = Some(left - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a sync; fails it (and cuts the power) when the countdown ends.
    fn sync_point(&self) -> io::Result<()> {
        let mut shadow = self.shadow.lock();
        if shadow.dead {
            return Err(power_is_out());
        }
        shadow.syncs += 1;
        match shadow.syncs_before_loss {
            Some(0) => {
                shadow.dead = true;
                Err(power_is_out())
            }
            Some(left) => {
                shadow.syncs_before_loss = Some(left - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn power_is_out() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error())
}

impl Storage for PowerLossStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_alive()?;
        // Under the lock, so that no `sync_dir` of a parent falls between
        // the creation and its record.
        let mut shadow = self.shadow.lock();
        let mut missing = Vec::new();
        let mut next = Some(path);
        while let Some(directory) = next.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            missing.push(directory.to_path_buf());
            next = directory.parent();
        }
        StdStorage.create_dir_all(path)?;
        shadow.created_directories.extend(missing);
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdStorage.list_dir(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        if mode != OpenMode::ReadOnly {
            self.check_alive()?;
        }
        let inner = StdStorage.open(path, mode)?;
        let mut shadow = self.shadow.lock();
        let identity = match (mode, shadow.current_entries.get(path)) {
            (OpenMode::CreateNew, _) | (_, None) => {
                shadow.next_identity += 1;
                let identity = shadow.next_identity;
                shadow.current_entries.insert(path.to_path_buf(), identity);
                identity
            }
            (_, Some(&identity)) => identity,
        };
        drop(shadow);
        Ok(Arc::new(PowerLossFile { inner, identity, storage: self.clone() }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_alive()?;
        StdStorage.remove_file(path)?;
        self.shadow.lock().current_entries.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_alive()?;
        StdStorage.rename(from, to)?;
        let mut shadow = self.shadow.lock();
        if let Some(identity) = shadow.current_entries.remove(from) {
            shadow.current_entries.insert(to.to_path_buf(), identity);
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.sync_point()?;
        StdStorage.sync_dir(path)?;
        let mut shadow = self.shadow.lock();
        shadow.durable_entries.retain(|entry, _| super::parent_of(entry) != path);
        let now: Vec<(PathBuf, u64)> = shadow
            .current_entries
            .iter()
            .filter(|(entry, _)| super::parent_of(entry) == path)
            .map(|(entry, identity)| (entry.clone(), *identity))
            .collect();
        shadow.durable_entries.extend(now);
        let shadow = &mut *shadow;
        let synced = shadow.created_directories.iter().filter(|directory| super::parent_of(directory) == path);
        shadow.durable_directories.extend(synced.cloned());
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdStorage.exists(path)
    }
}

#[derive(Debug)]
struct PowerLossFile {
    inner: Arc<dyn StorageFile>,
    identity: u64,
    storage: PowerLossStorage,
}

impl StorageFile for PowerLossFile {
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
        self.storage.write_point()?;
        self.inner.write_all_at(bytes, offset)
    }

    fn allocate(&self, length: u64) -> io::Result<()> {
        self.storage.write_point()?;
        self.inner.allocate(length)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.storage.sync_point()?;
        self.inner.sync_data()?;
        let length = usize::try_from(self.inner.len()?).map_err(|_| io::Error::other("file too large"))?;
        let mut contents = vec![0u8; length];
        self.inner.read_exact_at(&mut contents, 0)?;
        self.storage.shadow.lock().durable_contents.insert(self.identity, contents);
        Ok(())
    }

    /// Makes nothing durable: what survives a power loss is still what the
    /// last sync saw.
    fn start_writeback(&self, offset: u64, length: u64) -> io::Result<()> {
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

    /// Creates `root/a/b` and in it a file `file`, durably, with `b`'s entry
    /// in `a` durable too (but not `a`'s in the root); returns `root/a/b`.
    fn nested_with_a_durable_file(storage: &PowerLossStorage, root: &Path) -> PathBuf {
        let nested = root.join("a").join("b");
        storage.create_dir_all(&nested).expect("create");
        let file = storage.open(&nested.join("file"), OpenMode::CreateNew).expect("create");
        file.write_all_at(b"kept", 0).expect("write");
        file.sync_data().expect("sync");
        storage.sync_dir(&nested).expect("sync b");
        storage.sync_dir(&root.join("a")).expect("sync a");
        nested
    }

    #[test]
    fn a_directory_whose_entry_was_never_synced_is_gone_after_a_power_loss() {
        let root = tempfile::tempdir().expect("tempdir");
        let storage = PowerLossStorage::new();
        nested_with_a_durable_file(&storage, root.path());
        storage.lose_power();
        storage.restart().expect("restart");
        assert!(!root.path().join("a").exists(), "a directory never synced into its parent survived");
    }

    #[test]
    fn a_directory_synced_into_its_parent_survives_with_its_durable_files() {
        let root = tempfile::tempdir().expect("tempdir");
        let storage = PowerLossStorage::new();
        let nested = nested_with_a_durable_file(&storage, root.path());
        storage.sync_dir(root.path()).expect("sync root");
        // Made after the syncs: gone, while the directories stay.
        storage.create_dir_all(&nested.join("c")).expect("create c");
        storage.lose_power();
        storage.restart().expect("restart");
        assert_eq!(std::fs::read(nested.join("file")).expect("the durable file"), b"kept");
        assert!(!nested.join("c").exists(), "a directory made after the last sync survived");
    }
}
