//! The runtime core: ranks started by `onecopy run`, communicators and groups, point-to-point
//! messages in every mode, requests, and the progress engine that moves them.
//!
//! Names follow rsmpi (the `mpi` crate), at rsmpi's paths from the crate root
//! ([`crate::topology`], [`crate::point_to_point`], [`crate::request`], [`crate::traits`]).
//! Unlike rsmpi, operations return `Result`: a dead peer, a truncated message or a corrupt
//! record is an error value, not an abort.
//!
//! How it fits together, from the top:
//! - [`communicator`](crate::topology): [`SimpleCommunicator`] and [`InterCommunicator`] over a
//!   core each exposes, and the [`Communicator`] trait; `create` makes new ones (dup, split,
//!   create, intercommunicators, merge), agreeing on context ids (`context`);
//! - [`group`](crate::topology::UserGroup): groups and their set operations;
//! - [`point_to_point`](crate::point_to_point): the [`Source`] and [`Destination`] traits,
//!   statuses, matched-probe messages;
//! - [`request`]: requests, scopes, persistent requests, completion of several at once;
//! - `runtime`: what the communicators of a process share (engine, configuration, ids);
//! - `engine`: matching on (context, source, tag), the inline, eager and rendezvous protocols,
//!   progress; rendezvous bytes move by [`crate::transport`];
//! - `ring`, `wire`, [`layout`]: the records, their payloads, and the shared segment;
//! - `start`: joining a job ([`initialize`], [`join`]); [`env`]: what the launcher tells a rank.
//!
//! Collectives ([`crate::coll`]) are written against the same core, above this module.

pub(crate) mod buffer;
mod communicator;
pub(crate) mod context;
mod create;
mod engine;
pub mod env;
mod error;
mod group;
pub mod layout;
mod point_to_point;
pub mod request;
mod ring;
mod runtime;
mod start;
pub(crate) mod tags;
mod wire;

pub use buffer::{Buffer, BufferMut};
pub use communicator::{
    Color, CommCore, Communicator, CommunicatorRelation, InterCommunicator, Key, MergeOrder,
    PROC_NULL, ROOT, Rank, SimpleCommunicator, Tag, UNDEFINED, World,
};
pub use context::MAX_COMMUNICATORS;
pub use engine::SleepStats;
pub use error::CommError;
pub use group::{Group, GroupRelation, UserGroup};
pub use layout::{Layout, MAX_RANKS};
pub use point_to_point::{
    ANY_TAG, AnyProcess, Destination, Message, Process, Source, Status, TAG_UB, send_receive_into,
    send_receive_into_with_tags, send_receive_replace_into, send_receive_replace_into_with_tags,
};
pub use start::{
    BSEND_OVERHEAD, JobSpec, Universe, init_segment, initialize, join, segment_bytes,
    try_initialize,
};

pub(crate) use engine::{Action, Combine, RecvBuf, Schedule, SendBuf, Shape};
