//! The Python exception hierarchy: one class per `RingError` variant, all below
//! `jarvis_rust_core.RingError`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::error::RingError as E;

/// Declares the exception classes and `register`, which adds them all to the module.
macro_rules! exceptions {
    ($($name:ident($base:ident): $doc:literal;)*) => {
        $(create_exception!(jarvis_rust_core, $name, $base, $doc);)*

        pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            $(m.add(stringify!($name), m.py().get_type::<$name>())?;)*
            Ok(())
        }
    };
}

exceptions! {
    RingError(PyException): "Base class of every error raised by the frame ring.";
    FrameExpired(RingError): "The frame a FrameRef names is gone: overwritten, reclaimed or never published.";
    RingFull(RingError): "No slot is free; the writer does not wait, the frame was not written.";
    HandoffFull(RingError): "A hop's hand-off queue is full: the message was not queued.";
    RingFormatError(RingError): "The ring file or a ref is not usable: foreign, stale, corrupt or of another layout.";
    RingBusy(RingError): "The ring already has a live writer, or a holder name is taken.";
    RingNotFound(RingError): "No ring of that name exists.";
    InsufficientSharedMemory(RingError): "Too little shared memory to create the ring.";
    FrameGeometryError(RingError): "A frame's size, dtype or memory layout is not acceptable.";
    HoldError(RingError): "A hold operation the caller is not entitled to.";
    RingPermissionError(RingError): "Ring files with the wrong owner or permissions.";
    RingConfigError(RingError): "Ring parameters that cannot work.";
    RingClosed(RingError): "The ring handle was closed.";
    RingIOError(RingError): "An operating-system call on the ring failed.";
    GpuError(RingError): "The GPU backend: no usable adapter, or the device failed.";
}

impl From<E> for PyErr {
    fn from(e: E) -> PyErr {
        let msg = e.to_string();
        match e {
            E::FrameExpired(_) => FrameExpired::new_err(msg),
            E::RingFull(_) => RingFull::new_err(msg),
            E::HandoffFull(_) => HandoffFull::new_err(msg),
            E::Format(_) => RingFormatError::new_err(msg),
            E::Busy(_) => RingBusy::new_err(msg),
            E::NotFound(_) => RingNotFound::new_err(msg),
            E::InsufficientSharedMemory { .. } => InsufficientSharedMemory::new_err(msg),
            E::FrameGeometry(_) => FrameGeometryError::new_err(msg),
            E::Hold(_) => HoldError::new_err(msg),
            E::Permission(_) => RingPermissionError::new_err(msg),
            E::Config(_) => RingConfigError::new_err(msg),
            E::Closed(_) => RingClosed::new_err(msg),
            E::Io { .. } => RingIOError::new_err(msg),
            E::Gpu(_) => GpuError::new_err(msg),
        }
    }
}
