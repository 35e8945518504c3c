//! Path resolution: from a starting directory, one component at a time, following `..`
//! across mounts and symlinks (at most 40, then `ELOOP`), checking search permission on every
//! directory crossed, never leaving the task's root.

use std::collections::VecDeque;

use moat_abi::Errno;

use super::{permitted, FileKind, VfsPath, MAY_EXEC};
use crate::Credentials;

/// `MAXSYMLINKS`.
const MAX_SYMLINKS: u32 = 40;
/// `NAME_MAX`.
pub const NAME_MAX: usize = 255;
/// `PATH_MAX`, including the terminating NUL.
pub const PATH_MAX: usize = 4096;

/// A task's place in the tree: its root (chroot), working directory and umask.
#[derive(Clone)]
pub struct FsContext {
    pub root: VfsPath,
    pub cwd: VfsPath,
    pub umask: u32,
}

/// A resolution on behalf of a task.
pub struct Resolve<'a> {
    /// The task's root: `/` and the top of `..`.
    pub root: VfsPath,
    pub creds: &'a Credentials,
}

fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

impl Resolve<'_> {
    /// One step from the directory `cur` to `name` (which may be `.` or `..`).
    fn step(&self, cur: &VfsPath, name: &[u8]) -> Result<VfsPath, Errno> {
        match name {
            b"." => Ok(cur.clone()),
            b".." => {
                let mut at = cur.clone();
                if at.same(&self.root) {
                    return Ok(at);
                }
                // Climb out of mounts whose root we stand on.
                while std::sync::Arc::ptr_eq(&at.dentry, &at.mount.root) {
                    match &at.mount.mountpoint {
                        Some((m, d)) => {
                            at = VfsPath {
                                mount: m.clone(),
                                dentry: d.clone(),
                            }
                        }
                        None => return Ok(at),
                    }
                    if at.same(&self.root) {
                        return Ok(at);
                    }
                }
                let parent = at.dentry.parent().unwrap_or_else(|| at.dentry.clone());
                Ok(VfsPath {
                    mount: at.mount,
                    dentry: parent,
                })
            }
            _ => {
                if name.len() > NAME_MAX {
                    return Err(Errno::ENAMETOOLONG);
                }
                let mut next = VfsPath {
                    mount: cur.mount.clone(),
                    dentry: cur.dentry.child(name)?,
                };
                while let Some(m) = next.dentry.mounted() {
                    next = VfsPath::root_of(&m);
                }
                Ok(next)
            }
        }
    }

    /// Check that `dir` is a directory the caller may search.
    fn searchable(&self, dir: &VfsPath) -> Result<(), Errno> {
        let st = dir.inode().stat()?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        if !permitted(&st, self.creds, MAY_EXEC) {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    /// Resolve `path` from `start` (used for relative paths). A final symlink is followed if
    /// `follow`; a trailing slash requires a directory (and follows).
    pub fn path(&self, start: &VfsPath, path: &[u8], follow: bool) -> Result<VfsPath, Errno> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let must_be_dir = path.ends_with(b"/");
        let mut cur = if path[0] == b'/' {
            self.root.clone()
        } else {
            start.clone()
        };
        let mut queue = components(path);
        let mut links = 0;
        while let Some(name) = queue.pop_front() {
            self.searchable(&cur)?;
            let next = self.step(&cur, &name)?;
            let last = queue.is_empty();
            if (!last || follow || must_be_dir) && next.inode().kind() == FileKind::Symlink {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = next.inode().readlink()?;
                if target.is_empty() {
                    return Err(Errno::ENOENT);
                }
                let mut expanded = components(&target);
                expanded.extend(queue);
                queue = expanded;
                if target[0] == b'/' {
                    cur = self.root.clone();
                }
                continue;
            }
            cur = next;
        }
        if must_be_dir && cur.inode().kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(cur)
    }

    /// Resolve all but the last component of `path`: the parent directory, the last name
    /// (possibly `.` or `..`; `.` for `/`), and whether the path ended with a slash.
    pub fn parent(&self, start: &VfsPath, path: &[u8]) -> Result<(VfsPath, Vec<u8>, bool), Errno> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let trailing = path.ends_with(b"/");
        let trimmed = {
            let mut end = path.len();
            while end > 0 && path[end - 1] == b'/' {
                end -= 1;
            }
            &path[..end]
        };
        if trimmed.is_empty() {
            return Ok((self.root.clone(), b".".to_vec(), true));
        }
        let (dir, name) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => {
                let dir = if i == 0 {
                    self.root.clone()
                } else {
                    self.path(start, &trimmed[..=i], true)?
                };
                (dir, trimmed[i + 1..].to_vec())
            }
            None => (start.clone(), trimmed.to_vec()),
        };
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.searchable(&dir)?;
        Ok((dir, name, trailing))
    }
}
