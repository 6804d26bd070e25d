//! Error classes, error codes with their messages, and error handlers.
//!
//! A failing call gets an error code that carries its class and, for `MPI_Error_string`, a
//! message naming the function and what was wrong. The code goes through the error handler of
//! the communicator the call was on (of `MPI_COMM_WORLD` for calls on none, or on a handle that
//! is no communicator): by default `MPI_ERRORS_ARE_FATAL`, which prints the message and ends
//! the job.

use std::ffi::{c_char, c_int};

use crate::handles::{
    self, MPI_COMM_WORLD, MPI_ERRORS_ABORT, MPI_ERRORS_ARE_FATAL, MPI_ERRORS_RETURN, MPI_SUCCESS,
    Object,
};
use crate::state;

/// Error classes (MPICH's values).
#[allow(missing_docs)]
pub mod class {
    use std::ffi::c_int;
    pub const BUFFER: c_int = 1;
    pub const COUNT: c_int = 2;
    pub const TYPE: c_int = 3;
    pub const TAG: c_int = 4;
    pub const COMM: c_int = 5;
    pub const RANK: c_int = 6;
    pub const ROOT: c_int = 7;
    pub const GROUP: c_int = 8;
    pub const OP: c_int = 9;
    pub const TOPOLOGY: c_int = 10;
    pub const DIMS: c_int = 11;
    pub const ARG: c_int = 12;
    pub const UNKNOWN: c_int = 13;
    pub const TRUNCATE: c_int = 14;
    pub const OTHER: c_int = 15;
    pub const INTERN: c_int = 16;
    pub const IN_STATUS: c_int = 17;
    pub const PENDING: c_int = 18;
    pub const REQUEST: c_int = 19;
    pub const INFO: c_int = 28;
    pub const NO_MEM: c_int = 34;
    pub const NOT_SAME: c_int = 35;
    pub const SPAWN: c_int = 42;
    pub const UNSUPPORTED_OPERATION: c_int = 44;
    pub const WIN: c_int = 45;
    pub const KEYVAL: c_int = 48;
    pub const SIZE: c_int = 51;
    pub const PROC_ABORTED: c_int = 76;
    /// The last predefined class; classes added by `MPI_Add_error_class` come after it.
    pub const LAST_PREDEFINED: c_int = 77;
}

/// What went wrong in a call: the class and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The error class.
    pub class: c_int,
    /// What was wrong, without the function's name.
    pub message: String,
}

impl Error {
    /// An error of `class`.
    pub fn new(class: c_int, message: impl Into<String>) -> Error {
        Error {
            class,
            message: message.into(),
        }
    }
}

/// What a call returns inside the library.
pub type Result<T = ()> = std::result::Result<T, Error>;

impl From<onecopy::CommError> for Error {
    fn from(e: onecopy::CommError) -> Error {
        use onecopy::CommError as E;
        let class = match &e {
            E::Truncated { .. } => class::TRUNCATE,
            E::InvalidRank { .. } => class::RANK,
            E::InvalidTag(_) => class::TAG,
            E::InvalidArgument(_) => class::ARG,
            E::Mismatch { .. } => class::NOT_SAME,
            E::BufferTooSmall { .. } => class::BUFFER,
            E::ContextsExhausted { .. } => class::INTERN,
            E::PeerGone { .. } => class::PROC_ABORTED,
            E::Config(_) | E::Vm(_) | E::ReceiverRefused { .. } | E::Protocol { .. } => {
                class::OTHER
            }
        };
        Error::new(class, e.to_string())
    }
}

impl From<onecopy::datatype::DatatypeError> for Error {
    fn from(e: onecopy::datatype::DatatypeError) -> Error {
        Error::new(class::TYPE, e.to_string())
    }
}

/// The messages behind recent error codes. A code is `class | slot << 7`; a slot is reused
/// after [`KEPT`] more errors, and then the code reads as its class alone.
#[derive(Debug, Default)]
pub struct Codes {
    recent: Vec<(c_int, String)>,
    next: usize,
    /// Classes and codes added by the program, with their strings.
    pub added: Vec<(c_int, c_int, String)>,
    /// The last class or code added.
    pub last_used: c_int,
}

/// How many messages are kept.
const KEPT: usize = 4096;
/// Codes of added classes and codes start here (above every slot code).
pub const FIRST_ADDED_CODE: c_int = ((KEPT as c_int) + 1) << 7;

impl Codes {
    /// A new code for `e` raised by `function`.
    pub fn record(&mut self, function: &str, e: &Error) -> c_int {
        let slot = self.next % KEPT;
        self.next += 1;
        let code = e.class | (((slot + 1) as c_int) << 7);
        let text = format!("{function}: {}", e.message);
        if self.recent.len() <= slot {
            self.recent.push((code, text));
        } else {
            self.recent[slot] = (code, text);
        }
        code
    }

    /// The class of `code`, if it is a code.
    pub fn class_of(&self, code: c_int) -> Option<c_int> {
        if (0..=class::LAST_PREDEFINED).contains(&code) {
            return Some(code);
        }
        if let Some((_, cls, _)) = self.added.iter().find(|(c, _, _)| *c == code) {
            return Some(*cls);
        }
        if code > 0 && code < FIRST_ADDED_CODE && (code & 0x7f) <= class::LAST_PREDEFINED {
            return Some(code & 0x7f);
        }
        None
    }

    /// The string for `code`.
    pub fn text_of(&self, code: c_int) -> Option<String> {
        if let Some((_, _, s)) = self.added.iter().find(|(c, _, _)| *c == code) {
            return Some(s.clone());
        }
        let slot = (code >> 7) as usize;
        if code > 0x7f
            && code < FIRST_ADDED_CODE
            && let Some((c, text)) = self.recent.get(slot - 1)
            && *c == code
        {
            return Some(text.clone());
        }
        self.class_of(code).map(class_text)
    }
}

/// The standard text of an error class.
pub fn class_text(class: c_int) -> String {
    let text = match class {
        MPI_SUCCESS => "no error",
        class::BUFFER => "invalid buffer pointer",
        class::COUNT => "invalid count",
        class::TYPE => "invalid datatype",
        class::TAG => "invalid tag",
        class::COMM => "invalid communicator",
        class::RANK => "invalid rank",
        class::ROOT => "invalid root",
        class::GROUP => "invalid group",
        class::OP => "invalid operation",
        class::TOPOLOGY => "invalid topology",
        class::DIMS => "invalid dimension argument",
        class::ARG => "invalid argument",
        class::UNKNOWN => "unknown error",
        class::TRUNCATE => "message truncated",
        class::OTHER => "other error",
        class::INTERN => "internal error",
        class::IN_STATUS => "error code is in status",
        class::PENDING => "pending request",
        class::REQUEST => "invalid request",
        class::INFO => "invalid info",
        class::NO_MEM => "out of memory",
        class::NOT_SAME => "collective arguments differ between processes",
        class::SPAWN => "cannot spawn processes",
        class::UNSUPPORTED_OPERATION => "operation not supported by onecopy",
        class::WIN => "invalid window",
        class::KEYVAL => "invalid attribute key",
        class::SIZE => "invalid size",
        class::PROC_ABORTED => "a process has aborted or exited",
        _ => return format!("error class {class}"),
    };
    text.to_string()
}

/// A user error handler (`MPI_Comm_errhandler_function`).
pub type HandlerFn = unsafe extern "C" fn(comm: *mut c_int, code: *mut c_int, ...);

/// An error handler made by `MPI_Comm_create_errhandler`: kept while the program's handle or
/// any communicator refers to it.
#[derive(Debug)]
pub struct UserHandler {
    /// The function.
    pub func: HandlerFn,
    /// References: the program's handle (until freed) and every communicator that has it.
    pub refs: usize,
}

/// Takes a reference to error handler `handle` (predefined ones need none); an error if it is
/// not an error handler.
pub fn retain(s: &mut state::State, handle: c_int) -> Result {
    if matches!(
        handle,
        MPI_ERRORS_ARE_FATAL | MPI_ERRORS_RETURN | MPI_ERRORS_ABORT
    ) {
        return Ok(());
    }
    let entry = handles::direct_index(Object::Errhandler, handle)
        .and_then(|i| s.errhandlers.get_mut(i))
        .ok_or_else(|| Error::new(class::ARG, format!("{handle:#x} is not an error handler")))?;
    entry.refs += 1;
    Ok(())
}

/// Drops a reference to error handler `handle`.
pub fn release(s: &mut state::State, handle: c_int) {
    if let Some(i) = handles::direct_index(Object::Errhandler, handle)
        && let Some(entry) = s.errhandlers.get_mut(i)
    {
        entry.refs -= 1;
        if entry.refs == 0 {
            s.errhandlers.remove(i);
        }
    }
}

/// Runs a call: its result becomes an error code, handled by `comm`'s error handler (the
/// world's for `None`). A panic inside is an internal error, never an unwind into C.
pub fn call(function: &'static str, comm: Option<c_int>, f: impl FnOnce() -> Result) -> c_int {
    let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(Error::new(class::INTERN, format!("internal error: {what}")))
        }
    };
    match result {
        Ok(()) => MPI_SUCCESS,
        Err(e) => raise(function, comm.unwrap_or(MPI_COMM_WORLD), &e),
    }
}

/// Raises `e` from `function` on `comm`: records a code and applies the handler; the code.
pub fn raise(function: &str, comm: c_int, e: &Error) -> c_int {
    let code = state::with_any(|s| s.codes.record(function, e)).unwrap_or(e.class);
    handle(function, comm, code, e)
}

/// Applies `comm`'s error handler to `code` (what `e` says): the code back for
/// `MPI_ERRORS_RETURN` and user handlers (after calling them), the end of the job for the
/// fatal ones.
pub fn handle(function: &str, comm: c_int, code: c_int, e: &Error) -> c_int {
    let handler = state::with_any(|s| {
        // A handle that is no communicator has no handler: the world's takes the error.
        let handler = s
            .errhandler_of(comm)
            .or_else(|| s.errhandler_of(MPI_COMM_WORLD))
            .unwrap_or(MPI_ERRORS_ARE_FATAL);
        let user = handles::direct_index(Object::Errhandler, handler)
            .and_then(|i| s.errhandlers.get(i))
            .map(|h| h.func);
        (handler, user)
    })
    .unwrap_or((MPI_ERRORS_ARE_FATAL, None));
    match handler {
        (MPI_ERRORS_RETURN, _) => code,
        (_, Some(func)) => {
            let (mut c, mut k) = (comm, code);
            // SAFETY: the program registered `func` as an error handler of this signature.
            unsafe { func(&mut c, &mut k) };
            code
        }
        _ => {
            eprintln!(
                "onecopy: {function}: {} (error class {}: {})",
                e.message,
                e.class,
                class_text(e.class)
            );
            let rank = state::with_any(|s| s.world_rank()).unwrap_or(0);
            eprintln!(
                "onecopy: rank {rank}: the error handler is MPI_ERRORS_ARE_FATAL; ending the job"
            );
            std::process::exit(e.class.clamp(1, 255));
        }
    }
}

/// Copies `text` into the C buffer `out` of `cap` bytes with a terminating NUL, and its length
/// (without the NUL) into `len`.
///
/// # Safety
/// `out` is valid for `cap` bytes and `len` for a write, or either is null.
pub unsafe fn write_string(text: &str, out: *mut c_char, cap: usize, len: *mut c_int) -> Result {
    if out.is_null() {
        return Err(Error::new(class::ARG, "the string buffer is null"));
    }
    let bytes = text.as_bytes();
    let n = bytes.len().min(cap.saturating_sub(1));
    // SAFETY: the caller's contract; `n < cap`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), n);
        *out.add(n) = 0;
        if !len.is_null() {
            *len = n as c_int;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_keeps_its_class_and_message_until_its_slot_is_reused() {
        let mut codes = Codes::default();
        let e = Error::new(class::TAG, "tag 5 is bad");
        let code = codes.record("MPI_Send", &e);
        assert_ne!(code, class::TAG);
        assert_eq!(codes.class_of(code), Some(class::TAG));
        assert_eq!(codes.text_of(code).unwrap(), "MPI_Send: tag 5 is bad");
        for _ in 0..KEPT {
            codes.record("MPI_Recv", &Error::new(class::RANK, "x"));
        }
        assert_eq!(codes.class_of(code), Some(class::TAG));
        assert_eq!(codes.text_of(code).unwrap(), "invalid tag");
        assert_eq!(codes.class_of(-5), None);
    }
}
