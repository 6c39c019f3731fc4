//! The lowest layer of the glue: what every part of it needs from nginx, knowing nothing of
//! the module's configuration or jobs.
//!
//! - [`strings`]: nginx strings as bytes, and copies of bytes in the request's pool;
//! - [`pool`]: values, buffers and chain links owned by a request's pool;
//! - [`ctx`]: the module's one context slot of a request, typed;
//! - [`body`]: the request body nginx read (memory buffers or its temporary file);
//! - [`time`]: the clock and HTTP dates;
//! - [`fence`]: the panic fence every `extern "C"` entry runs in;
//! - [`log`]: `tracing` events into nginx's error log;
//! - [`offload`]: blocking work on nginx's thread pool;
//! - [`watch`]: requests held until a live channel changes (inotify in the event loop).

pub mod body;
pub mod ctx;
pub mod fence;
pub mod log;
pub mod offload;
pub mod pool;
pub mod strings;
pub mod time;
pub mod watch;

/// The one error a request ends with (the core's: every layer's errors joined, with their
/// status and token).
pub use origin_core::Error as OriginError;
