//! glibc heap policy for a long-running daemon with many short-lived threads.
//!
//! Every GStreamer streaming thread that allocates gets its own glibc malloc
//! arena (up to 8 per core), and memory freed into an arena stays mapped.
//! A session's threads therefore leave several MiB behind that no later
//! session reuses: RSS grows with every viewer although nothing leaks.
//! One arena bounds that, and trimming after a teardown returns what the
//! session freed. Measured over 100 sessions (docs/benchmarks.md): with two
//! arenas anonymous RSS still stepped up by 1-5 MiB in the first sessions
//! before it levelled off (each arena keeps its own high-water mark); with
//! one it grew 0.7 MiB, with no measurable cost in CPU or time to first
//! frame (the streaming threads allocate little per frame).

/// Caps glibc at one malloc arena. Call once at start-up, before threads.
pub fn limit_arenas() {
    // M_ARENA_MAX is -8 in glibc's malloc.h; the libc crate names it on gnu.
    // SAFETY: mallopt only changes allocator tunables; it is called before
    // the process starts other threads.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
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
