//! glibc heap policy for a long-running daemon with many short-lived threads.
//!
//! Every GStreamer streaming thread that allocates gets its own glibc malloc
//! arena (up to 8 per core), and memory freed into an arena stays mapped.
//! A session's threads therefore leave several MiB behind that no later
//! session reuses: RSS grows with every viewer although nothing leaks.
//! Two arenas bound that, and trimming after a teardown returns what the
//! session freed.

/// Caps glibc at two malloc arenas. Call once at start-up, before threads.
pub fn limit_arenas() {
    // M_ARENA_MAX is -8 in glibc's malloc.h; the libc crate names it on gnu.
    // SAFETY: mallopt only changes allocator tunables; it is called before
    // the process starts other threads.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap memory to the kernel (after a session's teardown).
pub fn trim() {
    // SAFETY: malloc_trim is thread-safe and has no preconditions.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}
