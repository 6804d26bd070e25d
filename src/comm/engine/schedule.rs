//! Schedules: the engine's side of the nonblocking collectives. A schedule is a list of rounds
//! built when the collective is called; a round is a list of actions run in order when it
//! starts: local steps (a copy, a reduction) run on the spot, sends and receives are posted as
//! ordinary requests in the collective's context and tag. The round is over once every one of
//! them has finished; then the next starts. The schedule is itself a request ([`Req::Schedule`]),
//! so it is waited for, tested, freed and completed with the others like any request.
//!
//! Every round of progress advances every live schedule (a look at an empty list when there is
//! none). A failure of one of its requests (a dead peer, a length that does not fit) or of a
//! local step ends the schedule with that error; its other requests are abandoned with it.
//!
//! The schedule owns its temporary buffers and whatever its local steps need; what the
//! collectives above build (which rounds, which buffers) lives in `coll::immediate`.

use std::any::Any;
use std::collections::VecDeque;

use super::matching::Want;
use super::requests::Req;
use super::{CommError, Engine, RecvBuf, ReqId, SendBuf, Status, Watch};

/// One action of a round.
pub(crate) enum Action {
    /// Send `data` to world rank `dest`.
    Send { dest: usize, data: SendBuf },
    /// Receive exactly `buf.cap` bytes from world rank `source` into `buf`.
    Receive { source: usize, buf: RecvBuf },
    /// A local step, run when the round starts (before the round's later actions are posted).
    Local(Box<dyn FnMut()>),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Send { dest, data } => write!(f, "Send({} B to {dest})", data.len),
            Action::Receive { source, buf } => write!(f, "Receive({} B from {source})", buf.cap),
            Action::Local(_) => f.write_str("Local"),
        }
    }
}

/// A request of the current round: its id, its peer, and for a receive the bytes it must get.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: ReqId,
    peer: usize,
    expect: Option<usize>,
}

/// A nonblocking collective's rounds, and what they use.
pub(crate) struct Schedule {
    context: u32,
    tag: i32,
    rounds: VecDeque<Vec<Action>>,
    pending: Vec<Pending>,
    /// The temporary buffers and values the actions point into; dropped with the schedule.
    keep: Vec<Box<dyn Any>>,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("tag", &self.tag)
            .field("rounds_left", &self.rounds.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Schedule {
    /// An empty schedule whose messages travel in `context` with `tag`.
    pub fn new(context: u32, tag: i32) -> Schedule {
        Schedule {
            context,
            tag,
            rounds: VecDeque::new(),
            pending: Vec::new(),
            keep: Vec::new(),
        }
    }

    /// Appends a round (an empty one is skipped).
    pub fn round(&mut self, actions: Vec<Action>) {
        if !actions.is_empty() {
            self.rounds.push_back(actions);
        }
    }

    /// Keeps `value` alive until the schedule ends (a buffer its actions point into).
    pub fn keep(&mut self, value: Box<dyn Any>) {
        self.keep.push(value);
    }
}

/// The live schedules, by request id (usually none, or a few).
pub(super) type Schedules = Vec<(ReqId, Box<Schedule>)>;

/// How one look at a schedule ended.
enum Step {
    /// Waiting for its current round's requests.
    Waiting,
    /// Finished (with its result recorded) or given up.
    Over,
}

impl Engine {
    /// Starts `schedule` (its first round is posted now) and returns its request.
    ///
    /// # Safety
    /// Every buffer an action names, and everything a local step touches, stays valid until the
    /// request finishes; the actions of one round do not write memory that another action of the
    /// same round reads or writes.
    pub unsafe fn start_schedule(&mut self, schedule: Schedule) -> ReqId {
        let id = self.new_request(Req::Schedule);
        let mut schedule = Box::new(schedule);
        if let (_, Step::Waiting) = self.step(id, &mut schedule) {
            self.schedules.push((id, schedule));
        }
        id
    }

    /// Advances every live schedule; true if any moved.
    pub(super) fn advance_schedules(&mut self) -> bool {
        // Taken out while they run: posting a request may make progress itself, which then
        // finds no schedule to advance.
        let mut live = std::mem::take(&mut self.schedules);
        let mut moved = false;
        live.retain_mut(|(id, s)| {
            let (m, step) = self.step(*id, s);
            moved |= m;
            matches!(step, Step::Waiting)
        });
        live.append(&mut self.schedules);
        self.schedules = live;
        moved
    }

    /// Moves schedule `id` as far as it goes now: collects its finished requests, and starts
    /// rounds while the current one is over. Whether anything moved, and how it stands.
    fn step(&mut self, id: ReqId, s: &mut Schedule) -> (bool, Step) {
        if !matches!(self.requests.get(&id), Some(Req::Schedule)) {
            // Given up meanwhile (its result is recorded already).
            let e = CommError::Config("the collective was given up".into());
            self.drop_pending(s, e);
            return (true, Step::Over);
        }
        let mut moved = false;
        loop {
            let mut i = 0;
            while i < s.pending.len() {
                let p = s.pending[i];
                if !self.is_done(p.id) {
                    i += 1;
                    continue;
                }
                moved = true;
                s.pending.swap_remove(i);
                let result = self
                    .take(p.id)
                    .unwrap_or_else(|| Err(CommError::Config(format!("request {} lost", p.id))));
                let checked = result.and_then(|status| match p.expect {
                    Some(want) if status.count_bytes() != want => Err(CommError::Mismatch {
                        rank: p.peer as i32,
                        what: format!(
                            "received {} bytes where {want} were expected",
                            status.count_bytes()
                        ),
                    }),
                    _ => Ok(()),
                });
                if let Err(e) = checked {
                    return (true, self.fail_schedule(id, s, e));
                }
            }
            if !s.pending.is_empty() {
                return (moved, Step::Waiting);
            }
            let Some(round) = s.rounds.pop_front() else {
                self.finish(id, Ok(Status::null()));
                return (true, Step::Over);
            };
            moved = true;
            for action in round {
                if let Err(e) = self.run_action(s, action) {
                    return (true, self.fail_schedule(id, s, e));
                }
            }
        }
    }

    /// Runs a local step, or posts a send or a receive of schedule `s`.
    fn run_action(&mut self, s: &mut Schedule, action: Action) -> Result<(), CommError> {
        match action {
            Action::Local(f) => {
                // A panicking reduction must not unwind through the engine with requests of
                // this schedule posted; none is, between rounds, so it only ends the schedule.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
                    CommError::InvalidArgument("the collective's operation panicked".into())
                })
            }
            Action::Send { dest, data } => {
                let id = self.post_send(dest, s.context, s.tag, data, false)?;
                s.pending.push(Pending {
                    id,
                    peer: dest,
                    expect: None,
                });
                Ok(())
            }
            Action::Receive { source, buf } => {
                let want = Want {
                    context: s.context,
                    source: Some(source),
                    tag: Some(s.tag),
                };
                let id = self.post_receive(want, buf)?;
                s.pending.push(Pending {
                    id,
                    peer: source,
                    expect: Some(buf.cap),
                });
                Ok(())
            }
        }
    }

    /// Ends schedule `id` with `e`: its requests still in flight are abandoned first, so that
    /// nothing writes into its buffers once it is over.
    fn fail_schedule(&mut self, id: ReqId, s: &mut Schedule, e: CommError) -> Step {
        self.drop_pending(s, e.clone());
        self.finish(id, Err(e));
        Step::Over
    }

    /// Abandons and forgets every request of `s` still in flight. A receive given up while
    /// its peer lives may still be written by that peer (`cma-write` pushes into it): the
    /// schedule's own buffers are then never freed, rather than freed under the peer's writes.
    fn drop_pending(&mut self, s: &mut Schedule, e: CommError) {
        let mut written = false;
        for p in s.pending.drain(..) {
            if p.expect.is_some()
                && !self.is_done(p.id)
                && self.check_peers(Watch::Rank(p.peer)).is_ok()
            {
                written = true;
            }
            self.abandon(p.id, e.clone());
            self.take(p.id);
        }
        s.rounds.clear();
        if written {
            std::mem::forget(std::mem::take(&mut s.keep));
        }
    }

    /// Schedule `id` is given up (its peer died): its requests go with it.
    pub(super) fn forget_schedule(&mut self, id: ReqId, e: &CommError) {
        if let Some(i) = self.schedules.iter().position(|(s, _)| *s == id) {
            let (_, mut s) = self.schedules.swap_remove(i);
            self.drop_pending(&mut s, e.clone());
        }
    }

    /// The peer the current round of schedule `id` waits on first.
    pub(super) fn schedule_watch(&self, id: ReqId) -> Watch {
        self.schedule(id)
            .and_then(|s| s.pending.iter().find(|p| !self.is_done(p.id)))
            .map_or(Watch::Any, |p| Watch::Rank(p.peer))
    }

    fn schedule(&self, id: ReqId) -> Option<&Schedule> {
        self.schedules
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, s)| &**s)
    }

    /// Fails if a peer request `id` waits on is gone: for a schedule, any peer of its current
    /// round's unfinished requests.
    pub fn check_request(&self, id: ReqId) -> Result<(), CommError> {
        match self.requests.get(&id) {
            Some(Req::Schedule) => match self.schedule(id) {
                Some(s) => s
                    .pending
                    .iter()
                    .filter(|p| !self.is_done(p.id))
                    .try_for_each(|p| self.check_peers(Watch::Rank(p.peer))),
                None => Ok(()),
            },
            _ => self.check_peers(self.watch(id)),
        }
    }

    /// Whether a live schedule still sends or receives in a context of communicator `comm`.
    pub(super) fn schedules_use(&self, comm: u32) -> bool {
        self.schedules
            .iter()
            .any(|(_, s)| crate::comm::context::id_of(s.context) == comm)
    }
}
