//! The thread-count setting shared by every kernel.
//!
//! Kernels run their parallel loops inside one rayon pool owned by this module.
//! Its size is, in order of precedence: the last [`set_num_threads`] call, the
//! `RAYON_NUM_THREADS` environment variable, or the number of available cores.
//! A fixed thread count gives bit-identical results run to run: work is split
//! into the same pieces whatever the timing.

use std::sync::{Arc, OnceLock, RwLock};

static POOL: OnceLock<RwLock<Arc<rayon::ThreadPool>>> = OnceLock::new();

fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(n: usize) -> Arc<rayon::ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .thread_name(|i| format!("strata-{i}"))
            .build()
            .expect("building a rayon pool only fails if threads cannot be spawned"),
    )
}

fn cell() -> &'static RwLock<Arc<rayon::ThreadPool>> {
    POOL.get_or_init(|| RwLock::new(build(default_threads())))
}

/// Sets the number of threads kernels use from now on (0 means "all cores").
pub fn set_num_threads(n: usize) {
    let n = if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    };
    let mut guard = cell().write().unwrap_or_else(|e| e.into_inner());
    if guard.current_num_threads() != n {
        *guard = build(n);
    }
}

/// The number of threads kernels currently use.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// The kernels' thread pool.
pub fn pool() -> Arc<rayon::ThreadPool> {
    cell().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `f` inside the kernels' pool, so rayon calls within it use that many threads.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        // Already on a pool thread (nested parallelism): don't re-enter.
        return f();
    }
    pool().install(f)
}
