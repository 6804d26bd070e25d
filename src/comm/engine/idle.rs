//! What a rank does while it waits for a peer: spin, yield the CPU, and at last sleep on its
//! doorbell until a peer rings it or [`crate::transport::POLL_INTERVAL`] passes; and how it
//! notices that the peer it waits for has died, so that a wait never outlives its peer.

use std::time::Instant;

use super::{CommError, Engine, ReqId};

/// The peers a waiting rank depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// One rank.
    Rank(usize),
    /// Any rank (an any-source receive).
    Any,
}

/// How often a rank slept while waiting.
///
/// A waiting rank spins for a while (1 ms, `ONECOPY_SPIN_US`), then sleeps until a peer rings
/// it or [`crate::transport::POLL_INTERVAL`] has passed. Sleeps that ran the whole interval
/// while peers were sending mean rings that did not wake this rank (or peers that were not
/// running): each cost this rank that much latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SleepStats {
    /// Sleeps begun.
    pub sleeps: u64,
    /// Sleeps that lasted the whole interval: no ring came.
    pub full_intervals: u64,
}

/// Rounds of progress a rank spins before yielding when the rank it waits for likely runs on
/// another CPU (see [`Idle::pause_unless`]).
const SPIN_ACROSS_ROUNDS: u32 = 128;

/// Spinning, then sleeping, while a rank waits for something to happen.
pub(crate) struct Idle {
    since: Option<Instant>,
    spins: u32,
    watch: Watch,
    /// The request waited for, whose peers are looked at when the rank checks for dead ones
    /// (a nonblocking collective's change from round to round).
    request: Option<ReqId>,
}

impl Idle {
    /// Waiting for something from the peers `watch` names.
    pub fn new(watch: Watch) -> Idle {
        Idle {
            since: None,
            spins: 0,
            watch,
            request: None,
        }
    }

    /// Waiting for request `id`, which now waits on `watch`.
    pub fn for_request(id: ReqId, watch: Watch) -> Idle {
        Idle {
            request: Some(id),
            ..Idle::new(watch)
        }
    }

    /// Fails if a peer this waiter depends on is gone.
    fn check(&self, engine: &Engine) -> Result<(), CommError> {
        match self.request {
            Some(id) => engine.check_request(id),
            None => engine.check_peers(self.watch),
        }
    }

    /// Called after a fruitless (or fruitful: `moved`) round of progress.
    pub fn pause(&mut self, engine: &mut Engine, moved: bool) -> Result<(), CommError> {
        self.pause_unless(engine, moved, |_| false).map(|_| ())
    }

    /// [`Idle::pause`] after a fruitless round; true if the rank went as far as sleeping.
    pub fn pause_checked(&mut self, engine: &mut Engine) -> Result<bool, CommError> {
        self.pause_unless(engine, false, |_| false)
    }

    /// [`Idle::pause`] for a waiter whose condition a peer may satisfy without sending it a
    /// record: `ready` is checked after the sleep is announced, and the sleep skipped if it
    /// holds. True if the rank went as far as announcing a sleep.
    pub fn pause_unless(
        &mut self,
        engine: &mut Engine,
        moved: bool,
        ready: impl Fn(&Engine) -> bool,
    ) -> Result<bool, CommError> {
        if moved {
            self.since = None;
            self.spins = 0;
            return Ok(false);
        }
        self.spins = self.spins.wrapping_add(1);
        let oversubscribed = engine.job.oversubscribed;
        // The clock is read every 64 rounds only: a round is tens of nanoseconds. With more
        // ranks than CPUs every round is a yield instead, and the clock is read each time.
        if !oversubscribed && !self.spins.is_multiple_of(64) {
            std::hint::spin_loop();
            return Ok(false);
        }
        // More ranks than CPUs, but the one rank this rank waits for is bound to another CPU
        // that it shares with at most one other: it is running now as often as not, and a few
        // microseconds of spinning are cheaper than giving this CPU away and back. 4 ranks on
        // 2 CPUs: 8-byte all-reduce 3.3-3.4 µs a call yielding at once, 1.9-2.0 spinning first;
        // all-to-all 2.7-3.0 and 2.4-2.7. With 4 ranks to a CPU (8 on 2) it did not pay: the
        // 8-byte all-reduce took 28 µs instead of 14.
        if oversubscribed
            && self.spins <= SPIN_ACROSS_ROUNDS
            && let Watch::Rank(p) = self.watch
            && engine.waits_on_one_across(p)
        {
            std::hint::spin_loop();
            return Ok(false);
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        let budget = engine.job.tuning.spin;
        if oversubscribed {
            // More ranks than CPUs: the rank we wait for may need this very CPU, so give it
            // away now, and sleep once the spin budget is spent.
            std::thread::yield_now();
            if since.elapsed() < budget {
                return Ok(false);
            }
        } else if since.elapsed() < budget {
            if self.spins.is_multiple_of(1024) {
                std::thread::yield_now();
            }
            return Ok(false);
        }
        let me = engine.job.me;
        let seen = engine.job.segment.rank(me).bell.announce_sleep();
        let again = engine.progress();
        // A peer that is already gone will never ring: sleeping on it would cost every pending
        // request one interval (a window of 64 sends to a dead rank took over a second).
        if let Ok(false) = again
            && !ready(engine)
            && self.check(engine).is_ok()
        {
            let start = Instant::now();
            engine
                .job
                .segment
                .rank(me)
                .bell
                .sleep(seen, crate::transport::POLL_INTERVAL);
            engine.sleeps.sleeps += 1;
            if start.elapsed() >= crate::transport::POLL_INTERVAL {
                engine.sleeps.full_intervals += 1;
            }
        }
        engine.job.segment.rank(me).bell.finish_sleep();
        if again? {
            self.since = None;
            return Ok(true);
        }
        if let Err(e) = self.check(engine) {
            // Whatever it sent before exiting is still in the rings.
            if engine.drain()? {
                self.since = None;
                return Ok(true);
            }
            return Err(e);
        }
        Ok(true)
    }
}

impl Engine {
    /// Rounds of progress until nothing moves, or until every ring has been read to its end
    /// once (a dead peer's ring holds at most a ring's cells of records, read 64 a round, so
    /// what it sent before it died is all delivered then, however busy the live peers keep the
    /// rounds); true if anything moved. Called when a peer is found dead, before any request is
    /// failed for it: a peer may send its last messages and exit, and they must still arrive.
    pub fn drain(&mut self) -> Result<bool, CommError> {
        let rounds = self.job.segment.layout.ring_cells / 64 + 2;
        let mut moved = false;
        for _ in 0..rounds {
            if !self.progress()? {
                break;
            }
            moved = true;
        }
        Ok(moved)
    }

    /// The requests of `ids` still unfinished whose peers are gone end with the error, once
    /// everything those peers sent has been delivered.
    pub fn fail_orphans(&mut self, ids: &[ReqId]) -> Result<(), CommError> {
        let orphaned = |e: &Engine| {
            ids.iter()
                .any(|&id| !e.is_done(id) && e.check_request(id).is_err())
        };
        if !orphaned(self) {
            return Ok(());
        }
        self.drain()?;
        for &id in ids {
            if !self.is_done(id)
                && let Err(e) = self.check_request(id)
            {
                self.abandon(id, e);
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Fails if what `watch` names can no longer send anything: the peer has exited, or for
    /// [`Watch::Any`], every peer has. (A peer that exits after finishing its part is normal.)
    pub fn check_peers(&self, watch: Watch) -> Result<(), CommError> {
        let gone = |rank: usize| {
            self.job
                .peers
                .get(rank)
                .and_then(Option::as_ref)
                .filter(|p| !p.is_alive())
                .map(|p| CommError::PeerGone {
                    rank: rank as i32,
                    pid: p.pid(),
                })
        };
        match watch {
            Watch::Rank(r) => gone(r).map_or(Ok(()), Err),
            Watch::Any => {
                let others: Vec<usize> = (0..self.size()).filter(|&r| r != self.job.me).collect();
                match others.iter().map(|&r| gone(r)).collect::<Option<Vec<_>>>() {
                    Some(mut all_gone) if !others.is_empty() => Err(all_gone.remove(0)),
                    _ => Ok(()),
                }
            }
        }
    }
}
