//! onecopy moves messages between processes on one Linux machine with one copy instead of two,
//! using Cross Memory Attach (`process_vm_readv` / `process_vm_writev`), and runs MPI programs on
//! it.
//!
//! The layers, each usable on its own (data flows down, nothing calls up):
//! - [`vm`]: the kernel interface — read and write another process's memory, safely and completely.
//! - [`transport`]: every mechanism for moving bytes between two processes, over iovec lists.
//! - [`shm`]: shared memory segments and futex doorbells.
//! - [`comm`]: the MPI core — communicators, groups, point to point in every mode, requests,
//!   and the progress engine ([`initialize`], [`topology`], [`point_to_point`], [`request`]).
//! - [`coll`]: every collective, written once against the communicator core
//!   ([`collective`]).
//! - [`launch`]: the launcher behind `onecopy run` — segment, ranks, output, failure, teardown.
//! - [`bench`](mod@bench): the measurement harness behind `onecopy bench`.
//! - [`check`]: the self-test behind `onecopy check`.
//! - [`datatype`]: derived datatypes — layouts, bounds, segments, packing, views and their
//!   wire form.
//! - [`config`]: every setting, read once.
//! - [`tools`]: number and hex parsing, hex dumps and exit codes for `peek`/`poke`.
//!
//! The MPI API follows rsmpi's names and paths: `use onecopy::traits::*;` brings every trait in,
//! and the types are where an rsmpi user looks for them.
//!
//! ```no_run
//! use onecopy::traits::*;
//!
//! let universe = onecopy::initialize().expect("start me with `onecopy run`");
//! let world = universe.world();
//! let half = world.split_by_color(onecopy::topology::Color::with_value(world.rank() % 2))?;
//! if let Some(half) = half {
//!     let mut sum = [0i64];
//!     half.all_reduce_into(&[half.rank() as i64], &mut sum, onecopy::collective::SystemOperation::sum())?;
//! }
//! # Ok::<(), onecopy::CommError>(())
//! ```
#![deny(missing_docs)]

pub mod bench;
pub mod check;
pub mod child;
pub mod coll;
pub mod comm;
pub mod config;
pub mod datatype;
pub mod launch;
pub mod shm;
pub mod tools;
pub mod transport;
pub mod vm;

pub use comm::request;
pub use comm::{
    AnyProcess, CommError, Process, SimpleCommunicator, SleepStats, Status, Universe, World,
    initialize, try_initialize,
};

/// Communicators and groups, at rsmpi's path (`mpi::topology`).
pub mod topology {
    pub use crate::comm::{
        Color, Communicator, CommunicatorRelation, Group, GroupRelation, InterCommunicator, Key,
        MAX_COMMUNICATORS, MergeOrder, PROC_NULL, ROOT, Rank, SimpleCommunicator, UNDEFINED,
        UserGroup,
    };
}

/// Point-to-point communication, at rsmpi's path (`mpi::point_to_point`).
pub mod point_to_point {
    pub use crate::comm::{
        ANY_TAG, AnyProcess, Destination, Message, Process, Source, Status, TAG_UB, Tag,
        send_receive_into, send_receive_into_with_tags, send_receive_replace_into,
        send_receive_replace_into_with_tags,
    };
}

/// Collective communication, at rsmpi's path (`mpi::collective`).
pub mod collective {
    pub use crate::coll::{
        CommunicatorCollectives, ImmediateCollectives, ImmediateRoot, Integer, IntegerOperation,
        LocationOperation, LocationValue, Number, Operation, Root, SystemOperation, TypedBlock,
        UserOperation, ValueIndex, reduce_local_into,
    };
}

/// The README's Rust examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;

/// Every trait of the API, for `use onecopy::traits::*;` (as `mpi::traits::*`).
pub mod traits {
    pub use crate::coll::{
        CommunicatorCollectives, ImmediateCollectives, ImmediateRoot, Operation, Root,
    };
    pub use crate::comm::{Communicator, Destination, Group, Source};
    pub use crate::request::{Completion, Scope};
}
