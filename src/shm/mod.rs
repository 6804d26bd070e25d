//! Shared memory: memfd segments mapped by several processes, and futex doorbells on words in them.
//!
//! A [`Segment`] is an anonymous memfd (nothing is created under /dev/shm, so nothing leaks after a
//! crash) mapped `MAP_SHARED`; a child forked after mapping sees it at the same address. Raw access
//! to its bytes is this module's concern; structures placed in it are `#[repr(C)]` and located by
//! offset, since another process may map it elsewhere.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Errors creating or mapping a segment.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// memfd_create, ftruncate or mmap failed.
    #[error(
        "shared memory segment of {bytes} bytes: {op} failed: {source}; check RLIMIT_MEMLOCK/memory limits"
    )]
    Create {
        /// Requested size.
        bytes: usize,
        /// The failing step.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// The segment is larger than RLIMIT_FSIZE allows a file to grow.
    #[error(
        "shared memory segment of {bytes} bytes is larger than RLIMIT_FSIZE allows ({limit} bytes); raise it (ulimit -f) or use fewer ranks"
    )]
    FileSizeLimit {
        /// Requested size.
        bytes: usize,
        /// The soft limit, in bytes.
        limit: u64,
    },
}

/// The largest segment whose pages are allocated when it is created ([`Segment::create`]);
/// larger ones (hundreds of ranks) get their pages on first use.
pub const POPULATE_LIMIT: usize = 512 << 20;

/// A shared memory segment: a memfd mapped read-write and shared.
#[derive(Debug)]
pub struct Segment {
    fd: OwnedFd,
    map: memmap2::MmapRaw,
}

impl Segment {
    /// Creates a zero-filled segment of `bytes` bytes (rounded up to a page).
    pub fn create(name: &str, bytes: usize) -> Result<Segment, ShmError> {
        let page = rustix::param::page_size();
        // A size within a page of usize::MAX cannot be rounded up: refuse it like any size too
        // large to map.
        let Some(bytes) = bytes.max(1).div_ceil(page).checked_mul(page) else {
            return Err(ShmError::Create {
                bytes,
                op: "round up to a page",
                source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
            });
        };
        let err = |op| {
            move |e: std::io::Error| ShmError::Create {
                bytes,
                op,
                source: e,
            }
        };
        let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| err("memfd_create")(e.into()))?;
        // A memfd counts as a file: growing it past RLIMIT_FSIZE would not fail but kill this
        // process with SIGXFSZ, so check first.
        if let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Fsize).current
            && bytes as u64 > limit
        {
            return Err(ShmError::FileSizeLimit { bytes, limit });
        }
        rustix::fs::ftruncate(&fd, bytes as u64).map_err(|e| err("ftruncate")(e.into()))?;
        // Up to POPULATE_LIMIT, every page is allocated (and zeroed) now, before any rank maps
        // it: a rank's first use of an eager slot then costs a minor fault, not an allocation,
        // where on a VM that costs microseconds per page and a pair's 64 slots are 4 MiB. Where
        // the filesystem refuses, pages come on first use as before.
        if bytes <= POPULATE_LIMIT {
            let _ =
                rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, bytes as u64);
        }
        let file = std::fs::File::from(fd.try_clone().map_err(err("dup"))?);
        let map = memmap2::MmapOptions::new()
            .len(bytes)
            .map_raw(&file)
            .map_err(err("mmap"))?;
        Ok(Segment { fd, map })
    }

    /// Maps an existing memfd (inherited from the process that created it) in full.
    pub fn from_fd(fd: OwnedFd) -> Result<Segment, ShmError> {
        let file = std::fs::File::from(fd.try_clone().map_err(|source| ShmError::Create {
            bytes: 0,
            op: "dup",
            source,
        })?);
        let bytes = file
            .metadata()
            .map_err(|source| ShmError::Create {
                bytes: 0,
                op: "fstat",
                source,
            })?
            .len() as usize;
        let mut options = memmap2::MmapOptions::new();
        options.len(bytes.max(1));
        // Up to POPULATE_LIMIT, every page is mapped now (the first rank allocates them): a
        // rank's first use of an eager slot or ring cell then costs no page fault, where on a VM
        // one fault costs microseconds and a pair's 64 slots are 4 MiB.
        if bytes <= POPULATE_LIMIT {
            options.populate();
        }
        let map = options.map_raw(&file).map_err(|source| ShmError::Create {
            bytes,
            op: "mmap",
            source,
        })?;
        Ok(Segment { fd, map })
    }

    /// Another mapping of the same memory (a new descriptor and mapping, e.g. for a forked child
    /// that must own its segment).
    pub fn try_clone(&self) -> Result<Segment, ShmError> {
        let fd = self.fd.try_clone().map_err(|source| ShmError::Create {
            bytes: self.len(),
            op: "dup",
            source,
        })?;
        Segment::from_fd(fd)
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the segment is empty (never, once created).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The memfd, for passing to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// SAFETY: the mapping is plain shared memory; all access to its contents goes through atomics or
// through raw copies whose synchronisation is the user's protocol.
unsafe impl Send for Segment {}
// SAFETY: as above; `Segment` itself has no interior state besides the mapping.
unsafe impl Sync for Segment {}

/// Sleeps while `word` holds `expected`, for at most `timeout` (a shared, cross-process futex).
///
/// Returns early on a wake, a change of value, a signal, or the timeout; the caller re-checks.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = rustix::thread::futex::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    // Not FUTEX_PRIVATE: the word lives in memory shared between processes.
    let _ = rustix::thread::futex::wait(
        word,
        rustix::thread::futex::Flags::empty(),
        expected,
        Some(&ts),
    );
}

/// Wakes every process sleeping on `word`.
pub fn futex_wake(word: &AtomicU32) {
    let _ =
        rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
}

/// Whether the kernel offers the heavy half of the asymmetric fence behind
/// [`Doorbell::notify_light`]: `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` and its registration
/// (Linux 4.16 and later, unless a seccomp filter hides the system call).
fn heavy_barrier_supported() -> bool {
    use rustix::thread::{MembarrierCommand, membarrier_query};
    static SUPPORTED: crate::tools::Setting = crate::tools::Setting::new();
    SUPPORTED.get(|| {
        let q = membarrier_query();
        usize::from(
            q.contains_command(MembarrierCommand::GlobalExpedited)
                && q.contains_command(MembarrierCommand::RegisterGlobalExpedited),
        )
    }) == 1
}

/// Lets this process ring doorbells with [`Doorbell::notify_light`]: registers it for the
/// expedited global memory barrier that a process about to sleep issues in
/// [`Doorbell::announce_sleep`]. False where the kernel does not allow it; the process must then
/// use [`Doorbell::notify`]. Registration belongs to the address space and ends with `exec`, so
/// every process calls this for itself.
pub fn enable_light_notify() -> bool {
    use rustix::thread::{MembarrierCommand, membarrier};
    heavy_barrier_supported() && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
}

/// A word one side rings and the other sleeps on (a futex).
///
/// The sleeper announces itself in `sleepers` before sleeping so that the ringer only pays for a
/// wake system call when someone is actually asleep.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Doorbell {
    value: AtomicU32,
    sleepers: AtomicU32,
}

impl Doorbell {
    /// Wakes the owner if it is asleep or about to sleep, for an event published just before
    /// (by a Release store elsewhere, e.g. a ring record).
    ///
    /// The fence orders that store before the load of `sleepers`; it pairs with the SeqCst
    /// increment in [`Doorbell::announce_sleep`], after which the owner re-checks for events.
    pub fn notify(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.wake_sleepers();
    }

    /// [`Doorbell::notify`] without the full fence, for a process that [`enable_light_notify`]
    /// registered. The fence's work is done by the owner instead, once per sleep: its
    /// [`Doorbell::announce_sleep`] makes every registered process pass a full barrier, so an
    /// event published before a load of `sleepers` that missed the announcement is visible to the
    /// owner's re-check after it.
    ///
    /// The fence makes the caller wait until its event's cache line is its own; a rank sending
    /// record after record spent most of its time there (a 2-rank 8-byte broadcast: 0.15 µs a
    /// call with the fence, 0.09 without, when the two CPUs do not share a cache).
    pub fn notify_light(&self) {
        // Keeps the compiler from moving the load of `sleepers` above the caller's stores; the
        // processor may still do so, which the owner's barrier covers.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        self.wake_sleepers();
    }

    fn wake_sleepers(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.value.fetch_add(1, Ordering::SeqCst);
            futex_wake(&self.value);
        }
    }

    /// The owner's first step towards sleeping: registers as a sleeper and returns the value to
    /// sleep on. The owner must then re-check for events before [`Doorbell::sleep`], and call
    /// [`Doorbell::finish_sleep`] afterwards either way.
    pub fn announce_sleep(&self) -> u32 {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // The heavy half of the fence that `notify_light` leaves out: after it, every thread of
        // every registered process has passed a full barrier since our increment was visible. A
        // ringer whose load of `sleepers` came before that barrier published its event before it
        // too, and the owner's re-check sees the event; one whose load came after sees us.
        if heavy_barrier_supported() {
            use rustix::thread::{MembarrierCommand, membarrier};
            let _ = membarrier(MembarrierCommand::GlobalExpedited);
        }
        self.value.load(Ordering::SeqCst)
    }

    /// Sleeps unless a notification came after [`Doorbell::announce_sleep`] returned `seen`.
    pub fn sleep(&self, seen: u32, timeout: Duration) {
        futex_wait(&self.value, seen, timeout);
    }

    /// Ends a sleep begun with [`Doorbell::announce_sleep`].
    pub fn finish_sleep(&self) {
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// How many processes have announced a sleep on this bell and not finished it.
    pub fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::SeqCst)
    }
}

/// Copies `src` into the segment at `offset`.
///
/// # Safety
/// No other process or thread may access `[offset, offset + src.len())` during the call; the
/// caller's protocol (a slot handed over with Release/Acquire) guarantees it.
pub unsafe fn copy_in(segment: &Segment, offset: usize, src: &[u8]) {
    assert!(
        offset
            .checked_add(src.len())
            .is_some_and(|end| end <= segment.len())
    );
    // SAFETY: in bounds (checked above); exclusive access is the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), segment.as_ptr().add(offset), src.len()) };
}

/// Copies from the segment at `offset` into `dst`.
///
/// # Safety
/// No other process or thread may write `[offset, offset + dst.len())` during the call.
pub unsafe fn copy_out(segment: &Segment, offset: usize, dst: &mut [u8]) {
    assert!(
        offset
            .checked_add(dst.len())
            .is_some_and(|end| end <= segment.len())
    );
    // SAFETY: in bounds (checked above); no concurrent writer is the caller's contract.
    unsafe {
        std::ptr::copy_nonoverlapping(segment.as_ptr().add(offset), dst.as_mut_ptr(), dst.len())
    };
}

/// Copies from the segment at `offset` into `dst` with non-temporal stores where the processor
/// has them: the destination lines are written without being read first and without displacing
/// the cache, which matters when a large message streams into memory far bigger than the caches.
///
/// # Safety
/// As [`copy_out`].
pub unsafe fn copy_out_streaming(segment: &Segment, offset: usize, dst: &mut [u8]) {
    assert!(
        offset
            .checked_add(dst.len())
            .is_some_and(|end| end <= segment.len())
    );
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        // SAFETY: in bounds (checked above); no concurrent writer is the caller's contract. SSE2
        // is part of the x86_64 baseline. The streamed part of `dst` starts 16-byte aligned
        // (the head before it is copied normally) and ends before the last partial block.
        unsafe {
            let src = segment.as_ptr().add(offset);
            let head = dst.as_ptr().align_offset(16).min(dst.len());
            std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), head);
            let blocks = (dst.len() - head) / 16;
            let (s, d) = (src.add(head), dst.as_mut_ptr().add(head));
            for i in 0..blocks {
                let v = _mm_loadu_si128(s.add(16 * i) as *const __m128i);
                _mm_stream_si128(d.add(16 * i) as *mut __m128i, v);
            }
            // Order the streamed stores before whatever the caller publishes next.
            _mm_sfence();
            let done = head + 16 * blocks;
            std::ptr::copy_nonoverlapping(
                src.add(done),
                dst.as_mut_ptr().add(done),
                dst.len() - done,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as for `copy_out`.
    unsafe {
        copy_out(segment, offset, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_copy_matches_plain_copy_at_every_alignment() {
        let seg = Segment::create("onecopy-test", 1 << 16).expect("segment");
        let pattern: Vec<u8> = (0..(1 << 16)).map(|i| (i * 7 % 251) as u8).collect();
        // SAFETY: nobody else uses this private segment.
        unsafe { copy_in(&seg, 0, &pattern) };
        let mut dst = vec![0u8; 5000];
        for (src_off, dst_off, len) in [
            (0, 0, 4096),
            (3, 1, 4000),
            (17, 15, 33),
            (1, 0, 0),
            (64, 7, 15),
        ] {
            dst.fill(0xEE);
            // SAFETY: as above.
            unsafe { copy_out_streaming(&seg, src_off, &mut dst[dst_off..dst_off + len]) };
            assert_eq!(
                &dst[dst_off..dst_off + len],
                &pattern[src_off..src_off + len]
            );
            assert!(
                dst[..dst_off]
                    .iter()
                    .chain(&dst[dst_off + len..])
                    .all(|&b| b == 0xEE)
            );
        }
    }
}
