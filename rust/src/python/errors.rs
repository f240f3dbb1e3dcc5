//! The Python exception hierarchy: one class per `RingError` variant, all below
//! `jarvis_rust_core.RingError`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::error::RingError as E;

create_exception!(jarvis_rust_core, RingError, PyException, "Base class of every error raised by the frame ring.");
create_exception!(jarvis_rust_core, FrameExpired, RingError, "The frame a FrameRef names is gone: overwritten, reclaimed or never published.");
create_exception!(jarvis_rust_core, RingFull, RingError, "No slot is free; the writer does not wait, the frame was not written.");
create_exception!(jarvis_rust_core, RingFormatError, RingError, "The ring file or a ref is not usable: foreign, stale, corrupt or of another layout.");
create_exception!(jarvis_rust_core, RingBusy, RingError, "The ring already has a live writer, or a holder name is taken.");
create_exception!(jarvis_rust_core, RingNotFound, RingError, "No ring of that name exists.");
create_exception!(jarvis_rust_core, InsufficientSharedMemory, RingError, "Too little shared memory to create the ring.");
create_exception!(jarvis_rust_core, FrameGeometryError, RingError, "A frame's size, dtype or memory layout is not acceptable.");
create_exception!(jarvis_rust_core, HoldError, RingError, "A hold operation the caller is not entitled to.");
create_exception!(jarvis_rust_core, RingPermissionError, RingError, "Ring files with the wrong owner or permissions.");
create_exception!(jarvis_rust_core, RingConfigError, RingError, "Ring parameters that cannot work.");
create_exception!(jarvis_rust_core, RingClosed, RingError, "The ring handle was closed.");
create_exception!(jarvis_rust_core, RingIOError, RingError, "An operating-system call on the ring failed.");

impl From<E> for PyErr {
    fn from(e: E) -> PyErr {
        let msg = e.to_string();
        match e {
            E::FrameExpired(_) => FrameExpired::new_err(msg),
            E::RingFull(_) => RingFull::new_err(msg),
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
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RingError", py.get_type::<RingError>())?;
    m.add("FrameExpired", py.get_type::<FrameExpired>())?;
    m.add("RingFull", py.get_type::<RingFull>())?;
    m.add("RingFormatError", py.get_type::<RingFormatError>())?;
    m.add("RingBusy", py.get_type::<RingBusy>())?;
    m.add("RingNotFound", py.get_type::<RingNotFound>())?;
    m.add("InsufficientSharedMemory", py.get_type::<InsufficientSharedMemory>())?;
    m.add("FrameGeometryError", py.get_type::<FrameGeometryError>())?;
    m.add("HoldError", py.get_type::<HoldError>())?;
    m.add("RingPermissionError", py.get_type::<RingPermissionError>())?;
    m.add("RingConfigError", py.get_type::<RingConfigError>())?;
    m.add("RingClosed", py.get_type::<RingClosed>())?;
    m.add("RingIOError", py.get_type::<RingIOError>())?;
    Ok(())
}
