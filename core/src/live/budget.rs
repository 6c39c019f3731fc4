//! The memory a worker lets its ingest requests hold for fragments they have not finished
//! receiving (the box in progress, fragments waiting for assembly, pieces queued for the
//! archive). Each request has a share; a request whose share grows past what is left is
//! refused: 503 when others hold the rest (a retry may pass), 413 when it alone needs more
//! than the whole budget.

use super::ingest::IngestError;

/// Default budget per worker.
pub const DEFAULT_INGEST_MEMORY: u64 = 64 << 20;

/// One worker's budget and what its requests hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    limit: u64,
    used: u64,
}

impl MemoryBudget {
    pub const fn new(limit: u64) -> MemoryBudget {
        MemoryBudget { limit, used: 0 }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// What the worker's requests hold.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// A request's holding is now `now` bytes (was `*share`). It is refused when it grew past
    /// the budget while receiving a box (`unfinished`); its share then stays counted until
    /// [`MemoryBudget::release`].
    pub fn update(
        &mut self,
        share: &mut u64,
        now: u64,
        unfinished: bool,
    ) -> Result<(), IngestError> {
        let grew = now > *share;
        self.used = self.used.saturating_sub(*share).saturating_add(now);
        *share = now;
        if !(grew && unfinished && self.used > self.limit) {
            return Ok(());
        }
        if now > self.limit {
            return Err(IngestError::TooLarge {
                what: "the memory an unfinished fragment needs",
                offset: 0,
                size: now,
                limit: self.limit,
            });
        }
        Err(IngestError::Busy(format!(
            "the worker's ingest memory budget ({} bytes) is taken: unfinished fragments hold {} \
             bytes, this request {now}",
            self.limit, self.used
        )))
    }

    /// A request ends: its share is free.
    pub fn release(&mut self, share: &mut u64) {
        self.used = self.used.saturating_sub(*share);
        *share = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<(), IngestError>) -> u16 {
        r.map_or_else(|e| crate::Error::from(e).status(), |()| 200)
    }

    #[test]
    fn shares_add_up_and_the_one_that_grows_past_the_budget_is_refused() {
        let mut b = MemoryBudget::new(100);
        let (mut one, mut two) = (0, 0);
        assert_eq!(status(b.update(&mut one, 60, true)), 200);
        assert_eq!(status(b.update(&mut two, 30, true)), 200);
        assert_eq!(b.used(), 90);
        // Past the budget while others hold the rest: 503.
        assert_eq!(status(b.update(&mut two, 50, true)), 503);
        // Shrinking, or holding only finished fragments, is never refused.
        assert_eq!(status(b.update(&mut one, 55, true)), 200);
        assert_eq!(status(b.update(&mut one, 70, false)), 200);
        b.release(&mut two);
        assert_eq!((b.used(), two), (70, 0));
        // More than the whole budget by itself: 413.
        b.release(&mut one);
        assert_eq!(status(b.update(&mut one, 101, true)), 413);
        b.release(&mut one);
        assert_eq!(b.used(), 0);
    }
}
