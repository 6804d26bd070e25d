//! The runtime's error type.

use crate::vm::VmError;

/// Errors of the runtime.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommError {
    /// The job's environment or segment is not usable.
    #[error("{0}")]
    Config(String),
    /// A `vm` call failed.
    #[error("{0}")]
    Vm(String),
    /// A peer rank's process has exited.
    #[error("rank {rank} (pid {pid}) has exited; the job cannot continue")]
    PeerGone {
        /// The rank.
        rank: i32,
        /// Its process id.
        pid: i32,
    },
    /// A message was larger than the receive buffer.
    #[error(
        "message of {len} bytes from rank {sender} (tag {tag}) does not fit the {capacity}-byte receive buffer"
    )]
    Truncated {
        /// The sender.
        sender: i32,
        /// The tag.
        tag: i32,
        /// The message length.
        len: usize,
        /// The receive buffer's length.
        capacity: usize,
    },
    /// The receiver did not take a message sent to it.
    #[error("rank {rank} refused the message: {why}")]
    ReceiverRefused {
        /// The receiver.
        rank: i32,
        /// Why.
        why: String,
    },
    /// A peer broke the protocol (a corrupt record in shared memory, an unknown id).
    #[error("protocol error from rank {rank}: {what}")]
    Protocol {
        /// The peer.
        rank: i32,
        /// What was wrong.
        what: String,
    },
    /// A rank number outside the world.
    #[error("rank {rank} is not in this world of {size} ranks")]
    InvalidRank {
        /// The rank asked for.
        rank: i32,
        /// The world's size.
        size: i32,
    },
    /// A tag outside 0 to [`crate::point_to_point::TAG_UB`] (for a send), or a negative tag other
    /// than any-tag (for a receive).
    #[error("tag {0} is not a valid tag; tags are 0 to 2147483647")]
    InvalidTag(i32),
    /// A collective's arguments are unusable on this rank (checked before anything is sent).
    #[error("invalid collective arguments: {0}")]
    InvalidArgument(String),
    /// Ranks called a collective with arguments that do not agree (different counts or roots).
    #[error("collective arguments differ between ranks: {what} (rank {rank})")]
    Mismatch {
        /// The peer whose message did not fit.
        rank: i32,
        /// What differed.
        what: String,
    },
    /// A buffered send does not fit what is free of the attached buffer.
    #[error(
        "a buffered send needs {needed} bytes of the attached buffer, which has {free} of {attached} free; attach a larger buffer"
    )]
    BufferTooSmall {
        /// Bytes the send needs, overhead included.
        needed: usize,
        /// Bytes free now.
        free: usize,
        /// Bytes attached (0: none).
        attached: usize,
    },
    /// No communicator context id is free on every rank of the creating communicator.
    #[error(
        "no communicator id is free on every rank: at most {limit} communicators may exist at once; free some first"
    )]
    ContextsExhausted {
        /// The most communicators alive at once.
        limit: usize,
    },
}

impl CommError {
    /// The rank (of the world) an error names as its cause, if it names one.
    pub fn rank(&self) -> Option<i32> {
        match self {
            CommError::PeerGone { rank, .. }
            | CommError::ReceiverRefused { rank, .. }
            | CommError::Protocol { rank, .. }
            | CommError::Mismatch { rank, .. } => Some(*rank),
            CommError::Truncated { sender, .. } => Some(*sender),
            _ => None,
        }
    }
}

impl From<VmError> for CommError {
    fn from(e: VmError) -> Self {
        CommError::Vm(e.to_string())
    }
}

impl From<crate::shm::ShmError> for CommError {
    fn from(e: crate::shm::ShmError) -> Self {
        CommError::Config(e.to_string())
    }
}

impl From<crate::config::ConfigError> for CommError {
    fn from(e: crate::config::ConfigError) -> Self {
        CommError::Config(e.to_string())
    }
}
