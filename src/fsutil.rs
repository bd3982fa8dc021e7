//! Small file-system helpers shared by the composition root and the modules below it (so that no
//! module has to reach up into `app` for them).

use std::path::Path;

/// Write `text` to `path` readable by the owner only (0600 on Unix): initial passwords, signing
/// keys. The mode is set at creation, so the secret is never briefly world-readable.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path)?.write_all(text.as_bytes())
}

/// (free, total) bytes of the file system that holds `path`, for the manager's status page.
#[cfg(unix)]
pub fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is written by statvfs before we read it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (u32 on some), hence the casts.
    #[allow(clippy::unnecessary_cast)]
    let (unit, avail, blocks) = (st.f_frsize as u64, st.f_bavail as u64, st.f_blocks as u64);
    Some((avail * unit, blocks * unit))
}

#[cfg(not(unix))]
pub fn free_space(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// An exclusive lock on a data directory (`<dir>/.lock`, flock): the daemon holds it while it
/// serves; `restore` and `key rotate`, which replace the database file, refuse while it is held.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] std::fs::File);

#[cfg(unix)]
pub fn lock_dir(dir: &Path) -> std::io::Result<Option<DirLock>> {
    use std::os::unix::io::AsRawFd;
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock"))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok((rc == 0).then_some(DirLock(f)))
}

#[cfg(not(unix))]
pub fn lock_dir(dir: &Path) -> std::io::Result<Option<DirLock>> {
    std::fs::create_dir_all(dir)?;
    Ok(Some(DirLock(std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock"))?)))
}
