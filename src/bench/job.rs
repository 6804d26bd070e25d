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
}

impl Drop for Forked {
    fn drop(&mut self) {
        leave_job();
    }
}

/// The jobs of this process that have started and not finished, and the CPUs the process had
/// before the first of them bound it to one. Joining binds rank 0 (this process); a job started
/// while another runs (`bench mechanisms` keeps one per mechanism) must still fork its ranks
/// with, and bind them from, the whole set, and the set comes back once the last job finishes.
static CPUS: std::sync::Mutex<(usize, Option<rustix::thread::CpuSet>)> =
    std::sync::Mutex::new((0, None));

/// The CPUs this process had before its first running job; counts a new job.
fn enter_job() -> Option<rustix::thread::CpuSet> {
    let mut cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    if cpus.0 == 0 {
        cpus.1 = rustix::thread::sched_getaffinity(None).ok();
    }
    cpus.0 += 1;
    cpus.1
}

/// Counts a job finished; the last one gives this process its CPUs back.
fn leave_job() {
    let mut cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    cpus.0 = cpus.0.saturating_sub(1);
    if cpus.0 == 0
        && let Some(set) = cpus.1.take()
    {
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
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
        let all_cpus = enter_job();
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
                Child::fork(move || {
                    if let Some(set) = &all_cpus {
                        let _ = rustix::thread::sched_setaffinity(None, set);
                    }
                    match comm::join(spec) {
                        Ok(u) => follow(&u.world()).err().unwrap_or(0),
                        Err(_) => 1,
                    }
                })
            }
            .map_err(|e| {
                leave_job();
                BenchError::Peer(format!("cannot fork rank {rank}: {e}"))
            })?;
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
        // Rank 0 binds from the whole set too.
        if let Some(set) = &all_cpus {
            let _ = rustix::thread::sched_setaffinity(None, set);
        }
        match comm::join(spec) {
            Ok(universe) => Ok(Forked { universe, children }),
            Err(e) => {
                leave_job();
                Err(peer_error(e))
            }
        }
    }

    /// Rank 0's world.
    pub fn world(&self) -> World {
        self.universe.world()
    }

    /// Waits (a short while) for every forked rank to end; how rank `r` ended, for `r` from 1.
    pub fn finish(mut self) -> Vec<Option<crate::child::Exit>> {
        self.children
            .iter_mut()
            .map(|c| c.wait_timeout(Duration::from_secs(5)).ok().flatten())
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The one CPU this process is bound to, if it is bound to one.
    fn bound_cpu() -> Option<usize> {
        let set = rustix::thread::sched_getaffinity(None).ok()?;
        let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect();
        (cpus.len() == 1).then(|| cpus[0])
    }

    fn count(set: &rustix::thread::CpuSet) -> usize {
        (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .count()
    }

    #[test]
    fn jobs_at_once_bind_every_rank_from_the_whole_set_and_give_it_back() {
        let before = rustix::thread::sched_getaffinity(None).expect("affinity");
        if count(&before) < 2 {
            eprintln!("SKIP: one CPU, nothing to bind apart");
            return;
        }
        let config = Config::default();
        // Rank 1 exits with 10 + its CPU.
        let report = |_: &World| Err(bound_cpu().map_or(1, |c| 10 + c as i32));
        let first = Forked::start(2, TransportChoice::Auto, &config, "first", report).expect("job");
        let second =
            Forked::start(2, TransportChoice::Auto, &config, "second", report).expect("job");
        let mine = bound_cpu().expect("rank 0 is bound");
        for job in [second, first] {
            match job.finish().as_slice() {
                [Some(crate::child::Exit::Code(c))] => {
                    assert!(*c >= 10, "rank 1 was not bound to one CPU");
                    assert_ne!((*c - 10) as usize, mine, "rank 1 shares rank 0's CPU");
                }
                other => panic!("rank 1 ended {other:?}"),
            }
        }
        let after = rustix::thread::sched_getaffinity(None).expect("affinity");
        assert_eq!(count(&after), count(&before), "the CPUs did not come back");
    }
}
