//! jarvis-rust-core: the shared-memory frame ring of jarvis-pipeline.
//!
//! The pure Rust core (`ring`, `slot`, `frame_buffer`) builds and tests without
//! Python; the `python` feature (turned on by maturin) adds the bindings that
//! make up the `jarvis_rust_core` extension module.

pub mod sync;
pub mod slot;
pub mod handoff;

#[cfg(not(loom))]
pub mod bloom;
#[cfg(not(loom))]
pub mod changes;
#[cfg(not(loom))]
pub mod error;
#[cfg(not(loom))]
pub mod frame;
#[cfg(not(loom))]
pub mod frame_buffer;

#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(not(loom))]
pub mod fresh;
#[cfg(not(loom))]
pub mod kernels;
#[cfg(not(loom))]
pub(crate) mod layout;
#[cfg(not(loom))]
pub mod regions;
#[cfg(not(loom))]
pub mod resize;
#[cfg(not(loom))]
pub mod ring;
#[cfg(not(loom))]
mod shm;
#[cfg(not(loom))]
pub mod wire;

#[cfg(all(feature = "python", not(loom)))]
mod python;

/// Version of the crate, exported to Python as `jarvis_rust_core.__version__`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
