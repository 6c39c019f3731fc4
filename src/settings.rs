//! The module's configuration and the worker state it sizes: above [`crate::ffi`], below the
//! layers that respond and run jobs.
//!
//! - [`conf`]: the directives, the location and `http` configurations (their values decided by
//!   the core's `config`), and where they are looked up for a request;
//! - [`files`]: opening files as nginx's static module does, and mapping a URI to a file name;
//! - [`caches`]: the worker's caches of indexes, manifests and generated answers;
//! - [`metrics`]: the status counters, summed over workers in shared memory.

pub mod caches;
pub mod conf;
pub mod files;
pub mod metrics;
