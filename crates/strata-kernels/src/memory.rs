//! Keeping freed memory for reuse across training steps.
//!
//! A training step allocates tens of megabytes of activations and gradients
//! and frees them all when its tape is dropped. With glibc's default settings
//! the freed top of the heap is handed back to the kernel (and buffers above
//! the mmap threshold are unmapped), so the next step page-faults and zeroes
//! every page again — measured at up to 45 % of a CNN step on a 2-core
//! machine (`benches/RESULTS.md`). [`retain_freed_memory`] tells the allocator
//! to keep that memory: the process stays at its peak footprint (as a caching
//! allocator would) and later steps reuse the same pages.

use std::sync::Once;

/// Configures the C allocator, once per process, to keep freed memory for
/// reuse instead of returning it to the operating system: no heap trimming,
/// and the largest mmap threshold glibc allows (32 MiB) so that big buffers
/// come from the reusable heap. Called when the first tape is built; a no-op
/// on other C libraries. Setting `STRATA_KEEP_FREED_MEMORY=0` disables it.
pub fn retain_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("STRATA_KEEP_FREED_MEMORY").is_some_and(|v| v == "0") {
            return;
        }
        configure();
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn configure() {
    use std::ffi::c_int;
    // <malloc.h>
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_TOP_PAD: c_int = -2;
    const M_MMAP_THRESHOLD: c_int = -3;
    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    // SAFETY: mallopt only changes allocator parameters; glibc rejects
    // out-of-range values by returning 0, which leaves the defaults.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, c_int::MAX);
        mallopt(M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn configure() {}
