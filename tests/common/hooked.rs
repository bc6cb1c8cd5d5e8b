//! A storage that delegates to the real file system, with hooks on the
//! calls a test needs to watch or hold up (a race made to happen on cue).

use std::path::Path;
use std::sync::Arc;

use chronolog::storage::{OpenMode, StdStorage, Storage, StorageFile};

type ListHook = Box<dyn Fn(&Path, &mut Vec<String>) + Send + Sync>;
type OpenHook = Box<dyn Fn(&Path, OpenMode) + Send + Sync>;
type RenameHook = Box<dyn Fn(&Path, &Path) + Send + Sync>;
type SyncHook = Box<dyn Fn(&Path) + Send + Sync>;

/// The real file system; each hook, when set, runs before (`open`, `rename`,
/// `sync_dir`) or after (`list_dir`, which may change the listing) the call.
#[derive(Default)]
pub struct HookedStorage {
    pub list_dir: Option<ListHook>,
    pub open: Option<OpenHook>,
    pub rename: Option<RenameHook>,
    pub sync_dir: Option<SyncHook>,
}

impl std::fmt::Debug for HookedStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookedStorage")
    }
}

impl Storage for HookedStorage {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        StdStorage.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        let mut names = StdStorage.list_dir(path)?;
        if let Some(hook) = &self.list_dir {
            hook(path, &mut names);
        }
        Ok(names)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Arc<dyn StorageFile>> {
        if let Some(hook) = &self.open {
            hook(path, mode);
        }
        StdStorage.open(path, mode)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        StdStorage.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        if let Some(hook) = &self.rename {
            hook(from, to);
        }
        StdStorage.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        if let Some(hook) = &self.sync_dir {
            hook(path);
        }
        StdStorage.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        StdStorage.exists(path)
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
