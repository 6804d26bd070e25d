//! Joining a job: a rank reads what the launcher gave it, maps the segment, binds itself to a
//! CPU, registers, waits for the others, tests that the job's mechanism reaches every peer, and
//! agrees with them on how large messages move. Also the world of one, for programs started
//! without `onecopy run`.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::communicator::{CommCore, SimpleCommunicator};
use super::context::{ContextIds, SELF, WORLD};
use super::engine::{Engine, Job, Limits, Tuning};
use super::group::Members;
use super::layout::{self, Layout, MAX_RANKS};
use super::runtime::Runtime;
use super::{CommError, ring};
use crate::config::{Bind, Config};
use crate::shm::Segment;
use crate::transport::auto::{AutoTable, Source};
use crate::transport::{Mechanism, TransportChoice};
use crate::vm::Process;

/// The job this process belongs to.
pub struct Universe {
    world: SimpleCommunicator,
}

impl std::fmt::Debug for Universe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Universe")
            .field("rank", &self.world.core.rank())
            .field("size", &self.world.core.size())
            .finish()
    }
}

impl Universe {
    /// All ranks of the job (`MPI_COMM_WORLD`).
    pub fn world(&self) -> SimpleCommunicator {
        self.world.clone()
    }

    /// The communicator of this process alone (`MPI_COMM_SELF`).
    pub fn self_communicator(&self) -> SimpleCommunicator {
        let rt = &self.world.core.rt;
        let me = Members::new(vec![rt.world_rank], rt.world_size, rt.world_rank);
        let mut core = CommCore::new(rt.clone(), SELF, 0, me, None, "MPI_COMM_SELF")
            .unwrap_or_else(|_| unreachable!("a process is in its own group"));
        core.owns_id = false;
        SimpleCommunicator::from_core(core)
    }

    /// Attaches a buffer of `bytes` bytes for buffered sends
    /// ([`crate::point_to_point::Destination::buffered_send`]), replacing one attached before
    /// once its sends have finished (`MPI_Buffer_attach`). Each buffered send takes its length,
    /// rounded up to 8, plus [`BSEND_OVERHEAD`] bytes until it finishes.
    pub fn set_buffer_size(&self, bytes: usize) -> Result<(), CommError> {
        let mut engine = self.world.core.rt.engine();
        engine.detach_buffer()?;
        if bytes > 0 {
            engine.attach_buffer(bytes)?;
        }
        Ok(())
    }

    /// Bytes of the attached buffer (0: none).
    pub fn buffer_size(&self) -> usize {
        self.world.core.rt.engine.borrow().buffer_size()
    }

    /// Detaches the buffer once every buffered send from it has finished (`MPI_Buffer_detach`);
    /// its size.
    pub fn detach_buffer(&self) -> Result<usize, CommError> {
        self.world.core.rt.engine().detach_buffer()
    }

    /// A world of one process (this one), for programs started without `onecopy run`.
    pub fn single() -> Result<Universe, CommError> {
        let config = Config::from_env()?;
        let layout = Layout {
            ranks: 1,
            ring_cells: 64,
            eager_slots: 1,
            eager_slot_bytes: 4096,
        };
        let segment = Segment::create("onecopy-single", layout.bytes())?;
        layout::World::init(&segment, &layout)?;
        let world = layout::World::open(segment, 1)?;
        let limits = Limits {
            inline: usize::MAX,
            eager: usize::MAX,
            chunk: config.cma_chunk_bytes,
            layout_send_piece: config.layout_send_piece_bytes,
            layout_recv_piece: config.layout_recv_piece_bytes,
        };
        let job = Job {
            segment: world,
            me: 0,
            peers: vec![None],
            mechanism: Mechanism::ShmCopy,
            auto: AutoTable::uniform(Mechanism::ShmCopy),
            auto_source: Source::Transport(Mechanism::ShmCopy),
            limits,
            tuning: tuning(&config),
            oversubscribed: false,
            spin_across: Vec::new(),
        };
        Ok(Universe::of(Engine::new(job), config, 0, 1, None))
    }

    fn of(
        engine: Engine,
        config: Config,
        rank: usize,
        size: usize,
        fallback: Option<String>,
    ) -> Universe {
        let rt = Rc::new(Runtime {
            engine: RefCell::new(engine),
            config,
            world_rank: rank,
            world_size: size,
            contexts: RefCell::new(ContextIds::default()),
            fallback,
        });
        let members = Members::new((0..size).collect(), size, rank);
        let mut core = CommCore::new(rt, WORLD, 0, members, None, "MPI_COMM_WORLD")
            .unwrap_or_else(|_| unreachable!("every rank is in the world"));
        core.owns_id = false;
        Universe {
            world: SimpleCommunicator::from_core(core),
        }
    }
}

pub use super::engine::BSEND_OVERHEAD;

fn tuning(config: &Config) -> Tuning {
    Tuning {
        spin: config.spin,
        pipe_bytes: config.pipe_bytes,
    }
}

/// A word each rank's peers read (and, for the mechanisms that write into a peer, write back
/// unchanged) to test the job's mechanism before it starts.
#[repr(C, align(16))]
struct ProbeWord([AtomicU64; 2]);

static PROBE_WORD: ProbeWord = ProbeWord([
    AtomicU64::new(u64::from_le_bytes(*b"onecopy-")),
    AtomicU64::new(u64::from_le_bytes(*b"rank-ok!")),
]);

const PROBE_BYTES: &[u8; 16] = b"onecopy-rank-ok!";

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Joins the job this process was started in by `onecopy run`.
///
/// Returns `None` when the process was not started by `onecopy run` (use [`Universe::single`]
/// for a world of one), or when called a second time. A job whose environment or segment is
/// broken cannot run at all: the error is printed and the process exits with status 1.
pub fn initialize() -> Option<Universe> {
    match try_initialize() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("onecopy: cannot join the job: {e}");
            std::process::exit(1);
        }
    }
}

/// [`initialize`], with the error returned instead of ending the process.
pub fn try_initialize() -> Result<Option<Universe>, CommError> {
    let Some(env) = super::env::rank_env().map_err(|e| CommError::Config(e.to_string()))? else {
        return Ok(None);
    };
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let fd = env.segment_fd;
    if fd < 0
        || rustix::io::fcntl_getfd(
            // SAFETY: only used to ask whether the descriptor is open; not kept.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        )
        .is_err()
    {
        return Err(CommError::Config(format!(
            "ONECOPY_SEGMENT_FD={fd} is not an open descriptor"
        )));
    }
    // SAFETY: the launcher passed this descriptor to this process for the job's segment and
    // nothing else in the process owns it; it is open (checked above).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let segment = Segment::from_fd(owned)?;
    join(JobSpec {
        segment,
        rank: env.rank,
        size: env.size,
        launcher_pid: env.launcher_pid,
        transport: env.transport,
        config: Config::from_env()?,
    })
    .map(Some)
}

/// Everything a rank needs to join a job; [`try_initialize`] reads it from the environment that
/// `onecopy run` sets, and tests or other launchers can build it directly.
#[derive(Debug)]
pub struct JobSpec {
    /// The job's segment, laid out by [`init_segment`].
    pub segment: Segment,
    /// This rank.
    pub rank: usize,
    /// Ranks in the job.
    pub size: usize,
    /// The process whose descendants the ranks are (admitted as ptracer under Yama).
    pub launcher_pid: i32,
    /// How rendezvous messages move.
    pub transport: TransportChoice,
    /// The settings; the segment's sizes are those its header holds.
    pub config: Config,
}

/// Joins, as `rank` of a `size`-rank job whose launcher is `launcher_pid`, the job laid out in
/// `segment` (shared with the forking test, hence cloned): what a forked rank of a unit test
/// does first.
#[cfg(test)]
pub(crate) fn join_forked(
    segment: &Segment,
    rank: usize,
    size: usize,
    launcher_pid: i32,
    transport: TransportChoice,
    config: &Config,
) -> Result<Universe, String> {
    let segment = segment.try_clone().map_err(|e| e.to_string())?;
    join(JobSpec {
        segment,
        rank,
        size,
        launcher_pid,
        transport,
        config: config.clone(),
    })
    .map_err(|e| e.to_string())
}

/// Joins the job described by `spec`: registers this rank, waits for the others, tests that
/// the job's mechanism reaches each of them and agrees with them on how large messages move.
pub fn join(spec: JobSpec) -> Result<Universe, CommError> {
    let JobSpec {
        segment,
        rank,
        size,
        launcher_pid: launcher,
        transport,
        config,
    } = spec;
    if size == 0 || size > MAX_RANKS || rank >= size {
        return Err(CommError::Config(format!(
            "rank {rank} of {size} is not a valid place in a job"
        )));
    }
    let wanted = match transport {
        TransportChoice::Auto => Mechanism::CmaSplit,
        TransportChoice::Named(m) => m,
    };
    let segment_fd = segment.fd().as_raw_fd();
    let world = layout::World::open(segment, size)?;
    // Settings that do not fit the segment fail here, before this rank waits for anyone.
    let limits = limits(&world.layout, &config)?;
    let (oversubscribed, cpu_of) = bind(rank, size, config.bind)?;

    // Admit the launcher and its descendants (the other ranks) as ptracers where Yama restricts
    // ptrace to ancestors; nobody else.
    if let Some(pid) = rustix::process::Pid::from_raw(launcher).filter(|_| launcher > 0) {
        let _ = rustix::process::set_ptracer(rustix::process::PTracer::ProcessID(pid));
    }
    let me = world.rank(rank);
    me.probe_addr
        .store(PROBE_WORD.0.as_ptr() as u64, Ordering::Relaxed);
    me.probe_fd.store(segment_fd, Ordering::Relaxed);
    // Release: a rank that sees our pid sees our probe address and descriptor.
    me.pid.store(
        rustix::process::getpid().as_raw_nonzero().get(),
        Ordering::Release,
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peers: Vec<Option<Process>> = (0..size).map(|_| None).collect();
    for (r, slot) in peers.iter_mut().enumerate() {
        if r == rank {
            continue;
        }
        let pid = loop {
            let pid = world.rank(r).pid.load(Ordering::Acquire);
            if pid != 0 {
                break pid;
            }
            if Instant::now() > deadline {
                return Err(CommError::Config(format!(
                    "rank {r} did not start within 60 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        *slot = Some(
            Process::from_pid(pid)
                .map_err(|e| CommError::Config(format!("cannot reach rank {r}: {e}")))?,
        );
    }

    // Test the job's mechanism on every peer with a real transfer.
    let mut denial: Option<String> = None;
    if wanted.needs_peer_access() {
        for (r, p) in peers.iter().enumerate() {
            let Some(p) = p else { continue };
            if let Err(why) = probe_peer(wanted, p, &world, r) {
                denial = Some(why);
                break;
            }
        }
    }
    let verdict = if denial.is_some() { 2 } else { 1 };
    world
        .rank(rank)
        .cma_verdict
        .store(verdict, Ordering::Release);
    let mut everyone_can = true;
    let mut first_denied = None;
    for r in 0..size {
        let v = loop {
            let v = world.rank(r).cma_verdict.load(Ordering::Acquire);
            if v != 0 {
                break v;
            }
            if Instant::now() > deadline {
                return Err(CommError::Config(format!(
                    "rank {r} did not finish starting within 60 s"
                )));
            }
            if let Some(Some(p)) = peers.get(r)
                && !p.is_alive()
            {
                return Err(CommError::PeerGone {
                    rank: r as i32,
                    pid: p.pid(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        if v == 2 {
            everyone_can = false;
            first_denied.get_or_insert(r);
        }
    }
    let mechanism = if everyone_can {
        wanted
    } else {
        Mechanism::ShmCopy
    };
    let fallback = (!everyone_can).then(|| {
        format!(
            "{wanted} does not reach every rank ({}); this job uses shm-copy (two copies) instead",
            denial.as_deref().unwrap_or("another rank was refused")
        )
    });
    if first_denied == Some(rank)
        && let Some(why) = &fallback
    {
        eprintln!("onecopy: {why}");
    }
    let (auto, auto_source) = match (transport, mechanism) {
        (TransportChoice::Auto, m) if m != Mechanism::ShmCopy => {
            let (table, source) = crate::transport::auto::table_for(&config);
            // A file that cannot be used is worth a line.
            if rank == 0
                && let Source::Builtin(Some(why)) = &source
            {
                eprintln!("onecopy: transport auto uses its built-in table: {why}");
            }
            (table, source)
        }
        _ => (AutoTable::uniform(mechanism), Source::Transport(mechanism)),
    };
    let mut spin_across = Vec::new();
    if oversubscribed && !cpu_of.is_empty() {
        let sharing = |cpu: usize| cpu_of.iter().filter(|&&c| c == cpu).count();
        spin_across = (0..size)
            .map(|p| cpu_of[p] != cpu_of[rank] && sharing(cpu_of[p]) <= 2)
            .collect();
    }
    let job = Job {
        segment: world,
        me: rank,
        peers,
        mechanism,
        auto,
        auto_source,
        limits,
        tuning: tuning(&config),
        oversubscribed,
        spin_across,
    };
    Ok(Universe::of(Engine::new(job), config, rank, size, fallback))
}

/// Tests `mechanism` on peer `r` with a real transfer of its probe word.
fn probe_peer(
    mechanism: Mechanism,
    peer: &Process,
    world: &layout::World,
    r: usize,
) -> Result<(), String> {
    let addr = world.rank(r).probe_addr.load(Ordering::Relaxed) as usize;
    let mut word = [0u8; 16];
    match mechanism {
        Mechanism::ProcMem => {
            let file = crate::transport::procmem::MemFile::open(peer).map_err(|e| e.to_string())?;
            let remote = [crate::vm::RemoteRange::new(addr, 16)];
            file.pull(
                peer,
                &remote,
                &mut [std::io::IoSliceMut::new(&mut word)],
                0,
                16,
                16,
            )
            .map_err(|e| e.to_string())?;
        }
        Mechanism::Vmsplice => {
            let fd = world.rank(r).probe_fd.load(Ordering::Relaxed);
            crate::transport::vmsplice::fetch_any(peer, fd).map_err(|e| e.to_string())?;
            return Ok(());
        }
        _ => peer
            .read_exact(addr, &mut word)
            .map_err(|e| e.to_string())?,
    }
    if &word != PROBE_BYTES {
        return Err(format!("reading rank {r} returned the wrong bytes"));
    }
    if matches!(mechanism, Mechanism::CmaWrite | Mechanism::CmaSplit) {
        // The peer never reads this word again: writing it back unchanged is harmless.
        peer.write_all(addr, PROBE_BYTES)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Binds rank `rank` to one CPU of those this process may use, as MPI launchers do
/// (`ONECOPY_BIND=none` leaves placement to the scheduler): its own CPU when every rank can have
/// one, since a rank that spins while waiting must not share a core with the rank it waits for
/// and the scheduler does not always separate them; otherwise a CPU shared with the ranks next
/// to it. Returns whether there are more ranks than CPUs (then a waiting rank must give its CPU
/// away soon rather than spin), and each rank's CPU where ranks were bound (empty otherwise).
fn bind(rank: usize, size: usize, bind: Bind) -> Result<(bool, Vec<usize>), CommError> {
    let Ok(allowed) = rustix::thread::sched_getaffinity(None) else {
        return Ok((false, Vec::new()));
    };
    let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    let oversubscribed = size > cpus.len();
    if bind == Bind::None || cpus.is_empty() {
        return Ok((oversubscribed, Vec::new()));
    }
    // More ranks than CPUs: consecutive ranks share a CPU (rank r on CPU ⌊r·c/n⌋). Left to the
    // scheduler, ranks moved between CPUs from call to call and a 4-rank 8-byte all-to-all on 2
    // CPUs took 3.4-4.7 µs a call from one round to the next; bound so, 3.46-3.51 (Open MPI,
    // unbound: 3.3-4.5). Round robin (rank r on CPU r mod c) was slower: 3.6-3.9.
    let mut one = rustix::thread::CpuSet::new();
    one.set(cpu_for(rank, size, &cpus));
    // Best effort: a refused binding leaves the scheduler in charge.
    if rustix::thread::sched_setaffinity(None, &one).is_err() {
        return Ok((oversubscribed, Vec::new()));
    }
    Ok((
        oversubscribed,
        (0..size).map(|r| cpu_for(r, size, &cpus)).collect(),
    ))
}

/// The CPU of `cpus` (not empty) for rank `rank` of `size`: its own where there are enough,
/// else the one it shares with the ranks next to it.
fn cpu_for(rank: usize, size: usize, cpus: &[usize]) -> usize {
    if size > cpus.len() {
        cpus[rank * cpus.len() / size]
    } else {
        cpus[rank]
    }
}

/// Protocol thresholds from `config`, checked against the segment's sizes.
fn limits(layout: &Layout, config: &Config) -> Result<Limits, CommError> {
    let max_inline = (layout.ring_cells / 2) * ring::CELL - ring::HEADER;
    let inline = match config.inline_limit_bytes {
        None => crate::config::DEFAULT_INLINE_LIMIT.min(max_inline),
        Some(i) if i <= max_inline => i,
        Some(i) => {
            return Err(CommError::Config(format!(
                "ONECOPY_INLINE_LIMIT={i}: must be a number from 0 to {max_inline} with {} ring cells",
                layout.ring_cells
            )));
        }
    };
    let eager = match config.eager_limit_bytes {
        None => layout.eager_slot_bytes,
        Some(e) if e <= layout.eager_slot_bytes => e,
        Some(e) => {
            return Err(CommError::Config(format!(
                "ONECOPY_EAGER_LIMIT={e}: must be a number from 0 to the slot size, {}",
                layout.eager_slot_bytes
            )));
        }
    }
    .max(inline);
    Ok(Limits {
        inline,
        eager,
        chunk: config.cma_chunk_bytes,
        layout_send_piece: config.layout_send_piece_bytes,
        layout_recv_piece: config.layout_recv_piece_bytes,
    })
}

/// Bytes of the shared segment a job of `ranks` ranks needs with the sizes of `config`.
pub fn segment_bytes(ranks: usize, config: &Config) -> Result<usize, CommError> {
    Ok(Layout::new(ranks, config)?.bytes())
}

/// Lays out a fresh (zeroed) segment for `ranks` ranks with the sizes of `config`; the launcher
/// calls it before spawning.
pub fn init_segment(segment: &Segment, ranks: usize, config: &Config) -> Result<(), CommError> {
    layout::World::init(segment, &Layout::new(ranks, config)?)
}

#[cfg(test)]
mod tests {
    use super::cpu_for;

    #[test]
    fn ranks_get_their_own_cpu_or_share_one_with_their_neighbours() {
        let cpus = [3, 5, 8, 9];
        let of = |size: usize| {
            (0..size)
                .map(|r| cpu_for(r, size, &cpus))
                .collect::<Vec<_>>()
        };
        assert_eq!(of(1), [3]);
        assert_eq!(of(4), [3, 5, 8, 9]);
        assert_eq!(of(5), [3, 3, 5, 8, 9]);
        assert_eq!(of(8), [3, 3, 5, 5, 8, 8, 9, 9]);
        assert_eq!(of(10), [3, 3, 3, 5, 5, 8, 8, 8, 9, 9]);
        assert_eq!(cpu_for(3, 4, &[0, 1]), 1);
        assert_eq!(cpu_for(2, 3, &[0, 1]), 1);
    }
}
