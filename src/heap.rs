//! The process heap: giving freed pages back to the system.

/// Gives free heap pages back to the system (glibc only; elsewhere nothing).
/// glibc keeps what a burst of allocations freed (a collection round, the
/// parse of a large module file) as resident memory. It walks the heap:
/// call it off the async threads.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim takes no pointers; it only releases free pages
        // of glibc's own heap.
        unsafe {
            malloc_trim(0);
        }
    }
}
