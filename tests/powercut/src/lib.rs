//! A simulated power cut for a process that keeps its data in one
//! directory: loaded with `LD_PRELOAD`, this library keeps a shadow copy
//! of that directory holding each file as it was at its last `fsync` or
//! `fdatasync`, which is what a power cut leaves of it. Killing the process
//! and putting the shadow in the directory's place is the cut.
//!
//! - `CASCADE_POWERCUT_DATA`: the directory watched (absolute, no trailing
//!   slash). Without it the library does nothing.
//! - `CASCADE_POWERCUT_SHADOW`: where its durable copy is kept. Start it as
//!   a copy of the directory (made while nothing writes).
//!
//! The model: a file's contents are durable as of its last successful
//! `fsync`/`fdatasync` (writes after it, and writes that were never synced,
//! are lost); its size likewise. Names are durable at once: `rename` and
//! `unlink` apply to the shadow when they succeed (a file renamed before its
//! contents were synced has no durable contents). So the cut drops every
//! unsynced write, which is what a missing `fsync` risks; it does not tear
//! writes or reorder them. The library interposes `write`, `writev`,
//! `pwrite`, `pwrite64`, `ftruncate`, `ftruncate64`, `fsync`, `fdatasync`,
//! `rename`, `renameat`, `unlink` and `unlinkat`, and calls the kernel
//! directly for the real work.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use libc::{c_char, c_int, c_long, c_void, iovec, off64_t, off_t, size_t, ssize_t};

/// The directory watched and its shadow.
struct Config {
    data: PathBuf,
    shadow: PathBuf,
}

fn config() -> Option<&'static Config> {
    static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let data = std::env::var_os("CASCADE_POWERCUT_DATA")?;
            let shadow = std::env::var_os("CASCADE_POWERCUT_SHADOW")?;
            Some(Config {
                data: PathBuf::from(data),
                shadow: PathBuf::from(shadow),
            })
        })
        .as_ref()
}

/// What was written to one file (by device and inode) since its last sync.
#[derive(Default)]
struct Dirty {
    /// Whether the file is in the watched directory (decided once).
    watched: bool,
    /// Byte ranges written, `[start, end)`.
    ranges: Vec<(u64, u64)>,
    /// Written where the offset is not known (`write`): copy it whole.
    whole: bool,
}

/// Most ranges kept per file before they are merged into one.
const MAX_RANGES: usize = 4096;

fn files() -> &'static Mutex<HashMap<(u64, u64), Dirty>> {
    static FILES: OnceLock<Mutex<HashMap<(u64, u64), Dirty>>> = OnceLock::new();
    FILES.get_or_init(|| Mutex::new(HashMap::new()))
}

fn stat_fd(fd: c_int) -> Option<libc::stat> {
    // SAFETY: `st` is a valid out-parameter for fstat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let r = libc::syscall(libc::SYS_fstat, fd as c_long, &mut st as *mut libc::stat);
        (r == 0).then_some(st)
    }
}

fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// The path an open descriptor names.
fn fd_path(fd: c_int) -> Option<PathBuf> {
    let link = format!("/proc/self/fd/{fd}\0");
    let mut buf = vec![0u8; 4096];
    // SAFETY: `link` is NUL-terminated; `buf` is writable for its length.
    let n = unsafe {
        libc::syscall(
            libc::SYS_readlinkat,
            libc::AT_FDCWD as c_long,
            link.as_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(PathBuf::from(OsStr::from_bytes(&buf)))
}

/// `path`'s place in the shadow, if it is in the watched directory.
fn shadow_of(config: &Config, path: &Path) -> Option<PathBuf> {
    let relative = path.strip_prefix(&config.data).ok()?;
    Some(config.shadow.join(relative))
}

/// Notes a write to `fd`: `range` where the offset is known, else the
/// whole file.
fn mark(fd: c_int, range: Option<(u64, u64)>) {
    let Some(config) = config() else { return };
    let Some(st) = stat_fd(fd) else { return };
    if !is_regular(&st) {
        return;
    }
    let key = (st.st_dev, st.st_ino);
    let mut files = files().lock().unwrap_or_else(|e| e.into_inner());
    let dirty = files.entry(key).or_insert_with(|| Dirty {
        watched: fd_path(fd)
            .map(|p| shadow_of(config, &p).is_some())
            .unwrap_or(false),
        ..Dirty::default()
    });
    if !dirty.watched {
        return;
    }
    match range {
        None => dirty.whole = true,
        Some(range) => {
            dirty.ranges.push(range);
            if dirty.ranges.len() > MAX_RANGES {
                let start = dirty.ranges.iter().map(|r| r.0).min().unwrap_or(0);
                let end = dirty.ranges.iter().map(|r| r.1).max().unwrap_or(0);
                dirty.ranges = vec![(start, end)];
            }
        }
    }
}

/// After a successful sync of `fd`: copies what was written to it since the
/// last one into the shadow, and gives the shadow its size.
fn synced(fd: c_int) {
    let Some(config) = config() else { return };
    let Some(st) = stat_fd(fd) else { return };
    if !is_regular(&st) || st.st_nlink == 0 {
        // Not a file, or one already unlinked: nothing of it survives.
        return;
    }
    let Some(path) = fd_path(fd) else { return };
    let Some(shadow) = shadow_of(config, &path) else {
        return;
    };
    let dirty = {
        let mut files = files().lock().unwrap_or_else(|e| e.into_inner());
        match files.get_mut(&(st.st_dev, st.st_ino)) {
            Some(dirty) => std::mem::replace(
                dirty,
                Dirty {
                    watched: true,
                    ..Dirty::default()
                },
            ),
            None => Dirty::default(),
        }
    };
    if let Err(e) = copy_to_shadow(&path, &shadow, st.st_size as u64, &dirty) {
        // Loud: a shadow that misses a sync would report a loss that did
        // not happen.
        eprintln!("cascade-powercut: could not copy {path:?} to its shadow: {e}");
        std::process::abort();
    }
}

fn copy_to_shadow(path: &Path, shadow: &Path, len: u64, dirty: &Dirty) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if let Some(parent) = shadow.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let created = !shadow.exists();
    let source = std::fs::File::open(path)?;
    let target = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(shadow)?;
    let ranges: Vec<(u64, u64)> = if dirty.whole || created {
        vec![(0, len)]
    } else {
        dirty.ranges.clone()
    };
    let mut buf = vec![0u8; 1 << 16];
    for (start, end) in ranges {
        let end = end.min(len);
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            source.read_exact_at(&mut buf[..n], at)?;
            raw_pwrite(&target, &buf[..n], at)?;
            at += n as u64;
        }
    }
    // SAFETY: a valid descriptor and length.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ftruncate,
            std::os::fd::AsRawFd::as_raw_fd(&target) as c_long,
            len as c_long,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `pwrite` straight to the kernel (not through this library's own).
fn raw_pwrite(file: &std::fs::File, mut buf: &[u8], mut at: u64) -> std::io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    while !buf.is_empty() {
        // SAFETY: `buf` is readable for its length.
        let n = unsafe {
            libc::syscall(
                libc::SYS_pwrite64,
                fd as c_long,
                buf.as_ptr(),
                buf.len(),
                at as c_long,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        buf = &buf[n as usize..];
        at += n as u64;
    }
    Ok(())
}

/// The absolute path `path` names relative to `dirfd`.
fn resolve(dirfd: c_int, path: *const c_char) -> Option<PathBuf> {
    if path.is_null() {
        return None;
    }
    // SAFETY: the caller passed a NUL-terminated path.
    let path = PathBuf::from(OsStr::from_bytes(
        unsafe { CStr::from_ptr(path) }.to_bytes(),
    ));
    if path.is_absolute() {
        return Some(path);
    }
    if dirfd == libc::AT_FDCWD {
        return Some(std::env::current_dir().ok()?.join(path));
    }
    Some(fd_path(dirfd)?.join(path))
}

/// Forgets what is known of the file at `path` (before it is unlinked or
/// replaced: its inode may be reused).
fn forget(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        files()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(meta.dev(), meta.ino()));
    }
}

fn renamed(old: Option<PathBuf>, new: Option<PathBuf>) {
    let Some(config) = config() else { return };
    let (Some(old), Some(new)) = (old, new) else {
        return;
    };
    let (Some(old_shadow), Some(new_shadow)) = (shadow_of(config, &old), shadow_of(config, &new))
    else {
        return;
    };
    if old_shadow.exists() {
        let _ = std::fs::rename(&old_shadow, &new_shadow);
    } else {
        // Its contents were never synced: the new name has none.
        let _ = std::fs::remove_file(&new_shadow);
    }
}

fn unlinked(path: Option<PathBuf>, dir: bool) {
    let Some(config) = config() else { return };
    let Some(shadow) = path.and_then(|p| shadow_of(config, &p)) else {
        return;
    };
    let _ = if dir {
        std::fs::remove_dir_all(&shadow)
    } else {
        std::fs::remove_file(&shadow)
    };
}

// The interposed functions. Each calls the kernel, then updates the
// shadow's bookkeeping when the call succeeded; errno is left as the
// kernel set it (the bookkeeping's own calls happen only on success and
// do not report failures through errno).

/// `write(2)`.
///
/// # Safety
/// As `write(2)`.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let r = libc::syscall(libc::SYS_write, fd as c_long, buf, count);
    if r > 0 {
        mark(fd, None);
    }
    r as ssize_t
}

/// `writev(2)`.
///
/// # Safety
/// As `writev(2)`.
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    let r = libc::syscall(libc::SYS_writev, fd as c_long, iov, iovcnt as c_long);
    if r > 0 {
        mark(fd, None);
    }
    r as ssize_t
}

/// `pwrite64(2)`.
///
/// # Safety
/// As `pwrite64(2)`.
#[no_mangle]
pub unsafe extern "C" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off64_t,
) -> ssize_t {
    let r = libc::syscall(
        libc::SYS_pwrite64,
        fd as c_long,
        buf,
        count,
        offset as c_long,
    );
    if r > 0 {
        mark(fd, Some((offset as u64, offset as u64 + r as u64)));
    }
    r as ssize_t
}

/// `pwrite(2)`.
///
/// # Safety
/// As `pwrite(2)`.
#[no_mangle]
pub unsafe extern "C" fn pwrite(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    pwrite64(fd, buf, count, offset as off64_t)
}

/// `ftruncate64(2)`.
///
/// # Safety
/// As `ftruncate(2)`.
#[no_mangle]
pub unsafe extern "C" fn ftruncate64(fd: c_int, length: off64_t) -> c_int {
    let r = libc::syscall(libc::SYS_ftruncate, fd as c_long, length as c_long);
    if r == 0 {
        // What was cut off, if it grows again, reads as zeros.
        mark(fd, Some((length as u64, u64::MAX)));
    }
    r as c_int
}

/// `ftruncate(2)`.
///
/// # Safety
/// As `ftruncate(2)`.
#[no_mangle]
pub unsafe extern "C" fn ftruncate(fd: c_int, length: off_t) -> c_int {
    ftruncate64(fd, length as off64_t)
}

/// `fsync(2)`.
///
/// # Safety
/// As `fsync(2)`.
#[no_mangle]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    let r = libc::syscall(libc::SYS_fsync, fd as c_long);
    if r == 0 {
        synced(fd);
    }
    r as c_int
}

/// `fdatasync(2)`.
///
/// # Safety
/// As `fdatasync(2)`.
#[no_mangle]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    let r = libc::syscall(libc::SYS_fdatasync, fd as c_long);
    if r == 0 {
        synced(fd);
    }
    r as c_int
}

/// `renameat(2)`.
///
/// # Safety
/// As `renameat(2)`.
#[no_mangle]
pub unsafe extern "C" fn renameat(
    olddirfd: c_int,
    oldpath: *const c_char,
    newdirfd: c_int,
    newpath: *const c_char,
) -> c_int {
    let (old, new) = (resolve(olddirfd, oldpath), resolve(newdirfd, newpath));
    if let Some(new) = &new {
        forget(new);
    }
    let r = libc::syscall(
        libc::SYS_renameat2,
        olddirfd as c_long,
        oldpath,
        newdirfd as c_long,
        newpath,
        0 as c_long,
    );
    if r == 0 {
        renamed(old, new);
    }
    r as c_int
}

/// `rename(2)`.
///
/// # Safety
/// As `rename(2)`.
#[no_mangle]
pub unsafe extern "C" fn rename(oldpath: *const c_char, newpath: *const c_char) -> c_int {
    renameat(libc::AT_FDCWD, oldpath, libc::AT_FDCWD, newpath)
}

/// `unlinkat(2)`.
///
/// # Safety
/// As `unlinkat(2)`.
#[no_mangle]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, pathname: *const c_char, flags: c_int) -> c_int {
    let path = resolve(dirfd, pathname);
    if let Some(path) = &path {
        forget(path);
    }
    let r = libc::syscall(
        libc::SYS_unlinkat,
        dirfd as c_long,
        pathname,
        flags as c_long,
    );
    if r == 0 {
        unlinked(path, flags & libc::AT_REMOVEDIR != 0);
    }
    r as c_int
}

/// `unlink(2)`.
///
/// # Safety
/// As `unlink(2)`.
#[no_mangle]
pub unsafe extern "C" fn unlink(pathname: *const c_char) -> c_int {
    unlinkat(libc::AT_FDCWD, pathname, 0)
}
