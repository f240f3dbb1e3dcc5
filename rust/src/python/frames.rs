//! Frames handed in from Python: a numpy uint8 array (rows may be padded,
//! pixels within a row contiguous) or a bytes-like object with its geometry.

use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;

use crate::error::RingError;
use crate::frame::{PixelFormat, SourceFrame};

fn geometry_error(msg: String) -> PyErr {
    RingError::FrameGeometry(msg).into()
}

/// The pixels of `data` (a numpy uint8 array or a bytes-like object) and the
/// owner that must stay alive while they are copied (held, never read).
#[allow(dead_code)]
pub enum Pixels<'py> {
    Array(Bound<'py, PyUntypedArray>),
    Buffer(PyBuffer<u8>),
}

pub fn source_of<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    width: Option<usize>,
    height: Option<usize>,
    fmt: Option<&str>,
    stride: Option<usize>,
) -> PyResult<(SourceFrame, Pixels<'py>)> {
    let fmt = fmt.map(PixelFormat::parse).transpose()?;
    if let Ok(arr) = data.cast::<PyUntypedArray>() {
        if !arr.dtype().is_equiv_to(&numpy::dtype::<u8>(py)) {
            return Err(geometry_error(format!("frames are uint8 arrays; got dtype {}", arr.dtype())));
        }
        let (shape, strides) = (arr.shape(), arr.strides());
        let (h, w, c) = match shape.len() {
            2 => (shape[0], shape[1], 1),
            3 => (shape[0], shape[1], shape[2]),
            n => return Err(geometry_error(format!("a frame array has shape (H, W, C) or (H, W); got {n} dimensions"))),
        };
        let format = PixelFormat::for_channels(c)?;
        if let Some(f) = fmt {
            if f != format {
                return Err(geometry_error(format!("fmt {:?} does not match an array with {c} channel(s)", f.name())));
            }
        }
        if width.is_some_and(|v| v != w) || height.is_some_and(|v| v != h) || stride.is_some() {
            return Err(geometry_error("width/height/stride come from the array itself; do not pass them".into()));
        }
        // A dimension of size 1 may carry any stride: numpy does not normalise it.
        let pixel_contiguous = match shape.len() {
            2 => w == 1 || strides[1] == 1,
            _ => (c == 1 || strides[2] == 1) && (w == 1 || strides[1] == c as isize),
        };
        if !pixel_contiguous || strides[0] < (w * c) as isize && h > 1 {
            return Err(geometry_error(format!(
                "pixels within a row must be contiguous and rows must not overlap (strides {strides:?} for shape {shape:?}); \
                 pass np.ascontiguousarray(frame)"
            )));
        }
        // SAFETY: the array stays alive (held in Pixels) and its rows are valid
        // per the shape and strides checked above.
        let ptr = unsafe { (*arr.as_array_ptr()).fields.data as *const u8 };
        let src = unsafe { SourceFrame::new(ptr, w, h, strides[0].max((w * c) as isize) as usize, format)? };
        return Ok((src, Pixels::Array(arr.clone())));
    }
    let buf = PyBuffer::<u8>::get(data).map_err(|_| {
        geometry_error(format!(
            "write_frame takes a numpy uint8 array or a bytes-like object, not {}",
            data.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    if !buf.is_c_contiguous() {
        return Err(geometry_error("a bytes-like frame must be one contiguous buffer".into()));
    }
    // Without a geometry the bytes are stored as an opaque blob: one GRAY row.
    let (w, h, format) = match (width, height) {
        (Some(w), Some(h)) => (w, h, fmt.unwrap_or(PixelFormat::Bgra)),
        (None, None) if fmt.is_none() || fmt == Some(PixelFormat::Gray) => (buf.len_bytes(), 1, PixelFormat::Gray),
        _ => return Err(geometry_error("a bytes-like frame needs both width= and height= (and fmt= unless BGRA)".into())),
    };
    // SAFETY: the buffer stays acquired (held in Pixels) while the slice is used.
    let slice = unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const u8, buf.len_bytes()) };
    let src = SourceFrame::from_slice(slice, w, h, stride, format)?;
    Ok((src, Pixels::Buffer(buf)))
}

/// `source_of` of each of `frames` (numpy arrays or bytes-like objects with
/// their geometry in the array), and their owners, to keep alive while the
/// pixels are read.
pub fn sources_of<'py>(py: Python<'py>, frames: &[Bound<'py, PyAny>]) -> PyResult<(Vec<SourceFrame>, Vec<Pixels<'py>>)> {
    let mut sources = Vec::with_capacity(frames.len());
    let mut owners = Vec::with_capacity(frames.len());
    for f in frames {
        let (src, owner) = source_of(py, f, None, None, None, None)?;
        sources.push(src);
        owners.push(owner);
    }
    Ok((sources, owners))
}

