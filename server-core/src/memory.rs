//! Process memory tuning, so that an idle server stays small on a family computer.
//!
//! Every password hash (argon2id, [`crate::crypto`]) allocates and frees 19 MiB of working
//! memory. glibc's `malloc` raises its mmap threshold the first time such a block is freed,
//! and from then on serves blocks of that size from its heap and keeps them after `free`:
//! a server that has hashed two passwords stayed 20 MiB bigger for good (measured: 9.6 MiB
//! after start, 30 MiB after two registrations). A fixed threshold keeps every large block
//! in a mapping of its own, which goes back to the system as soon as it is freed. Other
//! platforms' allocators already return large blocks, so this is a no-op there.

/// Blocks at least this big get their own mapping. Smaller ones (request buffers, SQLite
/// pages) stay on the heap, where reuse is cheap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Makes the allocator return large freed blocks to the system. Idempotent and cheap;
/// [`crate::control::start`] calls it.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: `mallopt` only sets a tuning parameter under glibc's own arena lock;
            // it is safe to call at any time from any thread, and it reads no pointers.
            #[allow(unsafe_code)]
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
            if ok != 1 {
                tracing::warn!("could not set malloc's mmap threshold; idle memory may stay high");
            }
        });
    }
}
