//! The one error type of the crate. Each variant maps to one Python exception
//! below `jarvis_rust_core.RingError` (see python/errors.rs); every message says
//! what went wrong and what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The frame a ref points to is gone (overwritten, or never published).
    #[error("{0}")]
    FrameExpired(String),
    /// No slot is free and the writer does not wait.
    #[error("{0}")]
    RingFull(String),
    /// A hop's hand-off queue is full: its consumer is not taking records.
    #[error("{0}")]
    HandoffFull(String),
    /// The ring file is not one this build can use: foreign, stale, corrupt or
    /// of another layout version; or a ref that does not belong to this ring.
    #[error("{0}")]
    Format(String),
    /// Another process already is the writer, or a holder name is taken.
    #[error("{0}")]
    Busy(String),
    /// No ring of that name exists.
    #[error("{0}")]
    NotFound(String),
    /// Not enough shared memory to create the ring.
    #[error(
        "the ring needs {needed_mb:.1} MB in {} but only {free_mb:.1} MB are free; \
         free space there (remove stale rings; on Linux, enlarge /dev/shm), set JARVIS_SHM_DIR to a place \
         with room, or ask for a smaller ring",
        path.display()
    )]
    InsufficientSharedMemory { needed_mb: f64, free_mb: f64, path: PathBuf },
    /// The frame's size, type or memory layout is not acceptable.
    #[error("{0}")]
    FrameGeometry(String),
    /// A hold operation that the caller is not entitled to (not registered, not held).
    #[error("{0}")]
    Hold(String),
    /// Files or directories with the wrong owner or permissions.
    #[error("{0}")]
    Permission(String),
    /// Ring parameters that cannot work (too small, too many slots, bad name).
    #[error("{0}")]
    Config(String),
    /// The handle was closed.
    #[error("{0}")]
    Closed(String),
    /// The GPU backend: no usable adapter, or the device failed.
    #[error("{0}")]
    Gpu(String),
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl RingError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RingError::Io { context: context.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, RingError>;
