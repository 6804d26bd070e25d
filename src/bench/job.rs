//! A job of the runtime inside one benchmark: this process is rank 0 and leads, the other ranks
//! are forked children that follow its orders. No launcher and no exec, so a benchmark measures
//! the runtime alone.

use std::time::Duration;

use super::BenchError;
use crate::child::Child;
use crate::comm::{self, CommError, JobSpec, Universe, World};
use crate::config::Config;
use crate::shm::Segment;
use crate::transport::TransportChoice;

/// A running job: rank 0 in this process, the others forked.
pub(crate) struct Forked {
    universe: Universe,
    children: Vec<Child>,
    saved_cpus: Option<rustix::thread::CpuSet>,
}

impl Forked {
    /// Starts a job of `ranks` ranks on `transport` with `config`: ranks 1 and up are forked
    /// and run `follow` (exiting with its status: 0 on success, its code otherwise); this
    /// process joins as rank 0. `what` names the job in errors.
    pub fn start(
        ranks: usize,
        transport: TransportChoice,
        config: &Config,
        what: &str,
        follow: impl Fn(&World) -> Result<(), i32>,
    ) -> Result<Forked, BenchError> {
        let peer_error = |e: CommError| BenchError::Peer(format!("{what}: {e}"));
        let bytes = comm::segment_bytes(ranks, config).map_err(peer_error)?;
        let segment =
            Segment::create("onecopy-bench", bytes).map_err(|e| BenchError::Peer(e.to_string()))?;
        comm::init_segment(&segment, ranks, config).map_err(peer_error)?;
        let me = std::process::id() as i32;
        // Joining binds this process to one CPU; children must start from the whole set, and
        // so must whatever runs after the benchmark.
        let saved_cpus = rustix::thread::sched_getaffinity(None).ok();
        let mut children = Vec::with_capacity(ranks.saturating_sub(1));
        for rank in 1..ranks {
            let child_segment = segment
                .try_clone()
                .map_err(|e| BenchError::Peer(e.to_string()))?;
            let spec = JobSpec {
                segment: child_segment,
                rank,
                size: ranks,
                launcher_pid: me,
                transport,
                config: config.clone(),
            };
            let follow = &follow;
            // SAFETY: the benchmark process starts no threads (the progress bar draws without
            // one), so the child may run anything.
            let child = unsafe {
                Child::fork(move || match comm::join(spec) {
                    Ok(u) => follow(&u.world()).err().unwrap_or(0),
                    Err(_) => 1,
                })
            }
            .map_err(|e| BenchError::Peer(format!("cannot fork rank {rank}: {e}")))?;
            children.push(child);
        }
        let spec = JobSpec {
            segment,
            rank: 0,
            size: ranks,
            launcher_pid: me,
            transport,
            config: config.clone(),
        };
        let forked = |universe| Forked {
            universe,
            children,
            saved_cpus,
        };
        Ok(forked(comm::join(spec).map_err(peer_error)?))
    }

    /// Rank 0's world.
    pub fn world(&self) -> World {
        self.universe.world()
    }

    /// Waits (a short while) for every forked rank to end; how rank `r` ended, for `r` from 1.
    pub fn finish(mut self) -> Vec<Option<crate::child::Exit>> {
        let ends = self
            .children
            .iter_mut()
            .map(|c| c.wait_timeout(Duration::from_secs(5)).ok().flatten())
            .collect();
        if let Some(cpus) = self.saved_cpus.take() {
            let _ = rustix::thread::sched_setaffinity(None, &cpus);
        }
        ends
    }
}

/// Runs a job of `ranks` ranks on `transport` with `config`: ranks 1 and up are forked and run
/// `follow`; this process runs `lead` as rank 0 and returns what it returns. `what` names the
/// job in errors.
pub(crate) fn run<R>(
    ranks: usize,
    transport: TransportChoice,
    config: &Config,
    what: &str,
    follow: impl Fn(&World) -> Result<(), CommError>,
    lead: impl FnOnce(&World) -> Result<R, CommError>,
) -> Result<R, BenchError> {
    let job = Forked::start(ranks, transport, config, what, |w| follow(w).map_err(|_| 1))?;
    let result = lead(&job.world());
    job.finish();
    result.map_err(|e| BenchError::Peer(format!("{what}: {e}")))
}
