//! Recycled element buffers: the storage of a dropped tensor is kept and
//! handed to the next op that asks for a buffer of about its size.
//!
//! A training step allocates the same large activations and gradients every
//! time; taking them from the allocator costs a zero fill per buffer (calloc
//! on reused heap memory), a whole extra pass over memory that the op then
//! overwrites. [`take`] returns a buffer whose contents are unspecified — but
//! always initialised values (recycled storage, or zeros) — for ops that
//! write every element. Only buffers that [`take`] handed out come back
//! (like a caching allocator, so the lists never fill up with buffers nobody
//! asks for), only those of at least [`MIN_BYTES`] are kept, and
//! at most [`limit_bytes`] in all (oldest dropped first); [`release_all`]
//! gives them back to the allocator. The cap starts at a quarter of the
//! machine's memory (1 GiB where that is unknown), or at
//! `STRATA_RECYCLE_MB` mebibytes when that variable is set (0 turns
//! recycling off).
//!
//! With debug assertions on (the test profile), [`take`] fills its buffer
//! with NaN, so an op that reads an element it never wrote shows up in the
//! tests instead of passing on a lucky zero.

use crate::Element;
use std::any::Any;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Smallest buffer worth keeping (64 KiB): below it the allocator's own
/// free lists are as fast and a zero fill is cheap.
pub const MIN_BYTES: usize = 64 << 10;

/// Default cap on the bytes held for reuse when the machine's memory is
/// unknown (1 GiB); otherwise a quarter of it (a batch-1024 CIFAR-10 step
/// of examples/cifar10-fast.toml cycles through several GiB, and past the cap
/// every step pays page faults on fresh memory).
const DEFAULT_LIMIT: usize = 1 << 30;

/// A quarter of the physical memory (`MemTotal` of /proc/meminfo), at
/// least [`DEFAULT_LIMIT`].
fn default_limit() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024) / 4)
        })
        .map_or(DEFAULT_LIMIT, |q| q.max(DEFAULT_LIMIT))
}

/// The cap; `UNSET` until first read (then from `STRATA_RECYCLE_MB`).
static LIMIT: AtomicUsize = AtomicUsize::new(UNSET);
const UNSET: usize = usize::MAX;

fn limit() -> usize {
    let l = LIMIT.load(Ordering::Relaxed);
    if l != UNSET {
        return l;
    }
    let from_env = std::env::var("STRATA_RECYCLE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or_else(default_limit, |mb| {
            mb.saturating_mul(1 << 20).min(UNSET - 1)
        });
    // A concurrent `set_limit_bytes` wins over the environment.
    match LIMIT.compare_exchange(UNSET, from_env, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => from_env,
        Err(now) => now,
    }
}

/// Free buffers of each element type, oldest first, their total bytes, and
/// the addresses of the buffers [`take`] allocated (the only ones kept).
#[derive(Default)]
struct Free {
    f32: Vec<Vec<f32>>,
    f64: Vec<Vec<f64>>,
    bytes: usize,
    ours: BTreeSet<usize>,
}

/// Most addresses remembered: a taken buffer that is freed some other way
/// leaves a stale one behind, so the set is cleared when it grows past this.
const MAX_OURS: usize = 1 << 12;

impl Free {
    fn list<T: Element>(&mut self) -> Option<&mut Vec<Vec<T>>> {
        if let Some(l) = (&mut self.f32 as &mut dyn Any).downcast_mut::<Vec<Vec<T>>>() {
            return Some(l);
        }
        (&mut self.f64 as &mut dyn Any).downcast_mut::<Vec<Vec<T>>>()
    }

    /// Drops buffers, oldest first (f32 before f64), until at most `limit`
    /// bytes are held.
    fn trim(&mut self, limit: usize) {
        while self.bytes > limit {
            let (addr, freed) = if !self.f32.is_empty() {
                let v = self.f32.remove(0);
                (v.as_ptr() as usize, v.capacity() * 4)
            } else if !self.f64.is_empty() {
                let v = self.f64.remove(0);
                (v.as_ptr() as usize, v.capacity() * 8)
            } else {
                break;
            };
            self.ours.remove(&addr);
            self.bytes -= freed;
        }
    }
}

static FREE: Mutex<Free> = Mutex::new(Free {
    f32: Vec::new(),
    f64: Vec::new(),
    bytes: 0,
    ours: BTreeSet::new(),
});

fn free() -> std::sync::MutexGuard<'static, Free> {
    // A panic while holding the lock leaves the lists consistent (every
    // mutation is a push, a remove or a counter update), so poisoning is moot.
    FREE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A buffer of `len` elements whose contents are unspecified (NaN with debug
/// assertions on): the caller must write every element before reading it.
///
/// Reuses the smallest kept buffer that holds `len` elements without wasting
/// more than half of it, else allocates.
pub fn take<T: Element>(len: usize) -> Vec<T> {
    let keep = len * size_of::<T>() >= MIN_BYTES && limit() > 0;
    let mut v = if keep {
        let mut f = free();
        let found = f.list::<T>().and_then(|l| {
            let best = l
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len && v.capacity() / 2 <= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i)?;
            Some(l.swap_remove(best))
        });
        if let Some(v) = &found {
            f.bytes -= v.capacity() * size_of::<T>();
        }
        found.unwrap_or_default()
    } else {
        Vec::new()
    };
    if v.capacity() == 0 {
        v = vec![T::zero(); len];
        if keep {
            let mut f = free();
            if f.ours.len() >= MAX_OURS {
                f.ours.clear();
            }
            f.ours.insert(v.as_ptr() as usize);
        }
    } else if v.len() >= len {
        v.truncate(len);
    } else {
        v.resize(len, T::zero());
    }
    if cfg!(debug_assertions) {
        v.fill(T::nan());
    }
    v
}

/// Keeps `v` for a later [`take`] if [`take`] allocated it and the cap allows.
pub(crate) fn give<T: Element>(v: Vec<T>) {
    let bytes = v.capacity() * size_of::<T>();
    let limit = limit();
    if bytes < MIN_BYTES || bytes > limit {
        return;
    }
    let mut f = free();
    if !f.ours.contains(&(v.as_ptr() as usize)) {
        return;
    }
    let Some(list) = f.list::<T>() else { return };
    list.push(v);
    f.bytes += bytes;
    f.trim(limit);
}

/// Bytes currently held for reuse.
pub fn held_bytes() -> usize {
    free().bytes
}

/// The cap on bytes held for reuse (1 GiB unless changed).
pub fn limit_bytes() -> usize {
    limit()
}

/// Sets the cap on bytes held for reuse (0 turns recycling off) and drops
/// buffers beyond it.
pub fn set_limit_bytes(limit: usize) {
    let limit = limit.min(UNSET - 1);
    LIMIT.store(limit, Ordering::Relaxed);
    free().trim(limit);
}

/// Gives every kept buffer back to the allocator.
pub fn release_all() {
    let mut guard = free();
    let f = &mut *guard;
    for v in &f.f32 {
        f.ours.remove(&(v.as_ptr() as usize));
    }
    for v in &f.f64 {
        f.ours.remove(&(v.as_ptr() as usize));
    }
    f.f32 = Vec::new();
    f.f64 = Vec::new();
    f.bytes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    // The lists are process-wide, so these tests only check properties that
    // hold whatever other tests do meanwhile.

    #[test]
    fn take_gives_the_requested_length_and_small_ones_bypass_the_lists() {
        for len in [0, 1, 100, MIN_BYTES / 4, MIN_BYTES / 4 + 7, 1 << 20] {
            let v = take::<f32>(len);
            assert_eq!(v.len(), len);
            if cfg!(debug_assertions) {
                assert!(v.iter().all(|x| x.is_nan()), "poisoned in debug builds");
            }
            give(v);
        }
        let v = take::<f64>(3);
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn a_taken_buffer_comes_back_and_a_foreign_one_does_not() {
        let len = 300_000;
        let v = take::<f32>(len);
        let ptr = v.as_ptr() as usize;
        give(v);
        // Another test may take it first; otherwise it is held.
        let held = |p: usize| free().f32.iter().any(|v| v.as_ptr() as usize == p);
        let w = take::<f32>(len - 10);
        assert_eq!(w.len(), len - 10);
        assert!(!held(w.as_ptr() as usize));
        if w.as_ptr() as usize == ptr {
            assert!(w.capacity() >= len);
        }
        let foreign = vec![1.0f32; len];
        let fp = foreign.as_ptr() as usize;
        if !free().ours.contains(&fp) {
            give(foreign);
            assert!(!held(fp), "a buffer take did not allocate is not kept");
        }
    }

    #[test]
    fn trim_drops_the_oldest_until_under_the_cap() {
        let mut f = Free::default();
        for n in [1000, 2000, 3000] {
            f.f32.push(Vec::with_capacity(n));
            f.bytes += f.f32.last().unwrap().capacity() * 4;
        }
        f.f64.push(Vec::with_capacity(500));
        f.bytes += f.f64[0].capacity() * 8;
        let total = f.bytes;
        f.trim(total - 1);
        // The first f32 buffer (the oldest) went, the rest stay.
        assert_eq!(f.f32.len(), 2);
        assert!(f.f32[0].capacity() >= 2000 && f.f32[0].capacity() < 3000);
        assert_eq!(f.bytes, total - f32_bytes(1000));
        f.trim(0);
        assert!(f.f32.is_empty() && f.f64.is_empty());
        assert_eq!(f.bytes, 0);
    }

    fn f32_bytes(n: usize) -> usize {
        Vec::<f32>::with_capacity(n).capacity() * 4
    }

    #[test]
    fn lists_are_typed() {
        let mut f = Free::default();
        assert!(f.list::<f32>().is_some());
        assert!(f.list::<f64>().is_some());
        f.list::<f64>().unwrap().push(vec![1.0f64; 3]);
        assert_eq!(f.f64.len(), 1);
        assert!(f.f32.is_empty());
    }
}
