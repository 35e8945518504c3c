//! The virtual filesystem: the sandbox's one mount tree, made of dentries (names) over inodes
//! (files of some filesystem), and path resolution over it.
//!
//! Filesystems implement [`Inode`]; the VFS owns names, mounts, `..`, symlink following and
//! permission checks, so a filesystem never sees a path, only single names in one directory.
//! (The gofer protocol has the same shape, which is what makes it safe against symlink races.)

pub mod lookup;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use moat_abi::{Errno, Stat};

use crate::fs::FileOps;
use crate::Credentials;

pub use lookup::{FsContext, Resolve};

/// What kind of file an inode is (the `S_IFMT` bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    pub fn from_mode(mode: u32) -> FileKind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            _ => FileKind::Regular,
        }
    }

    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Regular => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }

    /// The `d_type` of a directory entry.
    pub fn dirent_type(self) -> u8 {
        match self {
            FileKind::Regular => libc::DT_REG,
            FileKind::Directory => libc::DT_DIR,
            FileKind::Symlink => libc::DT_LNK,
            FileKind::CharDevice => libc::DT_CHR,
            FileKind::BlockDevice => libc::DT_BLK,
            FileKind::Fifo => libc::DT_FIFO,
            FileKind::Socket => libc::DT_SOCK,
        }
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileKind,
    pub name: Vec<u8>,
}

/// What to create in a directory.
#[derive(Clone, Debug)]
pub enum NewNode {
    File {
        mode: u32,
    },
    Directory {
        mode: u32,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// A FIFO, socket or device node (`mknod`).
    Special {
        mode: u32,
        rdev: u64,
    },
}

/// Attribute changes (`chmod`, `chown`, `truncate`, `utimensat`).
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    /// `(seconds, nanoseconds)`.
    pub atime: Option<(i64, i64)>,
    pub mtime: Option<(i64, i64)>,
}

/// Flags for [`Inode::rename`].
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;

/// A file of some filesystem. Directory operations take one name, never a path.
pub trait Inode: Send + Sync {
    fn stat(&self) -> Result<Stat, Errno>;

    fn kind(&self) -> FileKind {
        self.stat()
            .map_or(FileKind::Regular, |s| FileKind::from_mode(s.st_mode))
    }

    /// Look up `name` in this directory.
    fn lookup(&self, _name: &[u8]) -> Result<InodeRef, Errno> {
        Err(Errno::ENOTDIR)
    }

    /// Create `name` in this directory, owned by `uid`/`gid`.
    fn create(
        &self,
        _name: &[u8],
        _node: &NewNode,
        _uid: u32,
        _gid: u32,
    ) -> Result<InodeRef, Errno> {
        Err(Errno::ENOTDIR)
    }

    /// Add a hard link `name` to `target` in this directory.
    fn link(&self, _name: &[u8], _target: &InodeRef) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }

    /// Remove `name` from this directory (`rmdir` if `dir`).
    fn unlink(&self, _name: &[u8], _dir: bool) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }

    /// Move `name` from this directory to `new_dir`/`new_name` (same filesystem).
    fn rename(
        &self,
        _name: &[u8],
        _new_dir: &InodeRef,
        _new_name: &[u8],
        _flags: u32,
    ) -> Result<(), Errno> {
        Err(Errno::ENOTDIR)
    }

    /// All entries of this directory except `.` and `..`.
    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        Err(Errno::ENOTDIR)
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        Err(Errno::EINVAL)
    }

    /// Open for I/O with these `O_*` flags.
    fn open(&self, flags: u32) -> Result<Box<dyn FileOps>, Errno>;

    fn setattr(&self, _attr: &SetAttr) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// The extended attribute `name` (full name, `user.x`). A filesystem without extended
    /// attributes says `EOPNOTSUPP`, as Linux's do.
    fn get_xattr(&self, _name: &[u8]) -> Result<Vec<u8>, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Set `name` (`XATTR_CREATE`/`XATTR_REPLACE` in `flags`).
    fn set_xattr(&self, _name: &[u8], _value: &[u8], _flags: u32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn remove_xattr(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// The names of the extended attributes (none where there are none).
    fn list_xattr(&self) -> Result<Vec<Vec<u8>>, Errno> {
        Ok(Vec::new())
    }

    /// A filesystem-unique identity, to tell whether two inodes are the same file.
    fn id(&self) -> (u64, u64) {
        self.stat().map_or((0, 0), |s| (s.st_dev, s.st_ino))
    }

    /// Downcast support for filesystems that need their own inode type back (rename, link).
    fn as_any(&self) -> &dyn std::any::Any;

    /// The tmpfs file holding this file's data, if its pages live in the memory file (a
    /// tmpfs file, or an overlay file copied up into the memory upper): what `MAP_SHARED`
    /// maps.
    fn memory_backed(&self) -> Option<Arc<crate::fs::tmpfs::TmpfsInode>> {
        None
    }

    /// Where a private mapping of this regular file (and the loader, for a program's
    /// segments) takes its pages: the file's own memory-file pages or its page cache.
    /// `None`: the mapping is a copy of the file's bytes made at mmap time.
    fn page_source(&self) -> Option<Arc<dyn crate::mm::PageSource>> {
        self.memory_backed()
            .map(|t| t as Arc<dyn crate::mm::PageSource>)
    }

    /// Owned downcast support (a hard link stores the inode itself).
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

pub type InodeRef = Arc<dyn Inode>;

/// Dentries held in parents' caches, across the sandbox.
static CACHED_DENTRIES: AtomicUsize = AtomicUsize::new(0);
/// Past this many cached dentries, a lookup prunes the unused ones. Each cached gofer dentry
/// holds an fd in the gofer, so this bounds the gofer's fds (whose limit `moat gofer` raises).
const DENTRY_CACHE_HIGH_WATER: usize = 4096;

/// A name in the tree: an inode, its name in its parent, and the children looked up so far.
pub struct Dentry {
    inode: Mutex<InodeRef>,
    name: Mutex<Vec<u8>>,
    parent: Mutex<Option<Arc<Dentry>>>,
    children: Mutex<HashMap<Vec<u8>, Arc<Dentry>>>,
    /// A filesystem mounted on this dentry (one mount namespace per sandbox).
    mounted: Mutex<Option<Arc<Mount>>>,
    deleted: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Dentry {
    /// The root dentry of a filesystem.
    pub fn root(inode: InodeRef) -> Arc<Dentry> {
        Arc::new(Dentry {
            inode: Mutex::new(inode),
            name: Mutex::new(b"/".to_vec()),
            parent: Mutex::new(None),
            children: Mutex::new(HashMap::new()),
            mounted: Mutex::new(None),
            deleted: AtomicBool::new(false),
        })
    }

    pub fn inode(&self) -> InodeRef {
        lock(&self.inode).clone()
    }

    /// Replace the inode (the overlay's copy-up swaps a lower inode for an upper one).
    pub fn set_inode(&self, inode: InodeRef) {
        *lock(&self.inode) = inode;
    }

    pub fn name(&self) -> Vec<u8> {
        lock(&self.name).clone()
    }

    pub fn parent(&self) -> Option<Arc<Dentry>> {
        lock(&self.parent).clone()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Relaxed)
    }

    pub fn mounted(&self) -> Option<Arc<Mount>> {
        lock(&self.mounted).clone()
    }

    /// The child `name`, from the cache or the filesystem.
    pub fn child(self: &Arc<Self>, name: &[u8]) -> Result<Arc<Dentry>, Errno> {
        if let Some(d) = lock(&self.children).get(name) {
            return Ok(d.clone());
        }
        let inode = self.inode().lookup(name)?;
        let child = self.add_child(name, inode);
        if CACHED_DENTRIES.load(Ordering::Relaxed) > DENTRY_CACHE_HIGH_WATER {
            let mut root = self.clone();
            while let Some(p) = root.parent() {
                root = p;
            }
            root.prune();
        }
        Ok(child)
    }

    /// Drop every cached dentry below this one that nothing uses: no path, open file or
    /// working directory holds it, it has no cached children and nothing is mounted on it.
    /// Its filesystem keeps the file itself (tmpfs, the overlay's layers) or can find it
    /// again (the gofer), so this only forgets; it is what bounds the gofer's open fds.
    fn prune(self: &Arc<Self>) {
        let children: Vec<(Vec<u8>, Arc<Dentry>)> = lock(&self.children)
            .iter()
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect();
        for (name, child) in children {
            child.prune();
            // Two references: the map's and `child` here.
            let unused = |d: &Arc<Dentry>| {
                Arc::strong_count(d) == 2 && d.mounted().is_none() && lock(&d.children).is_empty()
            };
            if unused(&child) {
                let mut map = lock(&self.children);
                if map.get(&name).is_some_and(|d| Arc::ptr_eq(d, &child)) && unused(&child) {
                    map.remove(&name);
                    CACHED_DENTRIES.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Record a child the filesystem just created or found.
    pub fn add_child(self: &Arc<Self>, name: &[u8], inode: InodeRef) -> Arc<Dentry> {
        let d = Arc::new(Dentry {
            inode: Mutex::new(inode),
            name: Mutex::new(name.to_vec()),
            parent: Mutex::new(Some(self.clone())),
            children: Mutex::new(HashMap::new()),
            mounted: Mutex::new(None),
            deleted: AtomicBool::new(false),
        });
        if lock(&self.children)
            .insert(name.to_vec(), d.clone())
            .is_none()
        {
            CACHED_DENTRIES.fetch_add(1, Ordering::Relaxed);
        }
        d
    }

    /// Forget a child that was removed.
    pub fn remove_child(&self, name: &[u8]) {
        if let Some(d) = lock(&self.children).remove(name) {
            CACHED_DENTRIES.fetch_sub(1, Ordering::Relaxed);
            d.deleted.store(true, Ordering::Relaxed);
        }
    }

    /// Move the cached child `name` to `new_parent`/`new_name` after a rename.
    pub fn move_child(self: &Arc<Self>, name: &[u8], new_parent: &Arc<Dentry>, new_name: &[u8]) {
        new_parent.remove_child(new_name);
        let moved = lock(&self.children).remove(name);
        if let Some(d) = moved {
            *lock(&d.name) = new_name.to_vec();
            *lock(&d.parent) = Some(new_parent.clone());
            lock(&new_parent.children).insert(new_name.to_vec(), d);
        }
    }

    /// Swap two cached children after `RENAME_EXCHANGE`.
    pub fn exchange_child(
        self: &Arc<Self>,
        name: &[u8],
        other_parent: &Arc<Dentry>,
        other_name: &[u8],
    ) {
        let a = lock(&self.children).remove(name);
        let b = lock(&other_parent.children).remove(other_name);
        if let Some(a) = a {
            *lock(&a.name) = other_name.to_vec();
            *lock(&a.parent) = Some(other_parent.clone());
            lock(&other_parent.children).insert(other_name.to_vec(), a);
        }
        if let Some(b) = b {
            *lock(&b.name) = name.to_vec();
            *lock(&b.parent) = Some(self.clone());
            lock(&self.children).insert(name.to_vec(), b);
        }
    }
}

static NEXT_MOUNT_ID: AtomicU64 = AtomicU64::new(1);

/// A mounted filesystem: its root dentry and where it is mounted.
pub struct Mount {
    pub id: u64,
    pub root: Arc<Dentry>,
    /// The mount and dentry this one covers; `None` for the root mount.
    pub mountpoint: Option<(Arc<Mount>, Arc<Dentry>)>,
    pub read_only: bool,
    /// Filesystem type name for /proc/mounts (`tmpfs`, `overlay`...).
    pub fs_type: &'static str,
}

impl Mount {
    /// The root mount of a sandbox.
    pub fn new_root(root: InodeRef, fs_type: &'static str, read_only: bool) -> Arc<Mount> {
        Arc::new(Mount {
            id: NEXT_MOUNT_ID.fetch_add(1, Ordering::Relaxed),
            root: Dentry::root(root),
            mountpoint: None,
            read_only,
            fs_type,
        })
    }

    /// Mount `root` on `at` (which must be a directory).
    pub fn new_at(
        at: &VfsPath,
        root: InodeRef,
        fs_type: &'static str,
        read_only: bool,
    ) -> Result<Arc<Mount>, Errno> {
        if at.dentry.inode().kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let m = Arc::new(Mount {
            id: NEXT_MOUNT_ID.fetch_add(1, Ordering::Relaxed),
            root: Dentry::root(root),
            mountpoint: Some((at.mount.clone(), at.dentry.clone())),
            read_only,
            fs_type,
        });
        *lock(&at.dentry.mounted) = Some(m.clone());
        Ok(m)
    }
}

/// A place in the tree: a dentry within a mount.
#[derive(Clone)]
pub struct VfsPath {
    pub mount: Arc<Mount>,
    pub dentry: Arc<Dentry>,
}

impl VfsPath {
    pub fn root_of(mount: &Arc<Mount>) -> VfsPath {
        VfsPath {
            mount: mount.clone(),
            dentry: mount.root.clone(),
        }
    }

    pub fn inode(&self) -> InodeRef {
        self.dentry.inode()
    }

    pub fn same(&self, other: &VfsPath) -> bool {
        Arc::ptr_eq(&self.mount, &other.mount) && Arc::ptr_eq(&self.dentry, &other.dentry)
    }

    /// The absolute path of this place as seen from `root`, like `getcwd` and
    /// `/proc/PID/fd` show it.
    pub fn absolute(&self, root: &VfsPath) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut cur = self.clone();
        loop {
            if cur.same(root) {
                break;
            }
            if Arc::ptr_eq(&cur.dentry, &cur.mount.root) {
                match &cur.mount.mountpoint {
                    Some((m, d)) => {
                        cur = VfsPath {
                            mount: m.clone(),
                            dentry: d.clone(),
                        };
                        continue;
                    }
                    None => break,
                }
            }
            parts.push(cur.dentry.name());
            match cur.dentry.parent() {
                Some(p) => cur.dentry = p,
                None => break,
            }
        }
        let mut out = Vec::new();
        for p in parts.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(p);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        out
    }
}

/// Permission bits a caller asks for.
pub const MAY_READ: u32 = 4;
pub const MAY_WRITE: u32 = 2;
pub const MAY_EXEC: u32 = 1;

/// Unix permission check of `mask` against a file's mode and owner, as Linux's
/// `generic_permission` does it: the owner, group or other bits by the filesystem IDs, then
/// the capabilities that override them. `CAP_DAC_READ_SEARCH` reads any file and reads or
/// searches any directory; `CAP_DAC_OVERRIDE` does anything to a directory, and reads and
/// writes any file and executes one that has an execute bit.
pub fn permitted(st: &Stat, creds: &Credentials, mask: u32) -> bool {
    use crate::capability::Cap;
    let bits = if creds.fsuid == st.st_uid {
        (st.st_mode >> 6) & 7
    } else if creds.fsgid == st.st_gid || creds.groups.contains(&st.st_gid) {
        (st.st_mode >> 3) & 7
    } else {
        st.st_mode & 7
    };
    if bits & mask == mask {
        return true;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return (mask & MAY_WRITE == 0 && creds.has(Cap::DacReadSearch))
            || creds.has(Cap::DacOverride);
    }
    if mask == MAY_READ && creds.has(Cap::DacReadSearch) {
        return true;
    }
    (mask & MAY_EXEC == 0 || st.st_mode & 0o111 != 0) && creds.has(Cap::DacOverride)
}
