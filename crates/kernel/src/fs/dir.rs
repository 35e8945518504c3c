//! Open directories: reads fail with `EISDIR`; `getdents64` lists them through the VFS.

use moat_abi::Errno;

use super::{FileOps, OpenFile};

/// The file operations of any open directory.
pub struct DirFile;

impl FileOps for DirFile {
    fn sync(&self) -> Result<(), Errno> {
        Ok(())
    }

    fn read(
        &self,
        _file: &OpenFile,
        _buf: &mut [u8],
        _offset: Option<u64>,
    ) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }

    fn write(&self, _file: &OpenFile, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn is_directory(&self) -> bool {
        true
    }
}
