//! Large response buffers a worker keeps for its next responses. A segment made in memory (an
//! encrypted fragment) is hundreds of kilobytes to megabytes; a fresh allocation each time
//! makes the allocator map new pages and the kernel fault and zero every one of them, which
//! costs more than encrypting them. The glue hands each buffer back when nginx has sent it.

use std::cell::RefCell;

/// Buffers kept per thread (a worker serves from one thread): enough for the responses and
/// remote reads of a few requests in flight.
const SPARE: usize = 8;
/// Sizes are rounded up to this, so buffers of similar requests fit each other.
const GRAIN: usize = 64 << 10;
/// Larger buffers are freed rather than kept.
const MAX_KEPT: usize = 32 << 20;

thread_local! {
    static SPARES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of at least `capacity` bytes, reused when the thread has one.
pub fn take(capacity: usize) -> Vec<u8> {
    let reused = SPARES
        .try_with(|s| {
            let mut spares = s.borrow_mut();
            let at = spares.iter().position(|b| b.capacity() >= capacity)?;
            Some(spares.swap_remove(at))
        })
        .ok()
        .flatten();
    match reused {
        Some(mut b) => {
            b.clear();
            b
        }
        None => Vec::with_capacity(capacity.next_multiple_of(GRAIN)),
    }
}

/// Gives a buffer back for later responses.
pub fn give(mut buffer: Vec<u8>) {
    if buffer.capacity() < 64 << 10 || buffer.capacity() > MAX_KEPT {
        return;
    }
    buffer.clear();
    let _ = SPARES.try_with(|s| {
        let mut spares = s.borrow_mut();
        if spares.len() < SPARE {
            spares.push(buffer);
        } else if let Some(smallest) = spares
            .iter_mut()
            .min_by_key(|b| b.capacity())
            .filter(|b| b.capacity() < buffer.capacity())
        {
            *smallest = buffer;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again() {
        let b = take(100 << 10);
        let ptr = b.as_ptr();
        give(b);
        let again = take(90 << 10);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
        // Too small to keep, or bigger than any kept: fresh.
        give(Vec::with_capacity(10));
        let big = take(200 << 10);
        assert!(big.capacity() >= 200 << 10);
    }
}
