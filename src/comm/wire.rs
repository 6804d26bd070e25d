//! The records ranks exchange, as they travel in the rings: their kinds and the payloads of the
//! control records. Every record's header also carries its communicator context and, for a
//! synchronous send, the id its acknowledgement names (see [`super::ring`]).

use bytemuck::{Pod, Zeroable};

use crate::transport::Mechanism;

/// Record kinds.
pub(crate) mod kind {
    /// Data in the record itself.
    pub const INLINE: u8 = 1;
    /// Data in an eager slot; payload [`super::Eager`].
    pub const EAGER: u8 = 2;
    /// Request to send; payload [`super::Rts`].
    pub const RTS: u8 = 3;
    /// Clear to send; payload [`super::Cts`].
    pub const CTS: u8 = 4;
    /// The sender has pushed its share; payload [`super::Pushed`].
    pub const PUSHED: u8 = 5;
    /// The receiver is done with the sender's buffer; payload [`super::Fin`].
    pub const FIN: u8 = 6;
    /// A piece of a streamed message in an eager slot; payload [`super::Chunk`].
    pub const CHUNK: u8 = 7;
    /// The sender waits for an eager slot while the receiver holds some for early messages;
    /// no payload.
    pub const WANT_SLOT: u8 = 8;
    /// A receive has matched a synchronous send; the header's `sync` word names the send.
    pub const ACK: u8 = 9;
}

/// How a rendezvous message's bytes move, as its RTS names it.
pub(crate) mod how {
    use crate::transport::Mechanism;

    /// The wire code of `m`.
    pub fn code(m: Mechanism) -> u32 {
        match m {
            Mechanism::CmaRead => 1,
            Mechanism::CmaWrite => 2,
            Mechanism::CmaSplit => 3,
            Mechanism::ShmCopy => 4,
            Mechanism::ProcMem => 5,
            Mechanism::Vmsplice => 6,
        }
    }

    /// The mechanism of wire code `c`, if it is one.
    pub fn mechanism(c: u32) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|&m| code(m) == c)
    }
}

/// FIN statuses.
pub(crate) mod fin {
    pub const OK: u32 = 0;
    pub const TRUNCATED: u32 = 1;
    pub const FAILED: u32 = 2;
    /// The receiver freed the communicator before taking the message.
    pub const DISCARDED: u32 = 3;
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Eager {
    pub slot: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Rts {
    pub len: u64,
    pub send_id: u32,
    /// The mechanism ([`how`]).
    pub how: u32,
    /// The sender's buffer: one contiguous range, or the start its layout is relative to.
    pub addr: u64,
    /// `vmsplice`: the number of the sender's pipe descriptor the receiver reads.
    pub pipe_fd: u32,
    /// A non-contiguous message (single copy only): the length of its layout's description,
    /// which the receiver reads at `layout_addr` in the sender's memory; 0 for a contiguous one.
    pub layout_len: u32,
    pub layout_addr: u64,
}

impl Rts {
    /// Whether the message is laid out in the sender's memory by a datatype.
    pub fn is_typed(&self) -> bool {
        self.layout_len > 0
    }

    /// The mechanism this RTS asks for.
    pub fn mechanism(&self) -> Option<Mechanism> {
        how::mechanism(self.how)
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Cts {
    pub send_id: u32,
    pub _pad: u32,
    /// The receiver's buffer, for the sender's pushes (zero when streaming).
    pub addr: u64,
    pub len: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Pushed {
    pub send_id: u32,
    pub status: u32,
    pub bytes: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Fin {
    pub send_id: u32,
    pub status: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Chunk {
    pub send_id: u32,
    pub slot: u32,
    pub offset: u64,
    pub len: u64,
}
