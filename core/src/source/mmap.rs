//! The one place the core uses `unsafe`: mapping a file, and surviving the file being
//! truncated while it is mapped. [`Mapping::new`] is called by the constructors of
//! [`MmapSource`](super::MmapSource), which drivers call to supply a local file (the request
//! engine maps nothing itself).
//!
//! Touching a page of a file mapping that lies past the file's current end raises SIGBUS, and
//! the default action kills the process: an nginx worker, with every request it carries.
//! Operators do truncate files in place (`cp new.mp4 live.mp4`, `rsync --inplace`, editors),
//! so every mapping is registered in a fixed table, and a SIGBUS handler installed with the
//! first mapping recognises a fault inside a registered mapping: it maps a page of zeros over
//! the faulting page, so the interrupted copy can finish, and marks the mapping *poisoned*.
//! Whoever copied from the mapping checks [`Mapping::is_poisoned`] once the copy is done and
//! throws the result away: bytes that were not in the file never leave the worker. A fault
//! anywhere else is not ours: the previous disposition is restored and the fault re-raised, so
//! genuine crashes still crash (and dump core) as before.
//!
//! The kernel's own copies out of a mapping (writev to a socket) fail with EFAULT instead of
//! raising a signal, so buffers that point into a mapping may be handed to plain-socket writes;
//! copies in user space (TLS, compressing filters) must be made by code that checks the flag.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Most mappings alive at once in one process. A full table makes [`Mapping::new`] fail, and
/// callers read the file with pread instead.
const SLOTS: usize = 4096;

/// One registered mapping: `[start, end)`, and whether a fault was absorbed inside it. `end`
/// is 0 while a slot is free or being (un)registered, so the handler never matches a slot in
/// flux.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    poisoned: AtomicBool,
    taken: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    poisoned: AtomicBool::new(false),
    taken: AtomicBool::new(false),
};
static SLOTS_TABLE: [Slot; SLOTS] = [FREE; SLOTS];
/// One past the highest slot ever taken: the handler scans only this far.
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
/// Whether the handler is in place (installation can fail, e.g. under a seccomp sandbox).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The disposition SIGBUS had before ours, called for faults that are not ours.
static mut PREVIOUS: Option<libc::sigaction> = None;

/// Installs the SIGBUS handler once per process.
fn install_guard() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE_SIZE.store(page as usize, Ordering::Relaxed);
        }
        let installed = install_in_order(&mut ProcessSignals, |old| {
            // SAFETY: PREVIOUS is written once, here, before our handler is installed (so
            // before it can run and read it), and only read afterwards.
            unsafe { PREVIOUS = Some(old) }
        });
        INSTALLED.store(installed, Ordering::Release);
    });
}

/// The two `sigaction` calls the guard makes, apart so their order can be tested.
trait SignalTable {
    /// SIGBUS's disposition now.
    fn current(&mut self) -> Option<libc::sigaction>;
    /// Makes `action` SIGBUS's disposition; true when it took.
    fn install(&mut self, action: &libc::sigaction) -> bool;
}

/// The process's own signal table.
struct ProcessSignals;

impl SignalTable for ProcessSignals {
    fn current(&mut self) -> Option<libc::sigaction> {
        // SAFETY: a NULL new action only reads the disposition into `old`, a zeroed value
        // sigaction fills in.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            (libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) == 0).then_some(old)
        }
    }

    fn install(&mut self, action: &libc::sigaction) -> bool {
        // SAFETY: `action` is a filled-in sigaction whose handler is async-signal-safe.
        unsafe { libc::sigaction(libc::SIGBUS, action, std::ptr::null_mut()) == 0 }
    }
}

/// Stores the previous disposition, then installs ours: a fault that is not ours, arriving
/// the moment our handler is in place, already finds the disposition to hand it to.
fn install_in_order(
    table: &mut impl SignalTable,
    store_previous: impl FnOnce(libc::sigaction),
) -> bool {
    let Some(old) = table.current() else {
        return false;
    };
    store_previous(old);
    // SAFETY: a zeroed sigaction is a valid "no handler" value that we fill in.
    let action = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        libc::sigemptyset(&mut action.sa_mask);
        action
    };
    table.install(&action)
}

/// The SIGBUS handler. Async-signal-safe: atomics, `mmap` and `sigaction` only.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE_SIZE.load(Ordering::Relaxed);
    let high = HIGH_WATER.load(Ordering::Acquire).min(SLOTS);
    for slot in &SLOTS_TABLE[..high] {
        let end = slot.end.load(Ordering::Acquire);
        let start = slot.start.load(Ordering::Acquire);
        if end == 0 || addr < start || addr >= end {
            continue;
        }
        let page_start = addr & !(page - 1);
        // SAFETY: the page lies inside a live mapping this module made (the slot is registered
        // for exactly that range); replacing it with an anonymous read-only page of zeros keeps
        // the address range mapped, and the mapping's munmap later releases it with the rest.
        let zero = unsafe {
            libc::mmap(
                page_start as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if zero != libc::MAP_FAILED {
            slot.poisoned.store(true, Ordering::Release);
            return;
        }
        break;
    }
    // Not a fault in one of our mappings: behave as if we had never been here.
    // SAFETY: PREVIOUS was set before this handler was installed and is never written again.
    unsafe {
        let previous = std::ptr::addr_of!(PREVIOUS).read();
        match previous {
            Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
                if old.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(old.sa_sigaction);
                    f(signal, info, context);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(old.sa_sigaction);
                    f(signal);
                }
            }
            _ => {
                // Returning re-executes the faulting access, which now takes the default
                // action: the process dies with SIGBUS, as it would have without us.
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            }
        }
    }
}

/// Takes a free slot for `[start, end)`.
fn register(start: usize, end: usize) -> Option<usize> {
    for (i, slot) in SLOTS_TABLE.iter().enumerate() {
        if slot
            .taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            slot.poisoned.store(false, Ordering::Relaxed);
            slot.start.store(start, Ordering::Release);
            slot.end.store(end, Ordering::Release);
            HIGH_WATER.fetch_max(i + 1, Ordering::AcqRel);
            return Some(i);
        }
    }
    None
}

fn unregister(i: usize) {
    let slot = &SLOTS_TABLE[i];
    slot.end.store(0, Ordering::Release);
    slot.start.store(0, Ordering::Release);
    slot.taken.store(false, Ordering::Release);
}

/// A read-only mapping of a whole file, registered with the truncation guard.
pub struct Mapping {
    map: Option<memmap2::Mmap>,
    slot: usize,
}

impl Mapping {
    pub fn new(file: &File) -> io::Result<Mapping> {
        if file.metadata()?.len() == 0 {
            // mmap of length 0 fails; an empty file is simply empty.
            return Ok(Mapping {
                map: None,
                slot: usize::MAX,
            });
        }
        install_guard();
        if !INSTALLED.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "cannot guard file mappings (SIGBUS handler not installed); reading with pread",
            ));
        }
        // SAFETY: the mapping is read-only and private to this process. If another process
        // truncates the file, touching the lost pages raises SIGBUS; the guard above absorbs it
        // for registered mappings, so the mapping is registered before anyone can read it.
        let map = unsafe { memmap2::Mmap::map(file)? };
        let start = map.as_ptr() as usize;
        let Some(slot) = register(start, start + map.len()) else {
            return Err(io::Error::other(
                "too many files mapped at once; reading with pread",
            ));
        };
        Ok(Mapping {
            map: Some(map),
            slot,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// True once a read touched a page the file no longer has: bytes read from the mapping
    /// since may be zeros that were never in the file.
    pub fn is_poisoned(&self) -> bool {
        self.slot != usize::MAX && SLOTS_TABLE[self.slot].poisoned.load(Ordering::Acquire)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.slot != usize::MAX {
            // Unregister before unmapping: the range may be mapped by someone else next.
            unregister(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A signal table in which a SIGBUS that is not ours arrives the moment a handler is
    /// installed: the handler then needs the previous disposition already stored.
    struct FaultOnInstall<'a> {
        stored: &'a std::cell::Cell<Option<usize>>,
        previous: libc::sigaction,
        handled_by_previous: Option<bool>,
    }

    impl SignalTable for FaultOnInstall<'_> {
        fn current(&mut self) -> Option<libc::sigaction> {
            Some(self.previous)
        }
        fn install(&mut self, action: &libc::sigaction) -> bool {
            assert_eq!(action.sa_sigaction, on_sigbus as *const () as usize);
            self.handled_by_previous = Some(self.stored.get() == Some(self.previous.sa_sigaction));
            true
        }
    }

    #[test]
    fn the_previous_handler_is_stored_before_ours_is_installed() {
        extern "C" fn previous_handler(_: libc::c_int) {}
        // SAFETY: a zeroed sigaction with a handler set is a valid value.
        let previous = unsafe {
            let mut a: libc::sigaction = std::mem::zeroed();
            a.sa_sigaction = previous_handler as *const () as usize;
            a
        };
        let stored = std::cell::Cell::new(None);
        let mut table = FaultOnInstall {
            stored: &stored,
            previous,
            handled_by_previous: None,
        };
        assert!(install_in_order(&mut table, |old| stored.set(Some(old.sa_sigaction))));
        assert_eq!(table.handled_by_previous, Some(true));
    }

    #[test]
    fn a_truncated_mapping_reads_zeros_and_is_poisoned() {
        let dir = std::env::temp_dir().join(format!("origin-guard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.bin");
        let page = PAGE_SIZE.load(Ordering::Relaxed).max(4096);
        let data = vec![0xabu8; page * 4];
        File::create(&path).unwrap().write_all(&data).unwrap();
        let file = File::open(&path).unwrap();
        let map = Mapping::new(&file).unwrap();
        assert_eq!(map.as_slice()[page * 3], 0xab);
        assert!(!map.is_poisoned());
        // Truncate in place, as `cp` onto an existing file does.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(page as u64)
            .unwrap();
        let mut copy = vec![0u8; page * 4];
        copy.copy_from_slice(map.as_slice());
        assert!(map.is_poisoned());
        assert_eq!(copy[0], 0xab, "bytes still in the file are read");
        assert!(copy[page * 2..].iter().all(|&b| b == 0));
        drop(map);
        // A new mapping of the (shorter) file is clean.
        let again = Mapping::new(&File::open(&path).unwrap()).unwrap();
        assert!(!again.is_poisoned());
        assert_eq!(again.as_slice().len(), page);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slots_are_reused() {
        let dir = std::env::temp_dir().join(format!("origin-slots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.bin");
        File::create(&path).unwrap().write_all(&[1u8; 100]).unwrap();
        for _ in 0..(SLOTS + 10) {
            let m = Mapping::new(&File::open(&path).unwrap()).unwrap();
            assert_eq!(m.as_slice()[99], 1);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
