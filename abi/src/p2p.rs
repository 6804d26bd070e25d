//! Point to point: every send mode, receives, probes, matched probes, requests (immediate and
//! persistent), cancel, and the buffered-send buffer.
//!
//! A request's buffer is the program's memory, lent until the request completes, as MPI says;
//! the library keeps whatever the request borrows besides (a view over a derived datatype)
//! beside it in the request table.

use std::ffi::{c_int, c_void};

use onecopy::SimpleCommunicator;
use onecopy::datatype::{Datatype, MutView, View};
use onecopy::point_to_point::{Message, Status};
use onecopy::request::{PersistentRequest, Request, SendMode, StaticScope};
use onecopy::traits::*;

use crate::error::{Error, Result, call, class};
use crate::export::mpi_export;
use crate::handles::{
    self, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_PROC_NULL, MPI_REQUEST_NULL, MpiStatus, Object, TAG_UB,
};
use crate::state;
use crate::types::{self, Ty};

/// A send buffer as the runtime takes it: contiguous bytes, or a view over a layout (with the
/// datatype it borrows).
pub struct Outgoing {
    pub(crate) bytes: &'static [u8],
    pub(crate) view: Option<Box<View<'static>>>,
    _datatype: Option<Box<Datatype>>,
}

impl Outgoing {
    /// The contiguous bytes (empty for a view).
    pub fn bytes_ref(&self) -> &[u8] {
        self.bytes
    }

    /// The view over a layout, if it is one.
    pub fn view_ref(&self) -> Option<&View<'static>> {
        self.view.as_deref()
    }
}

/// A receive buffer as the runtime takes it.
pub struct Incoming {
    pub(crate) bytes: &'static mut [u8],
    pub(crate) view: Option<Box<MutView<'static>>>,
    _datatype: Option<Box<Datatype>>,
}

/// Sees `count` elements of `ty` at `ptr` as a send buffer.
///
/// # Safety
/// The program lends the memory for reading until the operation completes.
pub unsafe fn outgoing(ptr: *const c_void, count: usize, ty: &Ty) -> Result<Outgoing> {
    match types::place(ptr, count, ty)? {
        Ok((offset, len)) => Ok(Outgoing {
            // SAFETY: the caller's contract.
            bytes: unsafe { types::bytes(ptr, offset, len) },
            view: None,
            _datatype: None,
        }),
        Err(p) => {
            let datatype = Box::new(p.datatype);
            // SAFETY: the box is kept beside the view, which it outlives (field order).
            let d: &'static Datatype = unsafe { &*(datatype.as_ref() as *const Datatype) };
            // SAFETY: the caller's contract.
            let buf = unsafe { types::bytes(ptr, p.offset, p.len) };
            Ok(Outgoing {
                bytes: &[],
                view: Some(Box::new(View::with_count_and_datatype(buf, count, d)?)),
                _datatype: Some(datatype),
            })
        }
    }
}

/// Sees `count` elements of `ty` at `ptr` as a receive buffer.
///
/// # Safety
/// The program lends the memory for writing until the operation completes.
pub unsafe fn incoming(ptr: *mut c_void, count: usize, ty: &Ty) -> Result<Incoming> {
    match types::place(ptr, count, ty)? {
        Ok((offset, len)) => Ok(Incoming {
            // SAFETY: the caller's contract.
            bytes: unsafe { types::bytes_mut(ptr, offset, len) },
            view: None,
            _datatype: None,
        }),
        Err(p) => {
            let datatype = Box::new(p.datatype);
            // SAFETY: the box is kept beside the view, which it outlives (field order).
            let d: &'static Datatype = unsafe { &*(datatype.as_ref() as *const Datatype) };
            // SAFETY: the caller's contract.
            let buf = unsafe { types::bytes_mut(ptr, p.offset, p.len) };
            Ok(Incoming {
                bytes: &mut [],
                view: Some(Box::new(MutView::with_count_and_datatype(buf, count, d)?)),
                _datatype: Some(datatype),
            })
        }
    }
}

/// Runs `$e` with `$b` bound to the buffer of an [`Outgoing`] (`&[u8]` or `&View`).
macro_rules! with_out {
    ($o:expr, |$b:ident| $e:expr) => {
        match &$o.view {
            None => {
                let $b: &'static [u8] = $o.bytes;
                $e
            }
            Some(v) => {
                // SAFETY: the view is boxed and kept with the request as long as it is used.
                let $b: &'static onecopy::datatype::View<'static> =
                    unsafe { &*(v.as_ref() as *const onecopy::datatype::View<'static>) };
                $e
            }
        }
    };
}

/// Runs `$e` with `$b` bound to the buffer of an [`Incoming`] (`&mut [u8]` or `&mut MutView`).
macro_rules! with_in {
    ($i:expr, |$b:ident| $e:expr) => {
        match &mut $i.view {
            None => {
                // SAFETY: the program lent the bytes for the request's life.
                let $b: &'static mut [u8] = unsafe { &mut *($i.bytes as *mut [u8]) };
                $e
            }
            Some(v) => {
                // SAFETY: the view is boxed and kept with the request as long as it is used.
                let $b: &'static mut onecopy::datatype::MutView<'static> =
                    unsafe { &mut *(v.as_mut() as *mut onecopy::datatype::MutView<'static>) };
                $e
            }
        }
    };
}

pub(crate) use {with_in, with_out};

/// A request behind a handle.
pub struct Req {
    /// What it is.
    pub kind: Kind,
    /// The buffers it borrows, dropped after it.
    _send: Option<Outgoing>,
    _recv: Option<Incoming>,
    /// Scratch memory it reads or writes (8-byte aligned), dropped after it.
    _keep: Vec<Vec<u64>>,
}

/// The kinds of request.
pub enum Kind {
    /// An operation in flight (`None` while a call holds it).
    Active(Option<Request<'static, StaticScope>>),
    /// Finished when it started (to the null process): its status.
    Done(MpiStatus),
    /// A persistent request, and the result a look without completing it found
    /// (`MPI_Testall`, `MPI_Request_get_status`), to give when it is completed.
    Persistent(
        PersistentRequest<'static, StaticScope>,
        Option<Result<MpiStatus>>,
    ),
    /// A generalized request (`MPI_Grequest_start`).
    Generalized(Grequest),
}

/// `MPI_Grequest_query_function`.
pub type QueryFn = unsafe extern "C" fn(extra: *mut c_void, status: *mut MpiStatus) -> c_int;
/// `MPI_Grequest_free_function`.
pub type FreeFn = unsafe extern "C" fn(extra: *mut c_void) -> c_int;
/// `MPI_Grequest_cancel_function`.
pub type CancelFn = unsafe extern "C" fn(extra: *mut c_void, complete: c_int) -> c_int;

/// A request the program completes itself, from any thread, with `MPI_Grequest_complete`.
#[derive(Debug)]
pub struct Grequest {
    query: QueryFn,
    free: FreeFn,
    cancel: CancelFn,
    extra: usize,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Completion flags of generalized requests by handle, reachable from every thread.
static GREQUESTS: std::sync::Mutex<Vec<(c_int, std::sync::Arc<std::sync::atomic::AtomicBool>)>> =
    std::sync::Mutex::new(Vec::new());

impl Grequest {
    fn is_done(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Its status (from the query function), then the free function.
    fn conclude(self, handle: c_int) -> Result<MpiStatus> {
        GREQUESTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(h, _)| *h != handle);
        let mut st = MpiStatus::empty();
        // SAFETY: the program's functions, with its extra state.
        let (q, f) = unsafe {
            (
                (self.query)(self.extra as *mut c_void, &mut st),
                (self.free)(self.extra as *mut c_void),
            )
        };
        if q != 0 {
            return Err(Error::new(
                q,
                "the generalized request's query function failed",
            ));
        }
        if f != 0 {
            return Err(Error::new(
                f,
                "the generalized request's free function failed",
            ));
        }
        Ok(st)
    }
}

impl Req {
    fn active(
        r: Request<'static, StaticScope>,
        send: Option<Outgoing>,
        recv: Option<Incoming>,
    ) -> Req {
        Req {
            kind: Kind::Active(Some(r)),
            _send: send,
            _recv: recv,
            _keep: Vec::new(),
        }
    }

    /// A request that uses scratch memory `keep` until it finishes.
    pub(crate) fn with_scratch(r: Request<'static, StaticScope>, keep: Vec<Vec<u64>>) -> Req {
        Req {
            kind: Kind::Active(Some(r)),
            _send: None,
            _recv: None,
            _keep: keep,
        }
    }

    /// A request that finished as it started.
    pub(crate) fn done(status: MpiStatus) -> Req {
        Req {
            kind: Kind::Done(status),
            _send: None,
            _recv: None,
            _keep: Vec::new(),
        }
    }
}

/// The status MPI reports for onecopy's.
pub fn status(s: &Status) -> MpiStatus {
    if s.source_rank() == onecopy::topology::PROC_NULL {
        return MpiStatus::new(MPI_PROC_NULL, MPI_ANY_TAG, 0, s.is_cancelled());
    }
    MpiStatus::new(
        s.source_rank(),
        s.tag(),
        s.count_bytes() as u64,
        s.is_cancelled(),
    )
}

fn null_status() -> MpiStatus {
    MpiStatus::new(MPI_PROC_NULL, MPI_ANY_TAG, 0, false)
}

fn check_send_tag(tag: c_int) -> Result {
    if (0..=TAG_UB).contains(&tag) {
        Ok(())
    } else {
        Err(Error::new(
            class::TAG,
            format!("tag {tag} is not a valid send tag (0 to MPI_TAG_UB = {TAG_UB})"),
        ))
    }
}

fn check_recv_tag(tag: c_int) -> Result {
    if tag == MPI_ANY_TAG || (0..=TAG_UB).contains(&tag) {
        Ok(())
    } else {
        Err(Error::new(
            class::TAG,
            format!("tag {tag} is not a valid receive tag (0 to MPI_TAG_UB, or MPI_ANY_TAG)"),
        ))
    }
}

/// Checks `rank` as a destination of `comm`: `Ok(None)` for the null process.
pub fn check_dest(comm: &SimpleCommunicator, rank: c_int) -> Result<Option<c_int>> {
    if rank == MPI_PROC_NULL {
        return Ok(None);
    }
    if rank < 0 || rank >= comm.target_size() {
        return Err(Error::new(
            class::RANK,
            format!(
                "rank {rank} is not in the communicator of {} ranks",
                comm.target_size()
            ),
        ));
    }
    Ok(Some(rank))
}

/// A receive's source: `Ok(None)` for the null process, `Some(None)` for any.
fn check_source(comm: &SimpleCommunicator, rank: c_int) -> Result<Option<Option<c_int>>> {
    if rank == MPI_ANY_SOURCE {
        return Ok(Some(None));
    }
    Ok(check_dest(comm, rank)?.map(Some))
}

fn mode_name(mode: SendMode) -> &'static str {
    match mode {
        SendMode::Standard => "MPI_Send",
        SendMode::Synchronous => "MPI_Ssend",
        SendMode::Ready => "MPI_Rsend",
        SendMode::Buffered => "MPI_Bsend",
    }
}

/// A send's result as MPI reports it: a receiver that refused the message (too small a
/// buffer) gets the error itself; for the sender the send is complete, its buffer free.
fn sent<T>(
    result: std::result::Result<T, onecopy::CommError>,
    complete: T,
) -> std::result::Result<T, onecopy::CommError> {
    match result {
        Err(onecopy::CommError::ReceiverRefused { .. }) => Ok(complete),
        other => other,
    }
}

/// A blocking send in `mode`.
pub(crate) fn send(
    buf: *const c_void,
    count: c_int,
    datatype: c_int,
    dest: c_int,
    tag: c_int,
    comm: c_int,
    mode: SendMode,
) -> c_int {
    call(mode_name(mode), Some(comm), || {
        let c = state::comm(comm)?;
        let ty = types::ty(datatype)?;
        let n = types::count(count)?;
        check_send_tag(tag)?;
        let Some(dest) = check_dest(&c, dest)? else {
            return Ok(());
        };
        // SAFETY: the program lends the buffer for the call.
        let o = unsafe { outgoing(buf, n, &ty)? };
        let p = c.process_at_rank(dest);
        let result = with_out!(o, |b| match mode {
            SendMode::Standard => p.send_with_tag(b, tag),
            SendMode::Synchronous => p.synchronous_send_with_tag(b, tag),
            SendMode::Ready => p.ready_send_with_tag(b, tag),
            SendMode::Buffered => p.buffered_send_with_tag(b, tag),
        });
        sent(result, ())?;
        Ok(())
    })
}

/// A blocking receive; its status.
pub(crate) fn recv(
    buf: *mut c_void,
    count: c_int,
    datatype: c_int,
    source: c_int,
    tag: c_int,
    comm: c_int,
) -> Result<MpiStatus> {
    let c = state::comm(comm)?;
    let ty = types::ty(datatype)?;
    let n = types::count(count)?;
    check_recv_tag(tag)?;
    let Some(source) = check_source(&c, source)? else {
        return Ok(null_status());
    };
    // SAFETY: the program lends the buffer for the call.
    let mut i = unsafe { incoming(buf, n, &ty)? };
    let s = with_in!(i, |b| match source {
        Some(r) => c.process_at_rank(r).receive_into_with_tag(b, tag),
        None => c.any_process().receive_into_with_tag(b, tag),
    })?;
    Ok(status(&s))
}

pub(crate) fn store_request(r: Req, out: *mut c_int) -> Result {
    if out.is_null() {
        return Err(Error::new(class::ARG, "the request output is null"));
    }
    let index = state::with(|s| {
        s.requests
            .insert(r)
            .ok_or_else(|| Error::new(class::INTERN, "too many requests"))
    })?;
    // SAFETY: non-null; the program's output.
    unsafe { *out = handles::direct(Object::Request, index) };
    Ok(())
}

/// Starts a send in `mode`.
// MPI's own argument list.
#[allow(clippy::too_many_arguments)]
pub(crate) fn isend(
    buf: *const c_void,
    count: c_int,
    datatype: c_int,
    dest: c_int,
    tag: c_int,
    comm: c_int,
    mode: SendMode,
    request: *mut c_int,
) -> Result {
    let c = state::comm(comm)?;
    let ty = types::ty(datatype)?;
    let n = types::count(count)?;
    check_send_tag(tag)?;
    let Some(dest) = check_dest(&c, dest)? else {
        return store_request(Req::done(null_status()), request);
    };
    // SAFETY: the program lends the buffer until the request completes.
    let o = unsafe { outgoing(buf, n, &ty)? };
    let p = c.process_at_rank(dest);
    let r = with_out!(o, |b| p.immediate_send_in(StaticScope, b, tag, mode))?;
    store_request(Req::active(r, Some(o), None), request)
}

/// Starts a receive.
pub(crate) fn irecv(
    buf: *mut c_void,
    count: c_int,
    datatype: c_int,
    source: c_int,
    tag: c_int,
    comm: c_int,
    request: *mut c_int,
) -> Result {
    let c = state::comm(comm)?;
    let ty = types::ty(datatype)?;
    let n = types::count(count)?;
    check_recv_tag(tag)?;
    let Some(source) = check_source(&c, source)? else {
        return store_request(Req::done(null_status()), request);
    };
    // SAFETY: the program lends the buffer until the request completes.
    let mut i = unsafe { incoming(buf, n, &ty)? };
    let r = with_in!(i, |b| match source {
        Some(r) => c
            .process_at_rank(r)
            .immediate_receive_into_with_tag(StaticScope, b, tag),
        None => c
            .any_process()
            .immediate_receive_into_with_tag(StaticScope, b, tag),
    })?;
    store_request(Req::active(r, None, Some(i)), request)
}

fn request_index(handle: c_int) -> Result<usize> {
    handles::direct_index(Object::Request, handle)
        .filter(|&i| i < MESSAGE_BASE)
        .ok_or_else(|| {
            Error::new(
                class::REQUEST,
                format!("{handle:#x} is not a request (freed, another kind of handle, or garbage)"),
            )
        })
}

/// What finishing a request gave.
enum Finished {
    /// Its status, or its error.
    Done(Result<MpiStatus>),
    /// Not finished yet.
    Pending,
}

/// Tests or waits for request `*request`; a finished non-persistent request is freed and its
/// handle set to `MPI_REQUEST_NULL`.
fn finish(request: *mut c_int, block: bool) -> Result<Finished> {
    if request.is_null() {
        return Err(Error::new(class::ARG, "the request argument is null"));
    }
    // SAFETY: non-null; the program's request.
    let handle = unsafe { *request };
    if handle == MPI_REQUEST_NULL {
        return Ok(Finished::Done(Ok(MpiStatus::empty())));
    }
    let index = request_index(handle)?;
    // Take the operation out, so that waiting holds no borrow of the state.
    enum Taken {
        /// An operation, and whether it is a send of the program's.
        Once(Request<'static, StaticScope>, bool),
        Done(MpiStatus),
        Persistent(
            PersistentRequest<'static, StaticScope>,
            Option<Result<MpiStatus>>,
        ),
        General(Grequest),
    }
    let taken = state::with(|s| {
        let r = s.requests.get_mut(index).ok_or_else(|| {
            Error::new(
                class::REQUEST,
                format!("{handle:#x} is not a request (freed?)"),
            )
        })?;
        let is_send = r._send.is_some();
        Ok(match &mut r.kind {
            Kind::Active(op) => Taken::Once(
                op.take().ok_or_else(|| {
                    Error::new(
                        class::REQUEST,
                        "the request is being completed by another call",
                    )
                })?,
                is_send,
            ),
            Kind::Done(s) => Taken::Done(*s),
            Kind::Generalized(_) => {
                let Some(Req {
                    kind: Kind::Generalized(g),
                    ..
                }) = s.requests.remove(index)
                else {
                    unreachable!("checked above")
                };
                Taken::General(g)
            }
            Kind::Persistent(..) => {
                let Some(Req {
                    kind: Kind::Persistent(p, null),
                    ..
                }) = s
                    .requests
                    .get_mut(index)
                    .map(|r| std::mem::replace(r, Req::done(MpiStatus::empty())))
                else {
                    unreachable!("checked above")
                };
                Taken::Persistent(p, null)
            }
        })
    })?;
    let free = |request: *mut c_int| -> Result {
        state::with(|s| {
            s.requests.remove(index);
            Ok(())
        })?;
        // SAFETY: non-null.
        unsafe { *request = MPI_REQUEST_NULL };
        Ok(())
    };
    match taken {
        Taken::Done(st) => {
            free(request)?;
            Ok(Finished::Done(Ok(st)))
        }
        Taken::Once(r, is_send) => {
            let result = if block {
                Some(r.wait())
            } else {
                match r.test() {
                    Ok(result) => Some(result),
                    Err(r) => {
                        state::with(|s| {
                            if let Some(Req {
                                kind: Kind::Active(op),
                                ..
                            }) = s.requests.get_mut(index)
                            {
                                *op = Some(r);
                            }
                            Ok(())
                        })?;
                        None
                    }
                }
            };
            match result {
                None => Ok(Finished::Pending),
                Some(result) => {
                    free(request)?;
                    let result = result.map(|s| status(&s));
                    let result = if is_send {
                        sent(result, MpiStatus::empty())
                    } else {
                        result
                    };
                    Ok(Finished::Done(result.map_err(Error::from)))
                }
            }
        }
        Taken::General(g) => {
            while block && !g.is_done() {
                std::thread::yield_now();
            }
            if !g.is_done() {
                let i = state::with(|s| {
                    s.requests
                        .insert(Req {
                            kind: Kind::Generalized(g),
                            _send: None,
                            _recv: None,
                            _keep: Vec::new(),
                        })
                        .ok_or_else(|| Error::new(class::INTERN, "too many requests"))
                })?;
                debug_assert_eq!(i, index, "a freed slot is reused first");
                return Ok(Finished::Pending);
            }
            // SAFETY: non-null.
            unsafe { *request = MPI_REQUEST_NULL };
            Ok(Finished::Done(g.conclude(handle)))
        }
        Taken::Persistent(mut p, found) => {
            let result = if let Some(found) = found {
                Some(found)
            } else if !p.is_active() {
                Some(Ok(MpiStatus::empty()))
            } else if block {
                Some(p.wait().map(|s| status(&s)).map_err(Error::from))
            } else {
                p.test()
                    .map_err(Error::from)
                    .map(|o| o.map(|s| status(&s)))
                    .transpose()
            };
            // Put it back: a persistent request stays until freed.
            state::with(|s| {
                if let Some(r) = s.requests.get_mut(index) {
                    let old = std::mem::replace(&mut r.kind, Kind::Persistent(p, None));
                    drop(old);
                }
                Ok(())
            })?;
            Ok(match result {
                None => Finished::Pending,
                Some(r) => Finished::Done(r),
            })
        }
    }
}

/// Writes `st` (with its error) into `statuses[i]` unless ignored.
///
/// # Safety
/// `statuses` is `MPI_STATUSES_IGNORE` or holds more than `i` statuses.
unsafe fn store_at(statuses: *mut MpiStatus, i: usize, st: MpiStatus) {
    if !statuses.is_null() && statuses as usize != handles::MPI_STATUS_IGNORE {
        // SAFETY: the caller's contract.
        unsafe { statuses.add(i).write(st) };
    }
}

/// `n` request handles at `p`.
///
/// # Safety
/// `p` holds `n` handles, or `n` is 0.
unsafe fn request_array<'a>(p: *mut c_int, n: c_int) -> Result<&'a mut [c_int]> {
    let n = types::count(n)?;
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Error::new(class::ARG, "the request array is null"));
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

/// Whether `handle` names a request that would report something (not null, not inactive).
fn is_live(handle: c_int) -> bool {
    if handle == MPI_REQUEST_NULL {
        return false;
    }
    state::with(|s| {
        Ok(
            match handles::direct_index(Object::Request, handle).and_then(|i| s.requests.get(i)) {
                Some(Req {
                    kind: Kind::Persistent(p, found),
                    ..
                }) => p.is_active() || found.is_some(),
                Some(_) => true,
                None => true,
            },
        )
    })
    .unwrap_or(true)
}

/// Lets the other ranks run between rounds of testing (each test is a round of progress).
fn progress() {
    std::thread::yield_now();
}

fn test_some(
    reqs: &mut [c_int],
    statuses: *mut MpiStatus,
    all_at_once: bool,
) -> Result<Vec<usize>> {
    let mut done = Vec::new();
    let mut failed = false;
    for (i, h) in reqs.iter_mut().enumerate() {
        if !is_live(*h) {
            continue;
        }
        match finish(h, false)? {
            Finished::Pending => {}
            Finished::Done(r) => {
                let st = r.unwrap_or_else(|e| {
                    failed = true;
                    let mut st = MpiStatus::empty();
                    st.error = e.class;
                    st
                });
                // SAFETY: the program passes `reqs.len()` statuses or ignores them.
                unsafe { store_at(statuses, if all_at_once { i } else { done.len() }, st) };
                done.push(i);
            }
        }
    }
    if failed {
        return Err(Error::new(
            class::IN_STATUS,
            "some requests failed; their statuses hold the errors",
        ));
    }
    Ok(done)
}

/// Buffers attached for buffered sends: the program's pointer and size.
static ATTACHED: std::sync::Mutex<Option<(usize, c_int)>> = std::sync::Mutex::new(None);

/// Message handles sit above this index of the request space.
const MESSAGE_BASE: usize = 0x0200_0000;

/// `MPI_MESSAGE_NO_PROC`.
pub const MPI_MESSAGE_NO_PROC: c_int = 0x6c00_0000;

thread_local! {
    static MESSAGES: std::cell::RefCell<handles::Table<Message>> = std::cell::RefCell::new(handles::Table::new(0));
}

fn probe_status(comm: c_int, source: c_int, tag: c_int, block: bool) -> Result<Option<MpiStatus>> {
    let c = state::comm(comm)?;
    check_recv_tag(tag)?;
    let Some(source) = check_source(&c, source)? else {
        return Ok(Some(null_status()));
    };
    let s = match (source, block) {
        (Some(r), true) => Some(c.process_at_rank(r).probe_with_tag(tag)?),
        (None, true) => Some(c.any_process().probe_with_tag(tag)?),
        (Some(r), false) => c.process_at_rank(r).immediate_probe_with_tag(tag)?,
        (None, false) => c.any_process().immediate_probe_with_tag(tag)?,
    };
    Ok(s.map(|s| status(&s)))
}

fn matched_probe(
    comm: c_int,
    source: c_int,
    tag: c_int,
    block: bool,
    message: *mut c_int,
) -> Result<Option<MpiStatus>> {
    if message.is_null() {
        return Err(Error::new(class::ARG, "the message output is null"));
    }
    let c = state::comm(comm)?;
    check_recv_tag(tag)?;
    let Some(source) = check_source(&c, source)? else {
        // SAFETY: non-null.
        unsafe { *message = MPI_MESSAGE_NO_PROC };
        return Ok(Some(null_status()));
    };
    let found = match (source, block) {
        (Some(r), true) => Some(c.process_at_rank(r).matched_probe_with_tag(tag)?),
        (None, true) => Some(c.any_process().matched_probe_with_tag(tag)?),
        (Some(r), false) => c.process_at_rank(r).immediate_matched_probe_with_tag(tag)?,
        (None, false) => c.any_process().immediate_matched_probe_with_tag(tag)?,
    };
    let Some((m, s)) = found else { return Ok(None) };
    let index = MESSAGES
        .with(|t| t.borrow_mut().insert(m))
        .ok_or_else(|| Error::new(class::INTERN, "too many messages"))?;
    // SAFETY: non-null.
    unsafe { *message = handles::direct(Object::Request, MESSAGE_BASE + index) };
    Ok(Some(status(&s)))
}

fn take_message(message: *mut c_int) -> Result<Option<Message>> {
    if message.is_null() {
        return Err(Error::new(class::ARG, "the message argument is null"));
    }
    // SAFETY: non-null.
    let h = unsafe { *message };
    if h == MPI_MESSAGE_NO_PROC {
        // SAFETY: non-null.
        unsafe { *message = MPI_REQUEST_NULL };
        return Ok(None);
    }
    let m = handles::direct_index(Object::Request, h)
        .and_then(|i| i.checked_sub(MESSAGE_BASE))
        .and_then(|i| MESSAGES.with(|t| t.borrow_mut().remove(i)))
        .ok_or_else(|| {
            Error::new(
                class::REQUEST,
                format!("{h:#x} is not a message handle (received already, or garbage)"),
            )
        })?;
    // SAFETY: non-null.
    unsafe { *message = MPI_REQUEST_NULL };
    Ok(Some(m))
}

#[allow(clippy::too_many_arguments)]
fn persistent(
    buf: *mut c_void,
    count: c_int,
    datatype: c_int,
    rank: c_int,
    tag: c_int,
    comm: c_int,
    mode: Option<SendMode>,
    request: *mut c_int,
) -> Result {
    let c = state::comm(comm)?;
    let ty = types::ty(datatype)?;
    let n = types::count(count)?;
    let req = match mode {
        Some(mode) => {
            check_send_tag(tag)?;
            let dest = check_dest(&c, rank)?;
            // SAFETY: the program lends the buffer until the request is freed.
            let o = unsafe { outgoing(buf, n, &ty)? };
            let p = c.process_at_rank(dest.unwrap_or(MPI_PROC_NULL));
            let r = with_out!(o, |b| p.send_init_in(StaticScope, b, tag, mode))?;
            Req {
                kind: Kind::Persistent(r, None),
                _send: Some(o),
                _recv: None,
                _keep: Vec::new(),
            }
        }
        None => {
            check_recv_tag(tag)?;
            let source = check_source(&c, rank)?;
            // SAFETY: the program lends the buffer until the request is freed.
            let mut i = unsafe { incoming(buf, n, &ty)? };
            let r = with_in!(i, |b| match source {
                Some(Some(r)) => c
                    .process_at_rank(r)
                    .receive_init_with_tag(StaticScope, b, tag),
                Some(None) => c.any_process().receive_init_with_tag(StaticScope, b, tag),
                None => c
                    .process_at_rank(MPI_PROC_NULL)
                    .receive_init_with_tag(StaticScope, b, tag),
            })?;
            Req {
                kind: Kind::Persistent(r, None),
                _send: None,
                _recv: Some(i),
                _keep: Vec::new(),
            }
        }
    };
    store_request(req, request)
}

fn start(handle: c_int) -> Result {
    let index = request_index(handle)?;
    // Take it out while it starts: starting may progress the engine, never the library.
    let mut r = state::with(|s| {
        let r = s
            .requests
            .get_mut(index)
            .ok_or_else(|| Error::new(class::REQUEST, "the request was freed"))?;
        match &r.kind {
            Kind::Persistent(..) => Ok(std::mem::replace(
                &mut r.kind,
                Kind::Done(MpiStatus::empty()),
            )),
            _ => Err(Error::new(
                class::REQUEST,
                "MPI_Start needs a persistent request",
            )),
        }
    })?;
    let result = match &mut r {
        Kind::Persistent(p, found) if p.is_active() || found.is_some() => {
            Err(Error::new(class::REQUEST, "the request is already active"))
        }
        Kind::Persistent(p, _) => p.start().map_err(Error::from),
        _ => unreachable!("checked above"),
    };
    state::with(|s| {
        if let Some(slot) = s.requests.get_mut(index) {
            slot.kind = r;
        }
        Ok(())
    })?;
    result
}

mpi_export! {
    /// `MPI_Send`.
    fn MPI_Send / PMPI_Send(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int) -> c_int {
        send(buf, count, datatype, dest, tag, comm, SendMode::Standard)
    }

    /// `MPI_Ssend`.
    fn MPI_Ssend / PMPI_Ssend(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int) -> c_int {
        send(buf, count, datatype, dest, tag, comm, SendMode::Synchronous)
    }

    /// `MPI_Rsend`.
    fn MPI_Rsend / PMPI_Rsend(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int) -> c_int {
        send(buf, count, datatype, dest, tag, comm, SendMode::Ready)
    }

    /// `MPI_Bsend`.
    fn MPI_Bsend / PMPI_Bsend(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int) -> c_int {
        send(buf, count, datatype, dest, tag, comm, SendMode::Buffered)
    }

    /// `MPI_Recv`.
    fn MPI_Recv / PMPI_Recv(buf: *mut c_void, count: c_int, datatype: c_int, source: c_int, tag: c_int, comm: c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Recv", Some(comm), || {
            let st = recv(buf, count, datatype, source, tag, comm)?;
            // SAFETY: the program's status or MPI_STATUS_IGNORE.
            unsafe { st.store(status) };
            Ok(())
        })
    }

    /// `MPI_Isend`.
    fn MPI_Isend / PMPI_Isend(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Isend", Some(comm), || isend(buf, count, datatype, dest, tag, comm, SendMode::Standard, request))
    }

    /// `MPI_Issend`.
    fn MPI_Issend / PMPI_Issend(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Issend", Some(comm), || isend(buf, count, datatype, dest, tag, comm, SendMode::Synchronous, request))
    }

    /// `MPI_Irsend`.
    fn MPI_Irsend / PMPI_Irsend(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Irsend", Some(comm), || isend(buf, count, datatype, dest, tag, comm, SendMode::Ready, request))
    }

    /// `MPI_Ibsend`.
    fn MPI_Ibsend / PMPI_Ibsend(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Ibsend", Some(comm), || isend(buf, count, datatype, dest, tag, comm, SendMode::Buffered, request))
    }

    /// `MPI_Irecv`.
    fn MPI_Irecv / PMPI_Irecv(buf: *mut c_void, count: c_int, datatype: c_int, source: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Irecv", Some(comm), || irecv(buf, count, datatype, source, tag, comm, request))
    }

    /// `MPI_Sendrecv`.
    fn MPI_Sendrecv / PMPI_Sendrecv(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, dest: c_int, sendtag: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, source: c_int, recvtag: c_int, comm: c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Sendrecv", Some(comm), || {
            let mut r = MPI_REQUEST_NULL;
            irecv(recvbuf, recvcount, recvtype, source, recvtag, comm, &mut r)?;
            let mut s = MPI_REQUEST_NULL;
            let sent = isend(sendbuf, sendcount, sendtype, dest, sendtag, comm, SendMode::Standard, &mut s);
            let sent = sent.and_then(|()| match finish(&mut s, true)? {
                Finished::Done(r) => r.map(|_| ()),
                Finished::Pending => unreachable!("waited"),
            });
            let received = match finish(&mut r, true)? {
                Finished::Done(r) => r,
                Finished::Pending => unreachable!("waited"),
            };
            sent?;
            // SAFETY: the program's status or MPI_STATUS_IGNORE.
            unsafe { received?.store(status) };
            Ok(())
        })
    }

    /// `MPI_Sendrecv_replace`.
    fn MPI_Sendrecv_replace / PMPI_Sendrecv_replace(buf: *mut c_void, count: c_int, datatype: c_int, dest: c_int, sendtag: c_int, source: c_int, recvtag: c_int, comm: c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Sendrecv_replace", Some(comm), || {
            let ty = types::ty(datatype)?;
            let n = types::count(count)?;
            // Pack what goes out, receive in place, then send the packed copy.
            let mut packed = vec![0u8; ty.size() * n];
            {
                // SAFETY: the program lends the buffer for the call.
                let o = unsafe { outgoing(buf, n, &ty)? };
                match &o.view {
                    None => packed.copy_from_slice(o.bytes),
                    Some(v) => {
                        v.pack_into(&mut packed)?;
                    }
                }
            }
            let mut r = MPI_REQUEST_NULL;
            irecv(buf, count, datatype, source, recvtag, comm, &mut r)?;
            let sent = {
                let c = state::comm(comm)?;
                check_send_tag(sendtag)?;
                match check_dest(&c, dest)? {
                    Some(d) => c.process_at_rank(d).send_with_tag(&packed[..], sendtag).map_err(Error::from),
                    None => Ok(()),
                }
            };
            let received = match finish(&mut r, true)? {
                Finished::Done(r) => r,
                Finished::Pending => unreachable!("waited"),
            };
            sent?;
            // SAFETY: the program's status or MPI_STATUS_IGNORE.
            unsafe { received?.store(status) };
            Ok(())
        })
    }

    /// `MPI_Wait`.
    fn MPI_Wait / PMPI_Wait(request: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Wait", None, || match finish(request, true)? {
            Finished::Done(r) => {
                // SAFETY: the program's status or MPI_STATUS_IGNORE.
                unsafe { r?.store(status) };
                Ok(())
            }
            Finished::Pending => unreachable!("a wait finishes"),
        })
    }

    /// `MPI_Test`.
    fn MPI_Test / PMPI_Test(request: *mut c_int, flag: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Test", None, || {
            if flag.is_null() {
                return Err(Error::new(class::ARG, "flag is null"));
            }
            let done = match finish(request, false)? {
                Finished::Done(r) => {
                    // SAFETY: the program's status or MPI_STATUS_IGNORE.
                    unsafe { r?.store(status) };
                    true
                }
                Finished::Pending => false,
            };
            // SAFETY: non-null.
            unsafe { *flag = done as c_int };
            Ok(())
        })
    }

    /// `MPI_Waitall`: every request, in order; a failure is in its status (`MPI_ERR_IN_STATUS`).
    fn MPI_Waitall / PMPI_Waitall(count: c_int, requests: *mut c_int, statuses: *mut MpiStatus) -> c_int {
        call("MPI_Waitall", None, || {
            // SAFETY: the program passes `count` requests.
            let reqs = unsafe { request_array(requests, count)? };
            let mut failed = false;
            for (i, h) in reqs.iter_mut().enumerate() {
                let st = match finish(h, true)? {
                    Finished::Done(Ok(st)) => st,
                    Finished::Done(Err(e)) => {
                        failed = true;
                        let mut st = MpiStatus::empty();
                        st.error = e.class;
                        st
                    }
                    Finished::Pending => unreachable!("a wait finishes"),
                };
                // SAFETY: `count` statuses or MPI_STATUSES_IGNORE.
                unsafe { store_at(statuses, i, st) };
            }
            if failed {
                return Err(Error::new(class::IN_STATUS, "some requests failed; their statuses hold the errors"));
            }
            Ok(())
        })
    }

    /// `MPI_Testall`: true only if every request has finished, and then all are completed.
    fn MPI_Testall / PMPI_Testall(count: c_int, requests: *mut c_int, flag: *mut c_int, statuses: *mut MpiStatus) -> c_int {
        call("MPI_Testall", None, || {
            if flag.is_null() {
                return Err(Error::new(class::ARG, "flag is null"));
            }
            // SAFETY: the program passes `count` requests.
            let reqs = unsafe { request_array(requests, count)? };
            let all = reqs.iter().all(|&h| !is_live(h) || peek_done(h));
            // SAFETY: non-null.
            unsafe { *flag = all as c_int };
            if !all {
                return Ok(());
            }
            for (i, h) in reqs.iter_mut().enumerate() {
                let live = is_live(*h);
                let st = match finish(h, true)? {
                    Finished::Done(r) => r?,
                    Finished::Pending => unreachable!("a wait finishes"),
                };
                // SAFETY: `count` statuses or MPI_STATUSES_IGNORE.
                unsafe { store_at(statuses, i, if live { st } else { MpiStatus::empty() }) };
            }
            Ok(())
        })
    }

    /// `MPI_Waitany`.
    fn MPI_Waitany / PMPI_Waitany(count: c_int, requests: *mut c_int, index: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Waitany", None, || {
            // SAFETY: the program passes `count` requests.
            let reqs = unsafe { request_array(requests, count)? };
            if index.is_null() {
                return Err(Error::new(class::ARG, "index is null"));
            }
            loop {
                if let Some(r) = any(reqs, status)? {
                    // SAFETY: non-null.
                    unsafe { *index = r };
                    return Ok(());
                }
                progress();
            }
        })
    }

    /// `MPI_Testany`.
    fn MPI_Testany / PMPI_Testany(count: c_int, requests: *mut c_int, index: *mut c_int, flag: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Testany", None, || {
            // SAFETY: the program passes `count` requests.
            let reqs = unsafe { request_array(requests, count)? };
            if index.is_null() || flag.is_null() {
                return Err(Error::new(class::ARG, "index or flag is null"));
            }
            let r = any(reqs, status)?;
            // SAFETY: non-null.
            unsafe {
                *flag = r.is_some() as c_int;
                *index = r.unwrap_or(handles::MPI_UNDEFINED);
            }
            Ok(())
        })
    }

    /// `MPI_Waitsome`.
    fn MPI_Waitsome / PMPI_Waitsome(incount: c_int, requests: *mut c_int, outcount: *mut c_int, indices: *mut c_int, statuses: *mut MpiStatus) -> c_int {
        call("MPI_Waitsome", None, || {
            // SAFETY: the program passes `incount` requests.
            let reqs = unsafe { request_array(requests, incount)? };
            if outcount.is_null() {
                return Err(Error::new(class::ARG, "outcount is null"));
            }
            if reqs.iter().all(|&h| !is_live(h)) {
                // SAFETY: non-null.
                unsafe { *outcount = handles::MPI_UNDEFINED };
                return Ok(());
            }
            loop {
                let done = some(reqs, outcount, indices, statuses)?;
                if done > 0 {
                    return Ok(());
                }
                progress();
            }
        })
    }

    /// `MPI_Testsome`.
    fn MPI_Testsome / PMPI_Testsome(incount: c_int, requests: *mut c_int, outcount: *mut c_int, indices: *mut c_int, statuses: *mut MpiStatus) -> c_int {
        call("MPI_Testsome", None, || {
            // SAFETY: the program passes `incount` requests.
            let reqs = unsafe { request_array(requests, incount)? };
            if outcount.is_null() {
                return Err(Error::new(class::ARG, "outcount is null"));
            }
            if reqs.iter().all(|&h| !is_live(h)) {
                // SAFETY: non-null.
                unsafe { *outcount = handles::MPI_UNDEFINED };
                return Ok(());
            }
            some(reqs, outcount, indices, statuses).map(|_| ())
        })
    }

    /// `MPI_Request_free`: the operation still finishes; nobody learns its result.
    fn MPI_Request_free / PMPI_Request_free(request: *mut c_int) -> c_int {
        call("MPI_Request_free", None, || {
            if request.is_null() {
                return Err(Error::new(class::ARG, "the request argument is null"));
            }
            // SAFETY: non-null.
            let handle = unsafe { *request };
            let index = request_index(handle)?;
            let r = state::with(|s| s.requests.remove(index).ok_or_else(|| Error::new(class::REQUEST, "the request was freed already")))?;
            match r.kind {
                // A view the request reads through goes with the entry: finish first.
                Kind::Active(Some(op)) if r._send.as_ref().is_some_and(|o| o.view.is_some()) || r._recv.as_ref().is_some_and(|i| i.view.is_some()) => {
                    let _ = op.wait();
                }
                Kind::Active(Some(op)) => op.free(),
                Kind::Persistent(p, _) => drop(p),
                _ => {}
            }
            // SAFETY: non-null.
            unsafe { *request = MPI_REQUEST_NULL };
            Ok(())
        })
    }

    /// `MPI_Request_get_status`: whether it finished, without completing it.
    fn MPI_Request_get_status / PMPI_Request_get_status(request: c_int, flag: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Request_get_status", None, || {
            if flag.is_null() {
                return Err(Error::new(class::ARG, "flag is null"));
            }
            let st = if request == MPI_REQUEST_NULL {
                Some(Ok(MpiStatus::empty()))
            } else {
                let index = request_index(request)?;
                state::with(|s| {
                    Ok(match s.requests.get(index).map(|r| &r.kind) {
                        Some(Kind::Active(Some(op))) => op.get_status().map(|r| r.map(|s| status_of(&s)).map_err(Error::from)),
                        Some(Kind::Done(st)) => Some(Ok(*st)),
                        Some(Kind::Persistent(p, None)) if !p.is_active() => Some(Ok(MpiStatus::empty())),
                        Some(Kind::Persistent(..)) => {
                            let i = index;
                            peek_persistent(s, i)
                        }
                        Some(Kind::Generalized(g)) if g.is_done() => {
                            let mut st = MpiStatus::empty();
                            // SAFETY: the program's function, with its extra state.
                            let q = unsafe { (g.query)(g.extra as *mut c_void, &mut st) };
                            Some(if q == 0 { Ok(st) } else { Err(Error::new(q, "the query function failed")) })
                        }
                        Some(_) => None,
                        None => return Err(Error::new(class::REQUEST, "the request was freed")),
                    })
                })?
            };
            // SAFETY: non-null.
            unsafe { *flag = st.is_some() as c_int };
            if let Some(st) = st {
                // SAFETY: the program's status or MPI_STATUS_IGNORE.
                unsafe { st?.store(status) };
            }
            Ok(())
        })
    }

    /// `MPI_Cancel`: a receive not yet matched finishes cancelled; anything else finishes as it
    /// would have.
    fn MPI_Cancel / PMPI_Cancel(request: *mut c_int) -> c_int {
        call("MPI_Cancel", None, || {
            if request.is_null() {
                return Err(Error::new(class::ARG, "the request argument is null"));
            }
            // SAFETY: non-null.
            let index = request_index(unsafe { *request })?;
            state::with(|s| {
                match s.requests.get(index).map(|r| &r.kind) {
                    Some(Kind::Active(Some(op))) => op.cancel(),
                    Some(Kind::Persistent(p, _)) => p.cancel(),
                    Some(Kind::Generalized(g)) => {
                        // SAFETY: the program's function, with its extra state.
                        let rc = unsafe { (g.cancel)(g.extra as *mut c_void, g.is_done() as c_int) };
                        if rc != 0 {
                            return Err(Error::new(rc, "the generalized request's cancel function failed"));
                        }
                    }
                    Some(_) => {}
                    None => return Err(Error::new(class::REQUEST, "the request was freed")),
                }
                Ok(())
            })
        })
    }

    /// `MPI_Test_cancelled`.
    fn MPI_Test_cancelled / PMPI_Test_cancelled(status: *const MpiStatus, flag: *mut c_int) -> c_int {
        call("MPI_Test_cancelled", None, || {
            if status.is_null() || flag.is_null() || status as usize == handles::MPI_STATUS_IGNORE {
                return Err(Error::new(class::ARG, "status or flag is null"));
            }
            // SAFETY: non-null; the program's status.
            unsafe { *flag = (*status).cancelled() as c_int };
            Ok(())
        })
    }

    /// `MPI_Probe`.
    fn MPI_Probe / PMPI_Probe(source: c_int, tag: c_int, comm: c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Probe", Some(comm), || {
            let st = probe_status(comm, source, tag, true)?.expect("a blocking probe finds a message");
            // SAFETY: the program's status or MPI_STATUS_IGNORE.
            unsafe { st.store(status) };
            Ok(())
        })
    }

    /// `MPI_Iprobe`.
    fn MPI_Iprobe / PMPI_Iprobe(source: c_int, tag: c_int, comm: c_int, flag: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Iprobe", Some(comm), || {
            if flag.is_null() {
                return Err(Error::new(class::ARG, "flag is null"));
            }
            let st = probe_status(comm, source, tag, false)?;
            // SAFETY: non-null.
            unsafe { *flag = st.is_some() as c_int };
            if let Some(st) = st {
                // SAFETY: the program's status or MPI_STATUS_IGNORE.
                unsafe { st.store(status) };
            }
            Ok(())
        })
    }

    /// `MPI_Mprobe`.
    fn MPI_Mprobe / PMPI_Mprobe(source: c_int, tag: c_int, comm: c_int, message: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Mprobe", Some(comm), || {
            let st = matched_probe(comm, source, tag, true, message)?.expect("a blocking probe finds a message");
            // SAFETY: the program's status or MPI_STATUS_IGNORE.
            unsafe { st.store(status) };
            Ok(())
        })
    }

    /// `MPI_Improbe`.
    fn MPI_Improbe / PMPI_Improbe(source: c_int, tag: c_int, comm: c_int, flag: *mut c_int, message: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Improbe", Some(comm), || {
            if flag.is_null() {
                return Err(Error::new(class::ARG, "flag is null"));
            }
            let st = matched_probe(comm, source, tag, false, message)?;
            // SAFETY: non-null.
            unsafe { *flag = st.is_some() as c_int };
            if let Some(st) = st {
                // SAFETY: the program's status or MPI_STATUS_IGNORE.
                unsafe { st.store(status) };
            }
            Ok(())
        })
    }

    /// `MPI_Mrecv`.
    fn MPI_Mrecv / PMPI_Mrecv(buf: *mut c_void, count: c_int, datatype: c_int, message: *mut c_int, status: *mut MpiStatus) -> c_int {
        call("MPI_Mrecv", None, || {
            let ty = types::ty(datatype)?;
            let n = types::count(count)?;
            let Some(m) = take_message(message)? else {
                // SAFETY: the program's status or MPI_STATUS_IGNORE.
                unsafe { null_status().store(status) };
                return Ok(());
            };
            // SAFETY: the program lends the buffer for the call.
            let mut i = unsafe { incoming(buf, n, &ty)? };
            let s = with_in!(i, |b| m.matched_receive_into(b))?;
            // SAFETY: the program's status or MPI_STATUS_IGNORE.
            unsafe { status_of(&s).store(status) };
            Ok(())
        })
    }

    /// `MPI_Imrecv`.
    fn MPI_Imrecv / PMPI_Imrecv(buf: *mut c_void, count: c_int, datatype: c_int, message: *mut c_int, request: *mut c_int) -> c_int {
        call("MPI_Imrecv", None, || {
            let ty = types::ty(datatype)?;
            let n = types::count(count)?;
            let Some(m) = take_message(message)? else {
                return store_request(Req::done(null_status()), request);
            };
            // SAFETY: the program lends the buffer until the request completes.
            let mut i = unsafe { incoming(buf, n, &ty)? };
            let r = with_in!(i, |b| m.immediate_matched_receive_into(StaticScope, b))?;
            store_request(Req::active(r, None, Some(i)), request)
        })
    }

    /// `MPI_Get_count`: whole elements in the status's bytes, `MPI_UNDEFINED` if not whole.
    fn MPI_Get_count / PMPI_Get_count(status: *const MpiStatus, datatype: c_int, count: *mut c_int) -> c_int {
        call("MPI_Get_count", None, || {
            if status.is_null() || count.is_null() || status as usize == handles::MPI_STATUS_IGNORE {
                return Err(Error::new(class::ARG, "status or count is null"));
            }
            let ty = state::with(|s| types::resolve(s, datatype, false))?;
            // SAFETY: the program's status.
            let bytes = unsafe { (*status).bytes() } as usize;
            let n = match ty.size() {
                0 => 0,
                size if bytes.is_multiple_of(size) => c_int::try_from(bytes / size).unwrap_or(handles::MPI_UNDEFINED),
                _ => handles::MPI_UNDEFINED,
            };
            // SAFETY: non-null.
            unsafe { *count = n };
            Ok(())
        })
    }

    /// `MPI_Get_elements`: primitive elements in the status's bytes.
    fn MPI_Get_elements / PMPI_Get_elements(status: *const MpiStatus, datatype: c_int, count: *mut c_int) -> c_int {
        call("MPI_Get_elements", None, || {
            let n = elements(status, datatype)?;
            if count.is_null() {
                return Err(Error::new(class::ARG, "count is null"));
            }
            // SAFETY: non-null.
            unsafe { *count = c_int::try_from(n).unwrap_or(handles::MPI_UNDEFINED) };
            Ok(())
        })
    }

    /// `MPI_Get_elements_x`.
    fn MPI_Get_elements_x / PMPI_Get_elements_x(status: *const MpiStatus, datatype: c_int, count: *mut isize) -> c_int {
        call("MPI_Get_elements_x", None, || {
            let n = elements(status, datatype)?;
            if count.is_null() {
                return Err(Error::new(class::ARG, "count is null"));
            }
            // SAFETY: non-null.
            unsafe { *count = n as isize };
            Ok(())
        })
    }

    /// `MPI_Status_set_elements`.
    fn MPI_Status_set_elements / PMPI_Status_set_elements(status: *mut MpiStatus, datatype: c_int, count: c_int) -> c_int {
        call("MPI_Status_set_elements", None, || set_elements(status, datatype, types::count(count)?))
    }

    /// `MPI_Status_set_elements_x`.
    fn MPI_Status_set_elements_x / PMPI_Status_set_elements_x(status: *mut MpiStatus, datatype: c_int, count: isize) -> c_int {
        call("MPI_Status_set_elements_x", None, || {
            let n = usize::try_from(count).map_err(|_| Error::new(class::COUNT, "count is negative"))?;
            set_elements(status, datatype, n)
        })
    }

    /// `MPI_Status_set_cancelled`.
    fn MPI_Status_set_cancelled / PMPI_Status_set_cancelled(status: *mut MpiStatus, flag: c_int) -> c_int {
        call("MPI_Status_set_cancelled", None, || {
            if status.is_null() || status as usize == handles::MPI_STATUS_IGNORE {
                return Err(Error::new(class::ARG, "status is null"));
            }
            // SAFETY: non-null; the program's status.
            unsafe {
                let s = &mut *status;
                s.count_hi_and_cancelled = (s.count_hi_and_cancelled & !1) | (flag != 0) as c_int;
            }
            Ok(())
        })
    }

    /// `MPI_Send_init`.
    fn MPI_Send_init / PMPI_Send_init(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Send_init", Some(comm), || persistent(buf.cast_mut(), count, datatype, dest, tag, comm, Some(SendMode::Standard), request))
    }

    /// `MPI_Ssend_init`.
    fn MPI_Ssend_init / PMPI_Ssend_init(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Ssend_init", Some(comm), || persistent(buf.cast_mut(), count, datatype, dest, tag, comm, Some(SendMode::Synchronous), request))
    }

    /// `MPI_Rsend_init`.
    fn MPI_Rsend_init / PMPI_Rsend_init(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Rsend_init", Some(comm), || persistent(buf.cast_mut(), count, datatype, dest, tag, comm, Some(SendMode::Ready), request))
    }

    /// `MPI_Bsend_init`.
    fn MPI_Bsend_init / PMPI_Bsend_init(buf: *const c_void, count: c_int, datatype: c_int, dest: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Bsend_init", Some(comm), || persistent(buf.cast_mut(), count, datatype, dest, tag, comm, Some(SendMode::Buffered), request))
    }

    /// `MPI_Recv_init`.
    fn MPI_Recv_init / PMPI_Recv_init(buf: *mut c_void, count: c_int, datatype: c_int, source: c_int, tag: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Recv_init", Some(comm), || persistent(buf, count, datatype, source, tag, comm, None, request))
    }

    /// `MPI_Start`.
    fn MPI_Start / PMPI_Start(request: *mut c_int) -> c_int {
        call("MPI_Start", None, || {
            if request.is_null() {
                return Err(Error::new(class::ARG, "the request argument is null"));
            }
            // SAFETY: non-null.
            start(unsafe { *request })
        })
    }

    /// `MPI_Startall`.
    fn MPI_Startall / PMPI_Startall(count: c_int, requests: *mut c_int) -> c_int {
        call("MPI_Startall", None, || {
            // SAFETY: the program passes `count` requests.
            let reqs = unsafe { request_array(requests, count)? };
            reqs.iter().try_for_each(|&h| start(h))
        })
    }

    /// `MPI_Grequest_start`.
    fn MPI_Grequest_start / PMPI_Grequest_start(query: Option<QueryFn>, free: Option<FreeFn>, cancel: Option<CancelFn>, extra: *mut c_void, request: *mut c_int) -> c_int {
        call("MPI_Grequest_start", None, || {
            let (Some(query), Some(free), Some(cancel)) = (query, free, cancel) else {
                return Err(Error::new(class::ARG, "the query, free and cancel functions must not be null"));
            };
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let g = Grequest { query, free, cancel, extra: extra as usize, done: done.clone() };
            store_request(Req { kind: Kind::Generalized(g), _send: None, _recv: None, _keep: Vec::new() }, request)?;
            // SAFETY: `store_request` wrote it.
            let h = unsafe { *request };
            GREQUESTS.lock().unwrap_or_else(|e| e.into_inner()).push((h, done));
            Ok(())
        })
    }

    /// `MPI_Grequest_complete`: callable from any thread.
    fn MPI_Grequest_complete / PMPI_Grequest_complete(request: c_int) -> c_int {
        let found = GREQUESTS.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(h, _)| *h == request).map(|(_, d)| d.clone());
        match found {
            Some(done) => {
                done.store(true, std::sync::atomic::Ordering::Release);
                handles::MPI_SUCCESS
            }
            None => call("MPI_Grequest_complete", None, || Err(Error::new(class::REQUEST, format!("{request:#x} is not a generalized request")))),
        }
    }

    /// `MPI_Buffer_attach`: buffered sends get that many bytes (onecopy keeps its own copy of
    /// the space, the program's memory stays untouched).
    fn MPI_Buffer_attach / PMPI_Buffer_attach(buffer: *mut c_void, size: c_int) -> c_int {
        call("MPI_Buffer_attach", None, || {
            let n = types::count(size)?;
            let mut attached = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
            if attached.is_some() {
                return Err(Error::new(class::BUFFER, "a buffer is already attached; detach it first"));
            }
            state::with(|s| Ok(s.universe.set_buffer_size(n)?))?;
            *attached = Some((buffer as usize, size));
            Ok(())
        })
    }

    /// `MPI_Buffer_detach`: waits for the buffered sends, and gives the buffer back.
    fn MPI_Buffer_detach / PMPI_Buffer_detach(buffer: *mut c_void, size: *mut c_int) -> c_int {
        call("MPI_Buffer_detach", None, || {
            let mut attached = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
            state::with(|s| Ok(s.universe.detach_buffer()?))?;
            let (ptr, n) = attached.take().unwrap_or((0, 0));
            // SAFETY: the program passes a `void*` to receive the pointer, and an int.
            unsafe {
                if !buffer.is_null() {
                    *buffer.cast::<*mut c_void>() = ptr as *mut c_void;
                }
                if !size.is_null() {
                    *size = n;
                }
            }
            Ok(())
        })
    }
}

fn status_of(s: &Status) -> MpiStatus {
    status(s)
}

/// Whether a live request has finished, without completing it.
fn peek_done(handle: c_int) -> bool {
    let Ok(index) = request_index(handle) else {
        return true;
    };
    state::with(|s| {
        Ok(match s.requests.get(index).map(|r| &r.kind) {
            Some(Kind::Active(Some(op))) => op.get_status().is_some(),
            Some(Kind::Persistent(..)) => peek_persistent(s, index).is_some(),
            _ => true,
        })
    })
    .unwrap_or(true)
}

/// Whether active persistent request `index` has finished, testing it once; a result found is
/// kept for its completion.
fn peek_persistent(s: &mut state::State, index: usize) -> Option<Result<MpiStatus>> {
    let Some(Req {
        kind: Kind::Persistent(p, found),
        ..
    }) = s.requests.get_mut(index)
    else {
        return None;
    };
    if found.is_none() && p.is_active() {
        *found = p
            .test()
            .map_err(Error::from)
            .map(|o| o.map(|s| status(&s)))
            .transpose();
    }
    found.clone()
}

fn any(reqs: &mut [c_int], status: *mut MpiStatus) -> Result<Option<c_int>> {
    if reqs.iter().all(|&h| !is_live(h)) {
        // SAFETY: the program's status or MPI_STATUS_IGNORE.
        unsafe { MpiStatus::empty().store(status) };
        return Ok(Some(handles::MPI_UNDEFINED));
    }
    for (i, h) in reqs.iter_mut().enumerate() {
        if !is_live(*h) {
            continue;
        }
        if let Finished::Done(r) = finish(h, false)? {
            // SAFETY: the program's status or MPI_STATUS_IGNORE.
            unsafe { r?.store(status) };
            return Ok(Some(i as c_int));
        }
    }
    Ok(None)
}

fn some(
    reqs: &mut [c_int],
    outcount: *mut c_int,
    indices: *mut c_int,
    statuses: *mut MpiStatus,
) -> Result<usize> {
    let result = test_some(reqs, statuses, false);
    let done = match &result {
        Ok(d) => d.clone(),
        Err(_) => Vec::new(),
    };
    if !done.is_empty() && indices.is_null() {
        return Err(Error::new(class::ARG, "indices is null"));
    }
    // SAFETY: non-null outcount; the program passes `incount` indices.
    unsafe {
        *outcount = done.len() as c_int;
        for (k, &i) in done.iter().enumerate() {
            *indices.add(k) = i as c_int;
        }
    }
    result.map(|d| d.len())
}

fn elements(status: *const MpiStatus, datatype: c_int) -> Result<usize> {
    if status.is_null() || status as usize == handles::MPI_STATUS_IGNORE {
        return Err(Error::new(class::ARG, "status is null"));
    }
    let ty = state::with(|s| types::resolve(s, datatype, false))?;
    // SAFETY: the program's status.
    let bytes = unsafe { (*status).bytes() } as usize;
    Ok(match &ty {
        Ty::Basic { size: 0, .. } => 0,
        Ty::Basic { size, .. } => bytes / size,
        Ty::Laid(d) => d.primitive_elements_in(bytes),
    })
}

fn set_elements(status: *mut MpiStatus, datatype: c_int, n: usize) -> Result {
    if status.is_null() || status as usize == handles::MPI_STATUS_IGNORE {
        return Err(Error::new(class::ARG, "status is null"));
    }
    let ty = state::with(|s| types::resolve(s, datatype, false))?;
    let bytes = match &ty {
        Ty::Basic { size, .. } => size * n,
        Ty::Laid(d) => {
            let per = d.primitive_elements_in(d.size()).max(1);
            d.size() * (n / per) + d.size() * (n % per) / per
        }
    };
    // SAFETY: non-null; the program's status.
    unsafe {
        let s = &mut *status;
        let cancelled = s.cancelled();
        let fresh = MpiStatus::new(s.source, s.tag, bytes as u64, cancelled);
        s.count_lo = fresh.count_lo;
        s.count_hi_and_cancelled = fresh.count_hi_and_cancelled;
    }
    Ok(())
}
