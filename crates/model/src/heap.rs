//! Returning freed heap memory to the kernel.

/// Gives the heap's free pages back to the kernel. glibc keeps what it once served from
/// its heaps resident after it is freed (it only trims the top of the main heap), so
/// without this the transient buffers of a load or a large step stay in RSS.
pub fn return_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
