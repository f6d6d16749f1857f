//! # strata-dist
//!
//! Data-parallel training for strata over MPI (the `mpi` crate over Open
//! MPI): [`MpiGroup`] implements strata-train's one seam,
//! [`strata_train::collective::Collective`] — rank, size, a sum over all
//! ranks of a flat buffer, a broadcast of bytes from rank 0 — so that
//! `mpirun -np N strata train SPEC` trains one model on N processes. The
//! training loop packs each step's gradients, batch-norm statistics, loss
//! and stop flag into one buffer and sums it with one `MPI_Allreduce`
//! ([`strata_train::collective::GradientBucket`]); this crate sees those
//! flat buffers, never layers.
//!
//! A rank that stops answering (killed, stalled, its machine gone) must not
//! leave the others waiting for ever: every collective call is watched, and
//! a call that has not returned within the group's timeout ends the process
//! with an error naming the rank, the call and the wait
//! ([`MpiGroup::init`]). Open MPI's `mpirun` also ends the job when one of
//! its processes dies, naming that rank.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use strata_train::collective::Collective;
//!
//! // Under `mpirun -np 2`: rank 0 and rank 1 each add their rank + 1.
//! if let Some(group) = strata_dist::MpiGroup::init(Duration::from_secs(60))? {
//!     let group = Arc::new(group);
//!     let mut v = [group.rank() as f32 + 1.0];
//!     group.all_reduce_f32(&mut v)?;
//!     assert_eq!(v[0], 3.0);
//! }
//! # Ok::<(), String>(())
//! ```

#![warn(missing_docs)]

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};
use strata_train::collective::Collective;

/// Environment variables that the MPI launchers (Open MPI's `mpirun`,
/// PMIx, MPICH's Hydra, Slurm) set in the processes they start.
const LAUNCHER_VARIABLES: &[&str] = &["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"];

/// Whether this process was started by an MPI launcher (`mpirun`,
/// `mpiexec`, `srun`): without one, strata trains alone, exactly as a
/// build without MPI does.
pub fn launched_by_mpirun() -> bool {
    LAUNCHER_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// What the watchdog watches: the collective call in progress, if any.
#[derive(Debug, Default)]
struct Watch {
    /// Milliseconds since `epoch` at which the call in progress started;
    /// 0 when none is.
    started_ms: AtomicU64,
    /// Time spent in collective calls, nanoseconds.
    busy_ns: AtomicU64,
    /// The call in progress, for the message.
    what: Mutex<&'static str>,
}

/// The processes of `MPI_COMM_WORLD` as a strata-train
/// [`Collective`]. Collective calls are made from the thread that created
/// the group only (MPI is initialised as `MPI_THREAD_FUNNELED`); a call
/// from another thread is an error, not undefined behaviour.
pub struct MpiGroup {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    owner: ThreadId,
    watch: Arc<Watch>,
    epoch: Instant,
    // Last: MPI_Finalize runs when the group is dropped.
    _universe: Universe,
}

impl std::fmt::Debug for MpiGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiGroup")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

// SAFETY: the communicator is a handle that MPI lets any thread use under
// MPI_THREAD_FUNNELED only from the initialising thread; every method that
// touches it first checks it runs on `owner` and refuses otherwise, so
// sharing the group between threads cannot make two threads call MPI.
unsafe impl Send for MpiGroup {}
// SAFETY: as for `Send`: all MPI calls are confined to `owner` at run time.
unsafe impl Sync for MpiGroup {}

impl MpiGroup {
    /// Initialises MPI when this process was started by an MPI launcher and
    /// returns the group of all its processes; `Ok(None)` without a
    /// launcher. A collective call that waits longer than `timeout` ends
    /// the process (exit code 3) with a message on standard error naming
    /// this rank, the call and the wait: a lost rank never hangs the others.
    pub fn init(timeout: Duration) -> Result<Option<Self>, String> {
        if !launched_by_mpirun() {
            return Ok(None);
        }
        let (universe, level) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or("MPI was initialised already in this process")?;
        if level < Threading::Funneled {
            return Err(format!(
                "the MPI library offers thread level {level:?}; strata needs at least Funneled \
                 (its data-loading threads never call MPI)"
            ));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let watch = Arc::new(Watch::default());
        let epoch = Instant::now();
        spawn_watchdog(Arc::clone(&watch), epoch, timeout, rank, size)?;
        Ok(Some(Self {
            world,
            rank,
            size,
            owner: std::thread::current().id(),
            watch,
            epoch,
            _universe: universe,
        }))
    }

    /// Seconds spent in collective calls so far (waiting for the other
    /// ranks included).
    pub fn busy_seconds(&self) -> f64 {
        self.watch.busy_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// Runs collective call `what` under the watchdog.
    fn watched<R>(&self, what: &'static str, f: impl FnOnce() -> R) -> Result<R, String> {
        if std::thread::current().id() != self.owner {
            return Err(format!(
                "{what} called from a thread other than the one that initialised MPI"
            ));
        }
        if let Ok(mut w) = self.watch.what.lock() {
            *w = what;
        }
        let start = Instant::now();
        let since = (start - self.epoch).as_millis() as u64;
        self.watch.started_ms.store(since.max(1), Ordering::SeqCst);
        let r = f();
        self.watch.started_ms.store(0, Ordering::SeqCst);
        self.watch
            .busy_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(r)
    }
}

/// The thread that ends the process when a collective call outlasts `timeout`.
fn spawn_watchdog(
    watch: Arc<Watch>,
    epoch: Instant,
    timeout: Duration,
    rank: usize,
    size: usize,
) -> Result<(), String> {
    let tick = (timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    std::thread::Builder::new()
        .name("strata-dist-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(tick);
            let started = watch.started_ms.load(Ordering::SeqCst);
            if started == 0 {
                continue;
            }
            let waited = epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(started));
            if waited >= timeout {
                let what = watch.what.lock().map_or("a collective call", |w| *w);
                eprintln!(
                    "error: rank {rank} of {size}: no answer from the other ranks for {:.0} s in \
                     {what}; a rank was lost or has stalled (its own message, or mpirun's, names \
                     it) — stopping",
                    waited.as_secs_f64()
                );
                // No MPI call from this thread (FUNNELED): leave, and let
                // the launcher end the rest of the job.
                std::process::exit(3);
            }
        })
        .map(|_| ())
        .map_err(|e| format!("could not start the MPI watchdog thread: {e}"))
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<(), String> {
        let send = buf.to_vec();
        self.watched("an all-reduce of the gradients", || {
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum())
        })
    }

    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<(), String> {
        let send = buf.to_vec();
        self.watched("an all-reduce of counts or batch-norm sums", || {
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum())
        })
    }

    fn busy_seconds(&self) -> f64 {
        MpiGroup::busy_seconds(self)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), String> {
        let root = self.world.process_at_rank(0);
        let mut len = [bytes.len() as u64];
        self.watched("a broadcast of the checkpoint's size", || {
            root.broadcast_into(&mut len[..])
        })?;
        let len = usize::try_from(len[0]).map_err(|_| "a checkpoint too large to receive")?;
        bytes.resize(len, 0);
        self.watched("a broadcast of the checkpoint", || {
            root.broadcast_into(&mut bytes[..])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_launcher_there_is_no_group() {
        // The test harness is not started by mpirun (CI runs the MPI tests
        // through the CLI under mpirun instead).
        if !launched_by_mpirun() {
            assert!(MpiGroup::init(Duration::from_secs(1)).unwrap().is_none());
        }
    }
}
