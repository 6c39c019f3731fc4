//! Live channels in the worker: the reader of channel archives (one per worker, keeping what
//! did not change between requests) and the Live API's reports (`state`, `archive`,
//! `statistics`).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use origin_core::live::channel::{ChannelReader, ChannelSnapshot};

use crate::status::OriginError;

thread_local! {
    static READER: RefCell<ChannelReader> = RefCell::new(ChannelReader::new());
}

/// The channel whose server manifest is `isml`, as its archive is now.
pub fn snapshot(isml: &str) -> Result<Arc<ChannelSnapshot>, OriginError> {
    let now = now_ms();
    READER.with(|reader| {
        let mut snapshot = reader
            .borrow_mut()
            .snapshot(Path::new(isml))
            .map_err(|source| OriginError::Io {
                path: isml.to_string(),
                source,
            })?;
        snapshot.now_ms = now;
        Ok(Arc::new(snapshot))
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
