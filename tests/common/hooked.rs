//! A storage that delegates to another (the real file system unless told
//! otherwise), with hooks on the calls a test needs to watch or hold up (a
//! race made to happen on cue).

use std::path::Path;
use std::sync::Arc;

use chronolog::storage::{Mapping, OpenMode, StdStorage, Storage, StorageFile};

type ListHook = Box<dyn Fn(&Path, &mut Vec<String>) + Send + Sync>;
type OpenHook = Box<dyn Fn(&Path, OpenMode) + Send + Sync>;
type RenameHook = Box<dyn Fn(&Path, &Path) + Send + Sync>;
type SyncHook = Box<dyn Fn(&Path) + Send + Sync>;
type FileSyncHook = Arc<dyn Fn(&Path) + Send + Sync>;

/// `inner` (the real file system by default); each hook, when set, runs
/// before (`open`, `rename`, `sync_dir`, a file's `sync_data`) or after
/// (`list_dir`, which may change the listing) the call.
pub struct HookedStorage {
    pub inner: Arc<dyn Storage>,
    pub list_dir: Option<ListHook>,
    pub open: Option<OpenHook>,
    pub rename: Option<RenameHook>,
    pub sync_dir: Option<SyncHook>,
    /// Runs with the file's path before each `sync_data` of a file opened
    /// through this storage.
    pub sync_data: Option<FileSyncHook>,
}

impl Default for HookedStorage {
    fn default() -> Self {
        HookedStorage {
            inner: Arc::new(StdStorage),
            list_dir: None,
            open: None,
            rename: None,
            sync_dir: None,
            sync_data: None,
        }
    }
}

impl std::fmt::Debug for HookedStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookedStorage")
    }
}

impl Storage for HookedStorage {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        let mut names = self.inner.list_dir(path)?;
        if let Some(hook) = &self.list_dir {
            hook(path, &mut names);
        }
        Ok(names)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Arc<dyn StorageFile>> {
        if let Some(hook) = &self.open {
            hook(path, mode);
        }
        let file = self.inner.open(path, mode)?;
        Ok(match &self.sync_data {
            Some(hook) => Arc::new(HookedFile { inner: file, sync_data: Arc::clone(hook) }),
            None => file,
        })
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        if let Some(hook) = &self.rename {
            hook(from, to);
        }
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        if let Some(hook) = &self.sync_dir {
            hook(path);
        }
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.inner.exists(path)
    }
}

/// A file of a [`HookedStorage`] with a `sync_data` hook.
struct HookedFile {
    inner: Arc<dyn StorageFile>,
    sync_data: FileSyncHook,
}

impl std::fmt::Debug for HookedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookedFile").field("inner", &self.inner).finish()
    }
}

impl StorageFile for HookedFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buffer, offset)
    }
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_all_at(bytes, offset)
    }
    fn allocate(&self, length: u64) -> std::io::Result<()> {
        self.inner.allocate(length)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        (self.sync_data)(self.inner.path());
        self.inner.sync_data()
    }
    fn start_writeback(&self, offset: u64, length: u64) -> std::io::Result<()> {
        self.inner.start_writeback(offset, length)
    }
    fn map(&self) -> std::io::Result<Mapping> {
        self.inner.map()
    }
    fn try_lock(&self) -> std::io::Result<bool> {
        self.inner.try_lock()
    }
}

/// The storage calls a [`recording`] storage saw, in order: `("open", path)`,
/// `("rename", target)` and `("sync", directory)`.
pub type Calls = Arc<std::sync::Mutex<Vec<(&'static str, std::path::PathBuf)>>>;

/// A [`HookedStorage`] that records its opens, renames and directory syncs.
pub fn recording() -> (HookedStorage, Calls) {
    let calls = Calls::default();
    let (on_open, on_rename, on_sync) = (Arc::clone(&calls), Arc::clone(&calls), Arc::clone(&calls));
    let storage = HookedStorage {
        open: Some(Box::new(move |path, _| on_open.lock().unwrap().push(("open", path.to_path_buf())))),
        rename: Some(Box::new(move |_, to| on_rename.lock().unwrap().push(("rename", to.to_path_buf())))),
        sync_dir: Some(Box::new(move |path| on_sync.lock().unwrap().push(("sync", path.to_path_buf())))),
        ..Default::default()
    };
    (storage, calls)
}
