//! The overlay: a read-only lower tree (the host's root, served by the gofer) under a
//! writable upper tree (a tmpfs in the sandbox's memory). The application sees one tree; its
//! writes land in the upper layer and the host's files are never modified (DESIGN.md §2.5).
//!
//! As Linux's overlayfs: a file is *copied up* to the upper layer before it is changed;
//! removing a lower name leaves a *whiteout* in the upper layer (a 0/0 character device); a
//! directory created over a whiteout is *opaque* (the lower directory's entries stay hidden).
//! Renaming a directory that exists in the lower layer fails with `EXDEV`, as overlayfs does
//! without `redirect_dir`, so `mv` falls back to copying.

use std::any::Any;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use moat_abi::{Errno, Stat};

use super::FileOps;
use crate::vfs::{DirEntry, FileKind, Inode, InodeRef, NewNode, SetAttr, RENAME_EXCHANGE};

static NEXT_DEV: AtomicU64 = AtomicU64::new(0x200);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One overlay instance.
pub struct OverlayFs {
    dev: u64,
    /// Upper directories that hide the lower directory of the same name, by upper (dev, ino).
    opaque: Mutex<HashSet<(u64, u64)>>,
    /// Serialises copy-ups and renames.
    big_lock: Mutex<()>,
}

impl OverlayFs {
    /// The root of an overlay of `upper` (a writable directory) over `lower`.
    pub fn new_root(lower: InodeRef, upper: InodeRef) -> Arc<OverlayInode> {
        let fs = Arc::new(OverlayFs {
            dev: NEXT_DEV.fetch_add(1, Ordering::Relaxed),
            opaque: Mutex::new(HashSet::new()),
            big_lock: Mutex::new(()),
        });
        OverlayInode::new(&fs, None, Vec::new(), Some(upper), Some(lower))
    }
}

struct Layers {
    upper: Option<InodeRef>,
    lower: Option<InodeRef>,
}

/// A file of the overlay: its upper and/or lower inode.
pub struct OverlayInode {
    fs: Arc<OverlayFs>,
    /// The parent directory and this file's name in it (for copy-up); `None` at the root.
    parent: Option<Arc<OverlayInode>>,
    name: Vec<u8>,
    layers: Mutex<Layers>,
    this: Weak<OverlayInode>,
}

fn is_whiteout(inode: &InodeRef) -> bool {
    inode
        .stat()
        .is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFCHR && s.st_rdev == 0)
}

fn whiteout() -> NewNode {
    NewNode::Special {
        mode: libc::S_IFCHR,
        rdev: 0,
    }
}

impl OverlayInode {
    fn new(
        fs: &Arc<OverlayFs>,
        parent: Option<Arc<OverlayInode>>,
        name: Vec<u8>,
        upper: Option<InodeRef>,
        lower: Option<InodeRef>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| OverlayInode {
            fs: fs.clone(),
            parent,
            name,
            layers: Mutex::new(Layers { upper, lower }),
            this: this.clone(),
        })
    }

    fn arc(&self) -> Arc<OverlayInode> {
        self.this.upgrade().expect("a live inode has a live Arc")
    }

    fn upper(&self) -> Option<InodeRef> {
        lock(&self.layers).upper.clone()
    }

    fn lower(&self) -> Option<InodeRef> {
        lock(&self.layers).lower.clone()
    }

    /// The layer whose attributes and contents the file shows.
    fn top(&self) -> InodeRef {
        let l = lock(&self.layers);
        l.upper
            .clone()
            .or_else(|| l.lower.clone())
            .expect("an overlay inode has a layer")
    }

    fn is_opaque(&self, upper: &InodeRef) -> bool {
        lock(&self.fs.opaque).contains(&upper.id())
    }

    /// Whether the lower directory's entries show through this directory.
    fn lower_visible(&self) -> Option<InodeRef> {
        let l = lock(&self.layers);
        match (&l.upper, &l.lower) {
            (Some(u), Some(lo)) if !self.is_opaque(u) && lo.kind() == FileKind::Directory => {
                Some(lo.clone())
            }
            (None, Some(lo)) => Some(lo.clone()),
            _ => None,
        }
    }

    /// Make sure this file exists in the upper layer (copying it, and its parents, up).
    fn copy_up(&self) -> Result<InodeRef, Errno> {
        if let Some(u) = self.upper() {
            return Ok(u);
        }
        let parent = self.parent.as_ref().ok_or(Errno::EROFS)?;
        let parent_upper = parent.copy_up()?;
        let _guard = lock(&self.fs.big_lock);
        if let Some(u) = self.upper() {
            return Ok(u);
        }
        let lower = self.lower().ok_or(Errno::ENOENT)?;
        let st = lower.stat()?;
        let node = match FileKind::from_mode(st.st_mode) {
            FileKind::Directory => NewNode::Directory {
                mode: st.st_mode & 0o7777,
            },
            FileKind::Regular => NewNode::File {
                mode: st.st_mode & 0o7777,
            },
            FileKind::Symlink => NewNode::Symlink {
                target: lower.readlink()?,
            },
            _ => NewNode::Special {
                mode: st.st_mode,
                rdev: st.st_rdev,
            },
        };
        // A whiteout cannot be in the way: this name resolved to the lower file.
        let upper = parent_upper.create(&self.name, &node, st.st_uid, st.st_gid)?;
        if FileKind::from_mode(st.st_mode) == FileKind::Regular {
            copy_contents(&lower, &upper, st.st_size as u64)?;
        }
        let times = SetAttr {
            mode: Some(st.st_mode & 0o7777),
            atime: Some((st.st_atime, st.st_atime_nsec)),
            mtime: Some((st.st_mtime, st.st_mtime_nsec)),
            ..SetAttr::default()
        };
        let _ = upper.setattr(&times);
        lock(&self.layers).upper = Some(upper.clone());
        Ok(upper)
    }

    fn child(&self, name: &[u8], upper: Option<InodeRef>, lower: Option<InodeRef>) -> InodeRef {
        OverlayInode::new(&self.fs, Some(self.arc()), name.to_vec(), upper, lower)
    }
}

/// Copy a regular file's bytes from one layer to another.
fn copy_contents(from: &InodeRef, to: &InodeRef, size: u64) -> Result<(), Errno> {
    let src = from.open(libc::O_RDONLY as u32)?;
    let dst = to.open(libc::O_WRONLY as u32)?;
    let reader = super::OpenFile::new(src, libc::O_RDONLY as u32);
    let writer = super::OpenFile::new(dst, libc::O_WRONLY as u32);
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let n = reader.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        writer.write_at(&buf[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

impl Inode for OverlayInode {
    fn memory_backed(&self) -> Option<Arc<crate::fs::tmpfs::TmpfsInode>> {
        self.upper()?.memory_backed()
    }

    /// The upper file's pages once copied up, else the lower file's (a mapping made before a
    /// copy-up keeps the lower pages, as on Linux's overlayfs).
    fn page_source(&self) -> Option<Arc<dyn crate::mm::PageSource>> {
        match self.upper() {
            Some(upper) => upper.page_source(),
            None => self.lower()?.page_source(),
        }
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let mut st = self.top().stat()?;
        st.st_dev = self.fs.dev;
        if let (Some(lower), Some(_)) = (self.lower(), self.upper()) {
            // Keep the inode number stable across copy-up, as overlayfs does.
            if FileKind::from_mode(st.st_mode) != FileKind::Directory {
                st.st_ino = lower.stat()?.st_ino;
            }
        }
        Ok(st)
    }

    fn kind(&self) -> FileKind {
        self.top().kind()
    }

    fn lookup(&self, name: &[u8]) -> Result<InodeRef, Errno> {
        let upper = match self.upper() {
            Some(u) => match u.lookup(name) {
                Ok(i) if is_whiteout(&i) => return Err(Errno::ENOENT),
                Ok(i) => Some(i),
                Err(Errno::ENOENT) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let lower = match self.lower_visible() {
            Some(l) => match l.lookup(name) {
                Ok(i) => Some(i),
                Err(Errno::ENOENT | Errno::ENOTDIR) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        // A lower entry only merges under an upper directory; an upper file hides it.
        let lower = match (&upper, lower) {
            (Some(u), Some(l))
                if u.kind() == FileKind::Directory && l.kind() == FileKind::Directory =>
            {
                Some(l)
            }
            (Some(_), _) => None,
            (None, l) => l,
        };
        if upper.is_none() && lower.is_none() {
            return Err(Errno::ENOENT);
        }
        Ok(self.child(name, upper, lower))
    }

    fn create(&self, name: &[u8], node: &NewNode, uid: u32, gid: u32) -> Result<InodeRef, Errno> {
        let upper = self.copy_up()?;
        let mut had_whiteout = false;
        if let Ok(existing) = upper.lookup(name) {
            if !is_whiteout(&existing) {
                return Err(Errno::EEXIST);
            }
            upper.unlink(name, false)?;
            had_whiteout = true;
        } else if let Some(l) = self.lower_visible() {
            if l.lookup(name).is_ok() {
                return Err(Errno::EEXIST);
            }
        }
        let created = upper.create(name, node, uid, gid)?;
        if had_whiteout && matches!(node, NewNode::Directory { .. }) {
            lock(&self.fs.opaque).insert(created.id());
        }
        Ok(self.child(name, Some(created), None))
    }

    fn link(&self, name: &[u8], target: &InodeRef) -> Result<(), Errno> {
        let target = target
            .as_any()
            .downcast_ref::<OverlayInode>()
            .ok_or(Errno::EXDEV)?;
        let target_upper = target.copy_up()?;
        let upper = self.copy_up()?;
        if let Ok(existing) = upper.lookup(name) {
            if !is_whiteout(&existing) {
                return Err(Errno::EEXIST);
            }
            upper.unlink(name, false)?;
        }
        upper.link(name, &target_upper)
    }

    fn unlink(&self, name: &[u8], dir: bool) -> Result<(), Errno> {
        let child = self.lookup(name)?;
        let child = child
            .as_any()
            .downcast_ref::<OverlayInode>()
            .ok_or(Errno::EIO)?;
        if dir {
            // A merged directory is empty only if both layers show nothing.
            if !child.readdir()?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
        } else if child.kind() == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        let upper = self.copy_up()?;
        let in_lower = child.lower().is_some();
        if let Some(cu) = child.upper() {
            if cu.kind() == FileKind::Directory {
                // Remove whiteouts left inside before removing the directory itself.
                for e in cu.readdir()? {
                    cu.unlink(&e.name, false)?;
                }
            }
            upper.unlink(name, dir)?;
        }
        if in_lower {
            upper.create(name, &whiteout(), 0, 0)?;
        }
        Ok(())
    }

    fn rename(
        &self,
        name: &[u8],
        new_dir: &InodeRef,
        new_name: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        let target_dir = new_dir
            .as_any()
            .downcast_ref::<OverlayInode>()
            .ok_or(Errno::EXDEV)?
            .arc();
        let source = self.lookup(name)?;
        let source = source
            .as_any()
            .downcast_ref::<OverlayInode>()
            .ok_or(Errno::EIO)?
            .arc();
        if source.kind() == FileKind::Directory && source.lower().is_some() {
            return Err(Errno::EXDEV);
        }
        if flags & RENAME_EXCHANGE != 0 {
            // Both names stay occupied, so whiteouts are unchanged: copy both up and swap
            // them in the upper layer. A lower directory cannot move (as above).
            let dest = target_dir.lookup(new_name)?;
            let dest = dest
                .as_any()
                .downcast_ref::<OverlayInode>()
                .ok_or(Errno::EIO)?
                .arc();
            if dest.kind() == FileKind::Directory && dest.lower().is_some() {
                return Err(Errno::EXDEV);
            }
            source.copy_up()?;
            dest.copy_up()?;
            let from = self.copy_up()?;
            let to = target_dir.copy_up()?;
            return from.rename(name, &to, new_name, flags);
        }
        let dest = match target_dir.lookup(new_name) {
            Ok(d) => Some(d),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(e),
        };
        if let Some(d) = &dest {
            let d = d
                .as_any()
                .downcast_ref::<OverlayInode>()
                .ok_or(Errno::EIO)?;
            match (
                source.kind() == FileKind::Directory,
                d.kind() == FileKind::Directory,
            ) {
                (false, true) => return Err(Errno::EISDIR),
                (true, false) => return Err(Errno::ENOTDIR),
                _ => {}
            }
            if d.kind() == FileKind::Directory && !d.readdir()?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
        }
        let moved = source.copy_up()?;
        let from = self.copy_up()?;
        let to = target_dir.copy_up()?;
        // Clear what stands at the destination in the upper layer (a file, or a whiteout).
        if let Ok(existing) = to.lookup(new_name) {
            if is_whiteout(&existing) {
                to.unlink(new_name, false)?;
            }
        }
        let dest_in_lower = dest
            .as_ref()
            .and_then(|d| d.as_any().downcast_ref::<OverlayInode>())
            .is_some_and(|d| d.lower().is_some());
        from.rename(name, &to, new_name, flags)?;
        if source.lower().is_some() {
            from.create(name, &whiteout(), 0, 0)?;
        }
        if dest_in_lower && moved.kind() == FileKind::Directory {
            // The directory now stands where a lower one was: it must hide it.
            lock(&self.fs.opaque).insert(moved.id());
        }
        Ok(())
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        let mut merged: BTreeMap<Vec<u8>, Option<DirEntry>> = BTreeMap::new();
        if let Some(u) = self.upper() {
            for e in u.readdir()? {
                let hidden = e.kind == FileKind::CharDevice
                    && u.lookup(&e.name).is_ok_and(|i| is_whiteout(&i));
                merged.insert(e.name.clone(), if hidden { None } else { Some(e) });
            }
        }
        if let Some(l) = self.lower_visible() {
            for e in l.readdir()? {
                merged.entry(e.name.clone()).or_insert(Some(e));
            }
        }
        Ok(merged.into_values().flatten().collect())
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        self.top().readlink()
    }

    fn open(&self, flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        let writes = flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
            || flags & libc::O_TRUNC as u32 != 0;
        if writes && self.kind() == FileKind::Regular {
            return self.copy_up()?.open(flags);
        }
        self.top().open(flags)
    }

    fn setattr(&self, attr: &SetAttr) -> Result<(), Errno> {
        self.copy_up()?.setattr(attr)
    }

    /// Attributes are read from the top layer; changing one copies the file up first.
    /// (A copy-up does not carry the lower file's attributes up yet.)
    fn get_xattr(&self, name: &[u8]) -> Result<Vec<u8>, Errno> {
        self.top().get_xattr(name)
    }

    fn list_xattr(&self) -> Result<Vec<Vec<u8>>, Errno> {
        self.top().list_xattr()
    }

    fn set_xattr(&self, name: &[u8], value: &[u8], flags: u32) -> Result<(), Errno> {
        self.copy_up()?.set_xattr(name, value, flags)
    }

    fn remove_xattr(&self, name: &[u8]) -> Result<(), Errno> {
        self.copy_up()?.remove_xattr(name)
    }

    fn id(&self) -> (u64, u64) {
        self.stat().map_or((0, 0), |s| (s.st_dev, s.st_ino))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tmpfs::Tmpfs;
    use crate::fs::OpenFile;

    fn write(dir: &InodeRef, name: &[u8], text: &[u8]) {
        let f = match dir.lookup(name) {
            Ok(f) => f,
            Err(_) => dir
                .create(name, &NewNode::File { mode: 0o644 }, 0, 0)
                .unwrap(),
        };
        let file = OpenFile::new(
            f.open((libc::O_WRONLY | libc::O_TRUNC) as u32).unwrap(),
            libc::O_WRONLY as u32,
        );
        file.write_at(text, 0).unwrap();
    }

    fn read(dir: &InodeRef, name: &[u8]) -> Vec<u8> {
        let f = dir.lookup(name).unwrap();
        let file = OpenFile::new(
            f.open(libc::O_RDONLY as u32).unwrap(),
            libc::O_RDONLY as u32,
        );
        let mut buf = vec![0u8; 100];
        let n = file.read_at(&mut buf, 0).unwrap();
        buf.truncate(n);
        buf
    }

    fn names(dir: &InodeRef) -> Vec<String> {
        dir.readdir()
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect()
    }

    /// lower: /etc/passwd, /etc/hosts, /bin/sh; upper: empty.
    fn setup() -> (InodeRef, InodeRef, InodeRef) {
        let lower: InodeRef = Tmpfs::new_root(0o755, 0, 0);
        let etc = lower
            .create(b"etc", &NewNode::Directory { mode: 0o755 }, 0, 0)
            .unwrap();
        write(&etc, b"passwd", b"root:x:0:0");
        write(&etc, b"hosts", b"127.0.0.1 localhost");
        let bin = lower
            .create(b"bin", &NewNode::Directory { mode: 0o755 }, 0, 0)
            .unwrap();
        write(&bin, b"sh", b"ELF");
        let upper: InodeRef = Tmpfs::new_root(0o755, 0, 0);
        let root: InodeRef = OverlayFs::new_root(lower.clone(), upper.clone());
        (root, lower, upper)
    }

    #[test]
    fn writes_copy_up_and_never_touch_the_lower_layer() {
        let (root, lower, upper) = setup();
        let etc = root.lookup(b"etc").unwrap();
        write(&etc, b"hosts", b"10.0.0.1 moat");
        assert_eq!(read(&etc, b"hosts"), b"10.0.0.1 moat");
        assert_eq!(
            read(&lower.lookup(b"etc").unwrap(), b"hosts"),
            b"127.0.0.1 localhost"
        );
        assert_eq!(
            read(&upper.lookup(b"etc").unwrap(), b"hosts"),
            b"10.0.0.1 moat"
        );
        assert_eq!(
            names(&etc),
            ["hosts", "passwd"],
            "the merged directory shows both layers once"
        );
        write(&etc, b"new", b"n");
        assert_eq!(names(&etc), ["hosts", "new", "passwd"]);
        assert!(lower.lookup(b"etc").unwrap().lookup(b"new").is_err());
    }

    #[test]
    fn unlink_leaves_a_whiteout_and_mkdir_over_it_is_opaque() {
        let (root, lower, _upper) = setup();
        let etc = root.lookup(b"etc").unwrap();
        etc.unlink(b"passwd", false).unwrap();
        assert_eq!(etc.lookup(b"passwd").err(), Some(Errno::ENOENT));
        assert_eq!(names(&etc), ["hosts"]);
        assert!(
            lower.lookup(b"etc").unwrap().lookup(b"passwd").is_ok(),
            "the host file is still there"
        );
        etc.create(b"passwd", &NewNode::File { mode: 0o600 }, 0, 0)
            .unwrap();
        assert_eq!(read(&etc, b"passwd"), b"");
        // rmdir of a lower directory, then mkdir: the old entries must not show through.
        let bin = root.lookup(b"bin").unwrap();
        bin.unlink(b"sh", false).unwrap();
        root.unlink(b"bin", true).unwrap();
        assert_eq!(root.lookup(b"bin").err(), Some(Errno::ENOENT));
        let new_bin = root
            .create(b"bin", &NewNode::Directory { mode: 0o755 }, 0, 0)
            .unwrap();
        assert!(names(&new_bin).is_empty());
        assert!(root.lookup(b"bin").unwrap().lookup(b"sh").is_err());
        assert_eq!(root.unlink(b"etc", true).err(), Some(Errno::ENOTEMPTY));
    }

    #[test]
    fn rename_copies_files_up_and_refuses_lower_directories() {
        let (root, _lower, _upper) = setup();
        let etc = root.lookup(b"etc").unwrap();
        let bin = root.lookup(b"bin").unwrap();
        etc.rename(b"hosts", &bin, b"hosts2", 0).unwrap();
        assert_eq!(read(&bin, b"hosts2"), b"127.0.0.1 localhost");
        assert_eq!(etc.lookup(b"hosts").err(), Some(Errno::ENOENT));
        assert_eq!(
            root.rename(b"etc", &root, b"etc2", 0).err(),
            Some(Errno::EXDEV)
        );
        let d = root
            .create(b"mine", &NewNode::Directory { mode: 0o755 }, 0, 0)
            .unwrap();
        write(&d, b"f", b"x");
        root.rename(b"mine", &root, b"yours", 0).unwrap();
        assert_eq!(read(&root.lookup(b"yours").unwrap(), b"f"), b"x");
    }
}
