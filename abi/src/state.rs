//! The library's state in this process: the runtime, and the tables behind every handle.
//!
//! It lives on the thread that initialized the library; other threads find none and get an
//! error (`MPI_THREAD_FUNNELED`).

use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicU8, Ordering};

use onecopy::SimpleCommunicator;
use onecopy::topology::UserGroup;
use onecopy::traits::*;

use crate::error::{Codes, Error, Result, UserHandler, class};
use crate::handles::{self, MPI_COMM_SELF, MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL, Object, Table};

/// Where the library is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Before `MPI_Init`.
    Before = 0,
    /// Between `MPI_Init` and `MPI_Finalize`.
    Running = 1,
    /// After `MPI_Finalize`.
    After = 2,
}

static PHASE: AtomicU8 = AtomicU8::new(Phase::Before as u8);

/// The library's phase.
pub fn phase() -> Phase {
    match PHASE.load(Ordering::SeqCst) {
        0 => Phase::Before,
        1 => Phase::Running,
        _ => Phase::After,
    }
}

/// A communicator behind a handle.
pub struct CommEntry {
    /// The communicator.
    pub comm: SimpleCommunicator,
    /// Its error handler's handle.
    pub errhandler: c_int,
    /// Its attributes: key and value.
    pub attrs: Vec<(c_int, usize)>,
    /// Its virtual topology, if it has one.
    pub topo: Option<std::rc::Rc<crate::topo::Topo>>,
}

/// Everything behind the handles.
pub struct State {
    /// The job.
    pub universe: onecopy::Universe,
    /// Communicators: 0 is `MPI_COMM_WORLD`, 1 `MPI_COMM_SELF`.
    pub comms: Table<CommEntry>,
    /// Groups.
    pub groups: Table<UserGroup>,
    /// Derived datatypes.
    pub types: Table<crate::types::Derived>,
    /// Requests.
    pub requests: Table<crate::p2p::Req>,
    /// User error handlers.
    pub errhandlers: Table<UserHandler>,
    /// User operations.
    pub ops: Table<crate::coll::UserOp>,
    /// Attribute keys.
    pub keyvals: Table<crate::comm::Keyval>,
    /// Info objects.
    pub infos: Table<Vec<(String, String)>>,
    /// Error codes and their messages.
    pub codes: Codes,
    /// The thread level provided.
    pub thread_level: c_int,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

impl State {
    fn new(universe: onecopy::Universe, thread_level: c_int) -> State {
        let mut comms = Table::new(2);
        comms.set_fixed(
            0,
            CommEntry {
                comm: universe.world(),
                errhandler: MPI_ERRORS_ARE_FATAL,
                attrs: Vec::new(),
                topo: None,
            },
        );
        comms.set_fixed(
            1,
            CommEntry {
                comm: universe.self_communicator(),
                errhandler: MPI_ERRORS_ARE_FATAL,
                attrs: Vec::new(),
                topo: None,
            },
        );
        State {
            universe,
            comms,
            groups: Table::new(0),
            // Indices below 16 are MPICH's pair types.
            types: Table::new(16),
            requests: Table::new(0),
            errhandlers: Table::new(0),
            ops: Table::new(32),
            keyvals: Table::new(16),
            infos: Table::new(2),
            codes: Codes::default(),
            thread_level,
        }
    }

    /// The table index behind communicator handle `handle`.
    pub fn comm_index(handle: c_int) -> Option<usize> {
        match handle {
            MPI_COMM_WORLD => Some(0),
            MPI_COMM_SELF => Some(1),
            h => handles::direct_index(Object::Comm, h).filter(|&i| i >= 2),
        }
    }

    /// The communicator behind `handle`.
    pub fn comm(&self, handle: c_int) -> Result<&CommEntry> {
        State::comm_index(handle)
            .and_then(|i| self.comms.get(i))
            .ok_or_else(|| bad_comm(handle))
    }

    /// The error handler of communicator `handle`, if it is one.
    pub fn errhandler_of(&self, handle: c_int) -> Option<c_int> {
        Some(self.comm(handle).ok()?.errhandler)
    }

    /// This process's rank in the world.
    pub fn world_rank(&self) -> c_int {
        self.universe.world().rank()
    }
}

/// The error for a handle that is not a communicator.
pub fn bad_comm(handle: c_int) -> Error {
    if handle == handles::MPI_COMM_NULL {
        Error::new(class::COMM, "the communicator is MPI_COMM_NULL")
    } else {
        Error::new(
            class::COMM,
            format!(
                "{handle:#x} is not a communicator (freed, another kind of handle, or garbage)"
            ),
        )
    }
}

/// Runs `f` on the state; an error before `MPI_Init`, after `MPI_Finalize` or on another
/// thread. `f` must not call back into the library.
pub fn with<R>(f: impl FnOnce(&mut State) -> Result<R>) -> Result<R> {
    match phase() {
        Phase::Before => return Err(Error::new(class::OTHER, "called before MPI_Init")),
        Phase::After => return Err(Error::new(class::OTHER, "called after MPI_Finalize")),
        Phase::Running => {}
    }
    STATE.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            return Err(Error::new(
                class::OTHER,
                "called from inside a callback of another MPI call (a user operation or error handler)",
            ));
        };
        match guard.as_mut() {
            Some(s) => f(s),
            None => Err(Error::new(
                class::OTHER,
                "called from a thread other than the one that called MPI_Init; onecopy provides MPI_THREAD_FUNNELED",
            )),
        }
    })
}

/// Runs `f` on the state if there is one on this thread and it is free.
pub fn with_any<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    STATE.with(|cell| cell.try_borrow_mut().ok()?.as_mut().map(f))
}

/// The communicator behind `handle`, cloned out of the state.
pub fn comm(handle: c_int) -> Result<SimpleCommunicator> {
    with(|s| Ok(s.comm(handle)?.comm.clone()))
}

/// Starts the library: joins the job `onecopy run` started, or makes a world of one.
pub fn start(thread_level: c_int) -> Result {
    match phase() {
        Phase::Running => return Err(Error::new(class::OTHER, "MPI is already initialized")),
        Phase::After => {
            return Err(Error::new(
                class::OTHER,
                "MPI cannot be initialized again after MPI_Finalize",
            ));
        }
        Phase::Before => {}
    }
    let universe = match onecopy::try_initialize() {
        Ok(Some(u)) => u,
        Ok(None) => onecopy::Universe::single()?,
        Err(e) => {
            return Err(Error::new(
                class::OTHER,
                format!("cannot join the job: {e}"),
            ));
        }
    };
    STATE.with(|cell| *cell.borrow_mut() = Some(State::new(universe, thread_level)));
    PHASE.store(Phase::Running as u8, Ordering::SeqCst);
    Ok(())
}

/// Ends the library: every rank waits for the others, then the runtime goes.
pub fn finish() -> Result {
    let world = with(|s| Ok(s.universe.world()))?;
    world.barrier()?;
    drop(world);
    let state = STATE.with(|cell| cell.borrow_mut().take());
    PHASE.store(Phase::After as u8, Ordering::SeqCst);
    drop(state);
    Ok(())
}
