//! The module's one context slot of a request (`r->ctx[ctx_index]`), typed. A job keeps its
//! state there between events (a remote read, an ingest, a streamed body, …); the slot holds
//! the value together with its type, and gives it back only as that type. Whatever the order
//! in which nginx calls a request's handlers, one job can never read another's state as its
//! own: a lookup of the wrong type finds nothing.

use std::any::TypeId;
use std::ffi::c_void;

use ngx::ffi::{ngx_http_request_t, ngx_palloc};

use super::pool::own_by_request;
use super::OriginError;

/// What the slot points at: a value and its type.
#[derive(Clone, Copy)]
struct Tagged {
    type_id: TypeId,
    value: *mut c_void,
}

fn slot(r: &ngx_http_request_t) -> *mut *mut c_void {
    // SAFETY: r->ctx has one slot per http module (nginx allocates it for every request of an
    // http block), ours at our module's ctx_index.
    unsafe { r.ctx.add(crate::module().ctx_index) }
}

/// Moves `value` into the request (see [`own_by_request`]) and makes it the request's
/// context; returns where it now is.
pub fn own<T: 'static>(r: &mut ngx_http_request_t, value: T) -> Result<*mut T, OriginError> {
    let value = own_by_request(r, value)?;
    set(r, value)?;
    Ok(value)
}

/// Makes `value`, which the request's pool owns, the request's context.
pub fn set<T: 'static>(r: &mut ngx_http_request_t, value: *mut T) -> Result<(), OriginError> {
    // SAFETY: a plain value from the request's pool, freed with it.
    let tagged = unsafe { ngx_palloc(r.pool, std::mem::size_of::<Tagged>()) } as *mut Tagged;
    if tagged.is_null() {
        return Err(OriginError::Internal("out of memory"));
    }
    // SAFETY: `tagged` was just allocated with room for a Tagged.
    unsafe {
        tagged.write(Tagged {
            type_id: TypeId::of::<T>(),
            value: value as *mut c_void,
        });
        *slot(r) = tagged as *mut c_void;
    }
    Ok(())
}

/// The request's context when it is a `T`.
pub fn get<T: 'static>(r: &ngx_http_request_t) -> Option<*mut T> {
    // SAFETY: the slot is null or points at a Tagged that `set` put in the request's pool
    // (nginx zeroes the slots of a new request, and no other code writes ours).
    unsafe {
        let tagged = *slot(r) as *const Tagged;
        if tagged.is_null() || (*tagged).type_id != TypeId::of::<T>() {
            return None;
        }
        Some((*tagged).value as *mut T)
    }
}

/// Empties the request's context (the value stays in the pool until the request ends).
pub fn clear(r: &mut ngx_http_request_t) {
    // SAFETY: as in `slot`.
    unsafe { *slot(r) = std::ptr::null_mut() };
}
