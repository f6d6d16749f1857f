//! The thread-count setting shared by every kernel.
//!
//! Kernels run their parallel loops inside one rayon pool owned by this module.
//! Its size is, in order of precedence: the last [`set_num_threads`] call, the
//! `RAYON_NUM_THREADS` environment variable, or the number of available cores.
//! A fixed thread count gives bit-identical results run to run: work is split
//! into the same pieces whatever the timing.

use std::sync::{Arc, OnceLock, RwLock};

static POOL: OnceLock<RwLock<Arc<rayon::ThreadPool>>> = OnceLock::new();

/// The largest thread count accepted: beyond it a pool costs seconds to start
/// and megabytes of stacks per thread for no gain on any current machine.
pub const MAX_THREADS: usize = 1024;

/// Why [`try_set_num_threads`] refused a thread count.
#[derive(Debug, thiserror::Error)]
pub enum ThreadsError {
    /// More than [`MAX_THREADS`] were asked for.
    #[error("{0} threads asked for; at most {MAX_THREADS} are allowed (0: all cores)")]
    TooMany(usize),
    /// The operating system would not start the threads.
    #[error("could not start {0} threads: {1}")]
    Spawn(usize, String),
}

fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(all_cores)
        .min(MAX_THREADS)
}

fn build(n: usize) -> Result<Arc<rayon::ThreadPool>, ThreadsError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name(|i| format!("strata-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| ThreadsError::Spawn(n, e.to_string()))
}

fn cell() -> &'static RwLock<Arc<rayon::ThreadPool>> {
    POOL.get_or_init(|| {
        // A default the system cannot honour falls back to one worker.
        let pool = build(default_threads())
            .or_else(|_| build(1))
            .expect("the system cannot start a single worker thread");
        RwLock::new(pool)
    })
}

/// Sets the number of threads kernels use from now on (0 means "all cores").
///
/// Refuses (keeping the current pool) more than [`MAX_THREADS`] or a count the
/// system cannot start.
pub fn try_set_num_threads(n: usize) -> Result<(), ThreadsError> {
    let n = if n == 0 { all_cores() } else { n };
    if n > MAX_THREADS {
        return Err(ThreadsError::TooMany(n));
    }
    let mut guard = cell().write().unwrap_or_else(|e| e.into_inner());
    if guard.current_num_threads() != n {
        *guard = build(n)?;
    }
    Ok(())
}

/// Sets the number of threads kernels use from now on (0 means "all cores"),
/// clamped to [`MAX_THREADS`]; if the system cannot start them the current
/// pool stays. [`try_set_num_threads`] reports those cases instead.
pub fn set_num_threads(n: usize) {
    let n = if n == 0 { all_cores() } else { n };
    let _ = try_set_num_threads(n.min(MAX_THREADS));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_threads_are_refused_and_the_pool_stays() {
        let before = num_threads();
        let e = try_set_num_threads(MAX_THREADS + 1).unwrap_err();
        assert!(matches!(e, ThreadsError::TooMany(n) if n == MAX_THREADS + 1));
        assert!(e.to_string().contains("at most 1024"), "{e}");
        assert_eq!(num_threads(), before);
    }
}
