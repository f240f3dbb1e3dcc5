//! Operating-system plumbing for the ring: the private directory, files created
//! without following links, space reservation, advisory locks, clocks.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{RingError, Result};

/// Base directory for ring files: `$JARVIS_SHM_DIR`, else /dev/shm where it
/// exists (Linux: memory, never cleaned), else on macOS ~/Library/Caches
/// (a file on disk, see `reserve`: macOS's shm_open objects cannot be linked
/// into place, locked or listed, and $TMPDIR and /tmp lose files untouched
/// for three days; Caches is the user's own, not cleaned while in use and left
/// out of Time Machine backups), else the temporary directory.
pub fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("JARVIS_SHM_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir); // (set but empty is unset, not the working directory)
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        return shm.to_path_buf();
    }
    if cfg!(target_vendor = "apple") {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home).join("Library").join("Caches").join("jarvis-pipeline");
        }
    }
    std::env::temp_dir()
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The per-user ring directory (0700, owned by us), created if missing. A
/// directory owned by someone else or open to others is refused: anyone who can
/// write there could swap a ring file under us.
pub fn private_dir(base: &Path) -> Result<PathBuf> {
    let dir = base.join(format!("jarvis-{}", euid()));
    if cfg!(target_vendor = "apple") && !base.exists() {
        // ~/Library/Caches/jarvis-pipeline: ours to create (0700 below it all the same).
        let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(base);
    }
    match std::fs::create_dir(&dir) {
        Ok(()) => {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| RingError::io(format!("cannot set permissions of {}", dir.display()), e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(RingError::io(
                format!("cannot create the ring directory {}; check that {} is writable", dir.display(), base.display()),
                e,
            ))
        }
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| RingError::io(format!("cannot inspect {}", dir.display()), e))?;
    if !meta.is_dir() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(RingError::Permission(format!(
            "{} must be a directory owned by uid {} with mode 0700 (found uid {}, mode {:o}); remove it and retry, \
             or, if it is not yours to remove, set JARVIS_SHM_DIR to a private directory of yours \
             (e.g. JARVIS_SHM_DIR=$XDG_RUNTIME_DIR)",
            dir.display(),
            euid(),
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    Ok(dir)
}

/// Creates a new file, failing if anything exists at `path` (O_EXCL|O_NOFOLLOW).
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens an existing file for reading and writing without following links.
pub fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens (creating if needed, 0600) a lock file without following links.
pub fn open_lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| RingError::io(format!("cannot open lock file {}", path.display()), e))?;
    check_owned_private(&file, path)?;
    Ok(file)
}

/// The file must be a regular file owned by us and closed to others.
pub fn check_owned_private(file: &File, path: &Path) -> Result<()> {
    let meta = file.metadata().map_err(|e| RingError::io(format!("cannot inspect {}", path.display()), e))?;
    if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(RingError::Permission(format!(
            "{} is not a private file of this user (uid {}, mode {:o}); refusing to use it",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Tries to take an exclusive flock without waiting. Ok(false) when another open
/// file description holds it. The kernel drops the lock when its holder dies.
pub fn try_lock(file: &File) -> Result<bool> {
    // SAFETY: flock on a valid descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(RingError::io("flock failed", err))
    }
}

/// Takes an exclusive flock, waiting for it (used for short critical sections).
pub fn lock_wait(file: &File) -> Result<()> {
    loop {
        // SAFETY: flock on a valid descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(RingError::io("flock failed", err));
        }
    }
}

pub fn unlock(file: &File) {
    // SAFETY: flock on a valid descriptor; failure leaves the lock to close().
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
}

/// Whether the lock file at `path` is held by a live process (without keeping
/// it). A missing file means nobody holds it.
pub fn is_locked(path: &Path) -> Result<bool> {
    Ok(lock_state(path)?.unwrap_or(false))
}

/// Whether the lock file at `path` is held by a live process; None when there
/// is no such file (who held it cannot be told from the file).
pub fn lock_state(path: &Path) -> Result<Option<bool>> {
    let file = match open_existing(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RingError::io(format!("cannot open lock file {}", path.display()), e)),
    };
    let got = try_lock(&file)?;
    if got {
        unlock(&file);
    }
    Ok(Some(!got))
}

/// Whether process `pid` lives and, where its start time is known (`start`
/// non-zero: Linux), is the one that started then (pids are reused).
pub fn process_alive(pid: u32, start: u64) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    start == 0 || process_start_time(pid) == start
}

/// Free bytes on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| RingError::Format("path contains NUL".into()))?;
    // SAFETY: statvfs writes into a zeroed struct; the path is NUL terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(RingError::io(format!("statvfs {}", dir.display()), io::Error::last_os_error()));
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// Reserves `len` bytes for the file so that touching its pages can never fail
/// later with SIGBUS. Ok(false) when the filesystem is out of space.
pub fn reserve(file: &File, len: u64) -> Result<bool> {
    #[cfg(target_vendor = "apple")]
    {
        // macOS has no posix_fallocate: F_PREALLOCATE allocates the blocks
        // (all of them or none), then the file is sized over them.
        let mut store = libc::fstore_t {
            fst_flags: libc::F_ALLOCATEALL,
            fst_posmode: libc::F_PEOFPOSMODE,
            fst_offset: 0,
            fst_length: len as libc::off_t,
            fst_bytesalloc: 0,
        };
        // SAFETY: fcntl(F_PREALLOCATE) on a valid descriptor with a valid fstore_t.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_PREALLOCATE, &mut store) } == -1 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENOSPC) => return Ok(false),
                Some(libc::ENOTSUP) | Some(libc::EINVAL) => {}
                _ => return Err(RingError::io("fcntl(F_PREALLOCATE) failed", err)),
            }
        }
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: posix_fallocate on a valid descriptor.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
        match rc {
            0 => return Ok(true),
            libc::ENOSPC => return Ok(false),
            libc::EOPNOTSUPP | libc::EINVAL => {}
            e => return Err(RingError::io("posix_fallocate failed", io::Error::from_raw_os_error(e))),
        }
    }
    file.set_len(len).map_err(|e| RingError::io("cannot size the ring file", e))?;
    Ok(true)
}

/// Start time of a process (clock ticks since boot) from /proc; 0 where unknown.
pub fn process_start_time(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Field 22, counted after the parenthesised command name (which may hold spaces).
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The clock of every stamp and age in the ring: the one Python's
/// `time.monotonic_ns` reads, so that stamps taken on either side compare. On
/// macOS that is mach_absolute_time, CLOCK_UPTIME_RAW, which stops while the
/// Mac sleeps; CLOCK_MONOTONIC there counts sleep, and every frame in flight
/// would look older by the nap on waking.
#[cfg(target_vendor = "apple")]
const RING_CLOCK: libc::clockid_t = libc::CLOCK_UPTIME_RAW;
#[cfg(not(target_vendor = "apple"))]
const RING_CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(RING_CLOCK, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A random 64-bit value for ring generations (distinguishes a recreated ring
/// of the same name from the one a stale ref points into).
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut buf).is_ok() {
            return u64::from_le_bytes(buf) | 1;
        }
    }
    (wall_ns() ^ ((std::process::id() as u64) << 32)) | 1
}
