//! onecopy moves messages between processes on one Linux machine with one copy instead of two,
//! using Cross Memory Attach (`process_vm_readv` / `process_vm_writev`).
//!
//! The layers, each usable on its own (data flows down, nothing calls up):
//! - [`vm`]: the kernel interface — read and write another process's memory, safely and completely.
//! - [`transport`]: every mechanism for moving bytes between two processes, behind one trait.
//! - [`comm`]: the MPI-style runtime ([`initialize`], [`World`], point to point, [`request::scope`]).
//! - [`coll`]: collectives (barrier, broadcast, reduce, gather, scatter, all-to-all) on a [`World`].
//! - [`shm`]: shared memory segments and futex doorbells.
//! - [`launch`]: the launcher behind `onecopy run` — segment, ranks, output, failure, teardown.
//! - [`bench`](mod@bench): the measurement harness behind `onecopy bench`.
//! - [`check`]: the self-test behind `onecopy check`.
//! - [`tools`]: number and hex parsing, hex dumps and exit codes for `peek`/`poke`.
#![deny(missing_docs)]

pub mod bench;
pub mod check;
pub mod child;
pub mod coll;
pub mod comm;
pub mod launch;
pub mod shm;
pub mod tools;
pub mod transport;
pub mod vm;

pub use comm::request;
pub use comm::{
    AnyProcess, CommError, Peer, SleepStats, Status, Universe, World, initialize, try_initialize,
};
