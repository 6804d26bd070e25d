//! Communicators, groups, intercommunicators, attributes and error handlers on communicators.

use std::ffi::{c_char, c_int, c_void};

use onecopy::SimpleCommunicator;
use onecopy::topology::{
    Color, CommunicatorRelation, GroupRelation, InterCommunicator, MergeOrder, UserGroup,
};
use onecopy::traits::*;

use crate::error::{self, Error, HandlerFn, Result, UserHandler, call, class, write_string};
use crate::export::mpi_export;
use crate::handles::{
    self, MPI_COMM_NULL, MPI_COMM_SELF, MPI_COMM_WORLD, MPI_GROUP_EMPTY, MPI_GROUP_NULL,
    MPI_UNDEFINED, Object, keys,
};
use crate::state::{self, CommEntry, State};

/// `MPI_Comm_copy_attr_function`.
pub type CopyFn =
    unsafe extern "C" fn(c_int, c_int, *mut c_void, *mut c_void, *mut c_void, *mut c_int) -> c_int;
/// `MPI_Comm_delete_attr_function`.
pub type DeleteFn = unsafe extern "C" fn(c_int, c_int, *mut c_void, *mut c_void) -> c_int;

/// An attribute key made by `MPI_Comm_create_keyval`.
#[derive(Debug, Clone, Copy)]
pub struct Keyval {
    /// Called on `MPI_Comm_dup` (null: the attribute is not copied).
    pub copy: Option<CopyFn>,
    /// Called when the attribute goes (null: nothing to do).
    pub delete: Option<DeleteFn>,
    /// The program's extra state, passed to both.
    pub extra: usize,
}

/// `MPI_KEYVAL_INVALID`.
pub const MPI_KEYVAL_INVALID: c_int = 0x2400_0000;

static TAG_UB_VALUE: c_int = handles::TAG_UB;
static WTIME_IS_GLOBAL_VALUE: c_int = 0;
static HOST_VALUE: c_int = handles::MPI_PROC_NULL;
static IO_VALUE: c_int = handles::MPI_ANY_SOURCE;
static APPNUM_VALUE: c_int = 0;
static UNIVERSE_SIZE_VALUE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);
static LASTUSEDCODE_VALUE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Stores a new communicator, inheriting `parent`'s error handler; its handle.
pub fn register(comm: SimpleCommunicator, parent: c_int) -> Result<c_int> {
    state::with(|s| {
        let errhandler = s
            .comm(parent)
            .map(|e| e.errhandler)
            .unwrap_or(handles::MPI_ERRORS_ARE_FATAL);
        error::retain(s, errhandler)?;
        let i = s
            .comms
            .insert(CommEntry {
                comm,
                errhandler,
                attrs: Vec::new(),
                topo: None,
            })
            .ok_or_else(|| Error::new(class::INTERN, "too many communicators"))?;
        Ok(handles::direct(Object::Comm, i))
    })
}

fn out<T>(p: *mut T, v: T) -> Result {
    if p.is_null() {
        return Err(Error::new(class::ARG, "an output argument is null"));
    }
    // SAFETY: non-null; the program's output.
    unsafe { p.write(v) };
    Ok(())
}

fn new_comm(comm: Option<SimpleCommunicator>, parent: c_int, newcomm: *mut c_int) -> Result {
    if newcomm.is_null() {
        return Err(Error::new(
            class::ARG,
            "the new communicator output is null",
        ));
    }
    let h = match comm {
        Some(c) => register(c, parent)?,
        None => MPI_COMM_NULL,
    };
    out(newcomm, h)
}

fn group_of(handle: c_int) -> Result<UserGroup> {
    state::with(|s| {
        if handle == MPI_GROUP_EMPTY {
            return Ok(UserGroup::empty_like(&s.universe.world().group()));
        }
        handles::direct_index(Object::Group, handle)
            .and_then(|i| s.groups.get(i))
            .cloned()
            .ok_or_else(|| Error::new(class::GROUP, format!("{handle:#x} is not a group (freed, MPI_GROUP_NULL, another kind of handle, or garbage)")))
    })
}

fn new_group(g: UserGroup, newgroup: *mut c_int) -> Result {
    if newgroup.is_null() {
        return Err(Error::new(class::ARG, "the group output is null"));
    }
    let i = state::with(|s| {
        s.groups
            .insert(g)
            .ok_or_else(|| Error::new(class::INTERN, "too many groups"))
    })?;
    out(newgroup, handles::direct(Object::Group, i))
}

fn ranks<'a>(p: *const c_int, n: c_int) -> Result<&'a [c_int]> {
    let n = usize::try_from(n).map_err(|_| Error::new(class::ARG, "a negative number of ranks"))?;
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::new(class::ARG, "the ranks array is null"));
    }
    // SAFETY: the program passes `n` ranks.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

fn ranges(p: *const [c_int; 3], n: c_int) -> Result<Vec<(c_int, c_int, c_int)>> {
    let n =
        usize::try_from(n).map_err(|_| Error::new(class::ARG, "a negative number of ranges"))?;
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Error::new(class::ARG, "the ranges array is null"));
    }
    // SAFETY: the program passes `n` triples.
    let r: &[[c_int; 3]] = unsafe { std::slice::from_raw_parts(p, n) };
    Ok(r.iter().map(|t| (t[0], t[1], t[2])).collect())
}

/// Copies `old`'s attributes to `new` through their keys' copy functions.
fn copy_attrs(old: c_int, new: c_int) -> Result {
    let attrs = state::with(|s| {
        let entry = s.comm(old)?;
        Ok(entry
            .attrs
            .iter()
            .filter_map(|&(k, v)| {
                let kv = handles::direct_index(Object::Keyval, k).and_then(|i| s.keyvals.get(i))?;
                Some((k, v, *kv))
            })
            .collect::<Vec<_>>())
    })?;
    for (k, v, kv) in attrs {
        let Some(copy) = kv.copy else { continue };
        let mut value: *mut c_void = std::ptr::null_mut();
        let mut flag: c_int = 0;
        // SAFETY: the program's copy function, with the arguments MPI defines.
        let rc = unsafe {
            copy(
                old,
                k,
                kv.extra as *mut c_void,
                v as *mut c_void,
                (&mut value as *mut *mut c_void).cast(),
                &mut flag,
            )
        };
        if rc != 0 {
            return Err(Error::new(
                class::OTHER,
                format!("the copy function of attribute {k:#x} returned {rc}"),
            ));
        }
        if flag != 0 {
            state::with(|s| {
                let i = State::comm_index(new).expect("a new communicator");
                if let Some(e) = s.comms.get_mut(i) {
                    e.attrs.push((k, value as usize));
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Deletes attribute `key` of `comm` through its delete function, if it is set.
fn delete_attr(comm: c_int, key: c_int) -> Result {
    let found = state::with(|s| {
        let i = State::comm_index(comm).ok_or_else(|| state::bad_comm(comm))?;
        let entry = s.comms.get_mut(i).ok_or_else(|| state::bad_comm(comm))?;
        let at = entry.attrs.iter().position(|&(k, _)| k == key);
        let value = at.map(|at| entry.attrs.remove(at).1);
        let kv = handles::direct_index(Object::Keyval, key)
            .and_then(|i| s.keyvals.get(i))
            .copied();
        Ok(value.zip(kv))
    })?;
    if let Some((value, kv)) = found
        && let Some(delete) = kv.delete
    {
        // SAFETY: the program's delete function, with the arguments MPI defines.
        let rc = unsafe { delete(comm, key, value as *mut c_void, kv.extra as *mut c_void) };
        if rc != 0 {
            return Err(Error::new(
                class::OTHER,
                format!("the delete function of attribute {key:#x} returned {rc}"),
            ));
        }
    }
    Ok(())
}

/// `MPI_Comm_dup`: a new context with the same group, topology and (copied) attributes.
fn dup(comm: c_int, newcomm: *mut c_int) -> Result {
    let c = state::comm(comm)?;
    new_comm(Some(c.duplicate()?), comm, newcomm)?;
    // SAFETY: `new_comm` wrote it.
    let new = unsafe { *newcomm };
    state::with(|s| {
        let topo = s.comm(comm)?.topo.clone();
        let i = State::comm_index(new).expect("a new communicator");
        s.comms.get_mut(i).expect("a new communicator").topo = topo;
        Ok(())
    })?;
    copy_attrs(comm, new)
}

fn free_comm(comm: *mut c_int) -> Result {
    if comm.is_null() {
        return Err(Error::new(class::ARG, "the communicator argument is null"));
    }
    // SAFETY: non-null.
    let h = unsafe { *comm };
    if h == MPI_COMM_WORLD || h == MPI_COMM_SELF {
        return Err(Error::new(
            class::COMM,
            "MPI_COMM_WORLD and MPI_COMM_SELF cannot be freed",
        ));
    }
    let keys = state::with(|s| Ok(s.comm(h)?.attrs.iter().map(|&(k, _)| k).collect::<Vec<_>>()))?;
    for k in keys.into_iter().rev() {
        delete_attr(h, k)?;
    }
    state::with(|s| {
        let i = State::comm_index(h).ok_or_else(|| state::bad_comm(h))?;
        let entry = s.comms.remove(i).ok_or_else(|| state::bad_comm(h))?;
        error::release(s, entry.errhandler);
        // The last communicator of a topology takes its hidden duplicate along.
        if let Some(t) = entry.topo
            && std::rc::Rc::strong_count(&t) == 1
            && let Some(hidden) = State::comm_index(t.hidden).and_then(|i| s.comms.remove(i))
        {
            error::release(s, hidden.errhandler);
        }
        Ok(())
    })?;
    // SAFETY: non-null.
    unsafe { *comm = MPI_COMM_NULL };
    Ok(())
}

/// Frees every attribute of the world and self communicators, as `MPI_Finalize` does first.
pub fn finalize_attrs() -> Result {
    for c in [MPI_COMM_SELF, MPI_COMM_WORLD] {
        let keys =
            state::with(|s| Ok(s.comm(c)?.attrs.iter().map(|&(k, _)| k).collect::<Vec<_>>()))?;
        for k in keys.into_iter().rev() {
            delete_attr(c, k)?;
        }
    }
    Ok(())
}

fn predefined_attr(key: c_int) -> Option<*const c_int> {
    Some(match key {
        keys::TAG_UB => &TAG_UB_VALUE,
        keys::HOST => &HOST_VALUE,
        keys::IO => &IO_VALUE,
        keys::WTIME_IS_GLOBAL => &WTIME_IS_GLOBAL_VALUE,
        keys::APPNUM => &APPNUM_VALUE,
        keys::UNIVERSE_SIZE => UNIVERSE_SIZE_VALUE.as_ptr(),
        keys::LASTUSEDCODE => LASTUSEDCODE_VALUE.as_ptr(),
        _ => return None,
    })
}

fn get_attr(comm: c_int, key: c_int, value: *mut c_void, flag: *mut c_int) -> Result {
    if value.is_null() || flag.is_null() {
        return Err(Error::new(class::ARG, "attribute_val or flag is null"));
    }
    if let Some(p) = predefined_attr(key) {
        state::with(|s| {
            s.comm(comm)?;
            UNIVERSE_SIZE_VALUE.store(
                s.universe.world().size(),
                std::sync::atomic::Ordering::Relaxed,
            );
            LASTUSEDCODE_VALUE.store(s.codes.last_used, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })?;
        // SAFETY: the program passes a `void*` to receive the pointer, and an int.
        unsafe {
            *value.cast::<*const c_int>() = p;
            *flag = 1;
        }
        return Ok(());
    }
    let v = state::with(|s| {
        let kv = handles::direct_index(Object::Keyval, key).filter(|&i| s.keyvals.get(i).is_some());
        if kv.is_none() {
            return Err(Error::new(
                class::KEYVAL,
                format!("{key:#x} is not an attribute key"),
            ));
        }
        Ok(s.comm(comm)?
            .attrs
            .iter()
            .find(|&&(k, _)| k == key)
            .map(|&(_, v)| v))
    })?;
    // SAFETY: the program passes a `void*` to receive the value, and an int.
    unsafe {
        *flag = v.is_some() as c_int;
        if let Some(v) = v {
            *value.cast::<usize>() = v;
        }
    }
    Ok(())
}

fn set_attr(comm: c_int, key: c_int, value: *mut c_void) -> Result {
    if predefined_attr(key).is_some() {
        return Err(Error::new(
            class::KEYVAL,
            "predefined attributes cannot be set",
        ));
    }
    let known = state::with(|s| {
        s.comm(comm)?;
        Ok(handles::direct_index(Object::Keyval, key).is_some_and(|i| s.keyvals.get(i).is_some()))
    })?;
    if !known {
        return Err(Error::new(
            class::KEYVAL,
            format!("{key:#x} is not an attribute key"),
        ));
    }
    delete_attr(comm, key)?;
    state::with(|s| {
        let i = State::comm_index(comm).ok_or_else(|| state::bad_comm(comm))?;
        s.comms
            .get_mut(i)
            .ok_or_else(|| state::bad_comm(comm))?
            .attrs
            .push((key, value as usize));
        Ok(())
    })
}

fn create_keyval(
    copy: Option<CopyFn>,
    delete: Option<DeleteFn>,
    keyval: *mut c_int,
    extra: *mut c_void,
) -> Result {
    if keyval.is_null() {
        return Err(Error::new(class::ARG, "the keyval output is null"));
    }
    let i = state::with(|s| {
        s.keyvals
            .insert(Keyval {
                copy,
                delete,
                extra: extra as usize,
            })
            .ok_or_else(|| Error::new(class::INTERN, "too many attribute keys"))
    })?;
    out(keyval, handles::direct(Object::Keyval, i))
}

fn free_keyval(keyval: *mut c_int) -> Result {
    if keyval.is_null() {
        return Err(Error::new(class::ARG, "the keyval argument is null"));
    }
    // SAFETY: non-null.
    let k = unsafe { *keyval };
    state::with(|s| {
        handles::direct_index(Object::Keyval, k)
            .and_then(|i| s.keyvals.remove(i))
            .map(|_| ())
            .ok_or_else(|| Error::new(class::KEYVAL, format!("{k:#x} is not an attribute key")))
    })?;
    out(keyval, MPI_KEYVAL_INVALID)
}

fn relation(r: CommunicatorRelation) -> c_int {
    match r {
        CommunicatorRelation::Identical => 0,
        CommunicatorRelation::Congruent => 1,
        CommunicatorRelation::Similar => 2,
        CommunicatorRelation::Unequal => 3,
    }
}

mpi_export! {
    /// `MPI_Comm_size`.
    fn MPI_Comm_size / PMPI_Comm_size(comm: c_int, size: *mut c_int) -> c_int {
        call("MPI_Comm_size", Some(comm), || out(size, state::with(|s| Ok(s.comm(comm)?.comm.size()))?))
    }

    /// `MPI_Comm_rank`.
    fn MPI_Comm_rank / PMPI_Comm_rank(comm: c_int, rank: *mut c_int) -> c_int {
        call("MPI_Comm_rank", Some(comm), || out(rank, state::with(|s| Ok(s.comm(comm)?.comm.rank()))?))
    }

    /// `MPI_Comm_remote_size`.
    fn MPI_Comm_remote_size / PMPI_Comm_remote_size(comm: c_int, size: *mut c_int) -> c_int {
        call("MPI_Comm_remote_size", Some(comm), || {
            let c = state::comm(comm)?;
            if !c.test_inter() {
                return Err(Error::new(class::COMM, "not an intercommunicator"));
            }
            out(size, c.target_size())
        })
    }

    /// `MPI_Comm_test_inter`.
    fn MPI_Comm_test_inter / PMPI_Comm_test_inter(comm: c_int, flag: *mut c_int) -> c_int {
        call("MPI_Comm_test_inter", Some(comm), || out(flag, state::comm(comm)?.test_inter() as c_int))
    }

    /// `MPI_Comm_dup`: a new context; attributes copied by their copy functions.
    fn MPI_Comm_dup / PMPI_Comm_dup(comm: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Comm_dup", Some(comm), || {
            dup(comm, newcomm)
        })
    }

    /// `MPI_Comm_dup_with_info`.
    fn MPI_Comm_dup_with_info / PMPI_Comm_dup_with_info(comm: c_int, _info: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Comm_dup_with_info", Some(comm), || dup(comm, newcomm))
    }

    /// `MPI_Comm_split`.
    fn MPI_Comm_split / PMPI_Comm_split(comm: c_int, color: c_int, key: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Comm_split", Some(comm), || {
            let c = state::comm(comm)?;
            if color < 0 && color != MPI_UNDEFINED {
                return Err(Error::new(class::ARG, format!("color {color} is negative (and not MPI_UNDEFINED)")));
            }
            let color = if color == MPI_UNDEFINED { Color::undefined() } else { Color::with_value(color) };
            new_comm(c.split_by_color_with_key(color, key)?, comm, newcomm)
        })
    }

    /// `MPI_Comm_split_type`: every rank of one node shares memory, so every type but
    /// `MPI_UNDEFINED` keeps the whole group, ordered by `key`.
    fn MPI_Comm_split_type / PMPI_Comm_split_type(comm: c_int, split_type: c_int, key: c_int, _info: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Comm_split_type", Some(comm), || {
            let c = state::comm(comm)?;
            let color = if split_type == MPI_UNDEFINED { Color::undefined() } else { Color::with_value(0) };
            new_comm(c.split_by_color_with_key(color, key)?, comm, newcomm)
        })
    }

    /// `MPI_Comm_create`.
    fn MPI_Comm_create / PMPI_Comm_create(comm: c_int, group: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Comm_create", Some(comm), || {
            let c = state::comm(comm)?;
            let g = group_of(group)?;
            new_comm(c.split_by_subgroup_collective(&g)?, comm, newcomm)
        })
    }

    /// `MPI_Comm_create_group`.
    fn MPI_Comm_create_group / PMPI_Comm_create_group(comm: c_int, group: c_int, tag: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Comm_create_group", Some(comm), || {
            let c = state::comm(comm)?;
            let g = group_of(group)?;
            new_comm(c.split_by_subgroup_with_tag(&g, tag)?, comm, newcomm)
        })
    }

    /// `MPI_Comm_free`: its attributes are deleted; operations in flight on it finish.
    fn MPI_Comm_free / PMPI_Comm_free(comm: *mut c_int) -> c_int {
        // SAFETY: read for the error handler only if non-null.
        let h = if comm.is_null() { None } else { Some(unsafe { *comm }) };
        call("MPI_Comm_free", h, || free_comm(comm))
    }

    /// `MPI_Comm_disconnect` (as `MPI_Comm_free`, after the communicator's operations finish).
    fn MPI_Comm_disconnect / PMPI_Comm_disconnect(comm: *mut c_int) -> c_int {
        call("MPI_Comm_disconnect", None, || free_comm(comm))
    }

    /// `MPI_Comm_compare`.
    fn MPI_Comm_compare / PMPI_Comm_compare(comm1: c_int, comm2: c_int, result: *mut c_int) -> c_int {
        call("MPI_Comm_compare", Some(comm1), || {
            let (a, b) = (state::comm(comm1)?, state::comm(comm2)?);
            let r = if comm1 == comm2 { 0 } else { relation(a.compare(&b)).max(1) };
            out(result, r)
        })
    }

    /// `MPI_Comm_group`.
    fn MPI_Comm_group / PMPI_Comm_group(comm: c_int, group: *mut c_int) -> c_int {
        call("MPI_Comm_group", Some(comm), || new_group(state::comm(comm)?.group(), group))
    }

    /// `MPI_Comm_remote_group`.
    fn MPI_Comm_remote_group / PMPI_Comm_remote_group(comm: c_int, group: *mut c_int) -> c_int {
        call("MPI_Comm_remote_group", Some(comm), || {
            let c = state::comm(comm)?;
            let inter = c.clone().into_inter().ok_or_else(|| Error::new(class::COMM, "not an intercommunicator"))?;
            new_group(inter.remote_group(), group)
        })
    }

    /// `MPI_Intercomm_create`.
    fn MPI_Intercomm_create / PMPI_Intercomm_create(local: c_int, local_leader: c_int, peer: c_int, remote_leader: c_int, tag: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Intercomm_create", Some(local), || {
            let l = state::comm(local)?;
            // The peer communicator matters at the leaders only.
            let p = if l.rank() == local_leader { state::comm(peer)? } else { l.clone() };
            let inter = InterCommunicator::create(&l, local_leader, &p, remote_leader, tag)?;
            new_comm(Some(inter.as_simple().clone()), local, newcomm)
        })
    }

    /// `MPI_Intercomm_merge`.
    fn MPI_Intercomm_merge / PMPI_Intercomm_merge(intercomm: c_int, high: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Intercomm_merge", Some(intercomm), || {
            let c = state::comm(intercomm)?;
            let inter = c.into_inter().ok_or_else(|| Error::new(class::COMM, "not an intercommunicator"))?;
            let order = if high != 0 { MergeOrder::High } else { MergeOrder::Low };
            new_comm(Some(inter.merge(order)?), intercomm, newcomm)
        })
    }

    /// `MPI_Comm_set_info`: onecopy takes no hints, so any info is accepted and changes
    /// nothing.
    fn MPI_Comm_set_info / PMPI_Comm_set_info(comm: c_int, info: c_int) -> c_int {
        call("MPI_Comm_set_info", Some(comm), || {
            state::with(|s| {
                s.comm(comm)?;
                let known = info == crate::env::MPI_INFO_ENV
                    || handles::direct_index(Object::Info, info).is_some_and(|i| i >= 2 && s.infos.get(i).is_some());
                if known { Ok(()) } else { Err(Error::new(class::INFO, format!("{info:#x} is not an info object"))) }
            })
        })
    }

    /// `MPI_Comm_get_info`: a new, empty info object (no hints are in use).
    fn MPI_Comm_get_info / PMPI_Comm_get_info(comm: c_int, info: *mut c_int) -> c_int {
        call("MPI_Comm_get_info", Some(comm), || {
            let i = state::with(|s| {
                s.comm(comm)?;
                s.infos.insert(Vec::new()).ok_or_else(|| Error::new(class::INTERN, "too many info objects"))
            })?;
            out(info, handles::direct(Object::Info, i))
        })
    }

    /// `MPI_Comm_set_name`.
    fn MPI_Comm_set_name / PMPI_Comm_set_name(comm: c_int, name: *const c_char) -> c_int {
        call("MPI_Comm_set_name", Some(comm), || {
            if name.is_null() {
                return Err(Error::new(class::ARG, "the name is null"));
            }
            // SAFETY: a NUL-terminated string from the program.
            let text = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
            state::comm(comm)?.set_name(&text);
            Ok(())
        })
    }

    /// `MPI_Comm_get_name`.
    fn MPI_Comm_get_name / PMPI_Comm_get_name(comm: c_int, name: *mut c_char, len: *mut c_int) -> c_int {
        call("MPI_Comm_get_name", Some(comm), || {
            let text = state::comm(comm)?.get_name();
            // SAFETY: the program's buffer of MPI_MAX_OBJECT_NAME bytes.
            unsafe { write_string(&text, name, 128, len) }
        })
    }

    /// `MPI_Comm_set_errhandler`.
    fn MPI_Comm_set_errhandler / PMPI_Comm_set_errhandler(comm: c_int, errhandler: c_int) -> c_int {
        call("MPI_Comm_set_errhandler", Some(comm), || {
            state::with(|s| {
                s.comm(comm)?;
                error::retain(s, errhandler)?;
                let i = State::comm_index(comm).expect("checked");
                let old = std::mem::replace(&mut s.comms.get_mut(i).expect("checked").errhandler, errhandler);
                error::release(s, old);
                Ok(())
            })
        })
    }

    /// `MPI_Errhandler_set` (MPI-1's name).
    fn MPI_Errhandler_set / PMPI_Errhandler_set(comm: c_int, errhandler: c_int) -> c_int {
        // SAFETY: same arguments.
        unsafe { PMPI_Comm_set_errhandler(comm, errhandler) }
    }

    /// `MPI_Comm_get_errhandler`: a new reference, for `MPI_Errhandler_free`.
    fn MPI_Comm_get_errhandler / PMPI_Comm_get_errhandler(comm: c_int, errhandler: *mut c_int) -> c_int {
        call("MPI_Comm_get_errhandler", Some(comm), || {
            let h = state::with(|s| {
                let h = s.comm(comm)?.errhandler;
                error::retain(s, h)?;
                Ok(h)
            })?;
            out(errhandler, h)
        })
    }

    /// `MPI_Errhandler_get` (MPI-1's name).
    fn MPI_Errhandler_get / PMPI_Errhandler_get(comm: c_int, errhandler: *mut c_int) -> c_int {
        // SAFETY: same arguments.
        unsafe { PMPI_Comm_get_errhandler(comm, errhandler) }
    }

    /// `MPI_Comm_create_errhandler`.
    fn MPI_Comm_create_errhandler / PMPI_Comm_create_errhandler(func: Option<HandlerFn>, errhandler: *mut c_int) -> c_int {
        call("MPI_Comm_create_errhandler", None, || {
            let func = func.ok_or_else(|| Error::new(class::ARG, "the function is null"))?;
            let i = state::with(|s| s.errhandlers.insert(UserHandler { func, refs: 1 }).ok_or_else(|| Error::new(class::INTERN, "too many error handlers")))?;
            out(errhandler, handles::direct(Object::Errhandler, i))
        })
    }

    /// `MPI_Errhandler_free`: communicators that have it keep it.
    fn MPI_Errhandler_free / PMPI_Errhandler_free(errhandler: *mut c_int) -> c_int {
        call("MPI_Errhandler_free", None, || {
            if errhandler.is_null() {
                return Err(Error::new(class::ARG, "the errhandler argument is null"));
            }
            // SAFETY: non-null.
            let h = unsafe { *errhandler };
            state::with(|s| {
                if handles::direct_index(Object::Errhandler, h).and_then(|i| s.errhandlers.get(i)).is_none() && !handles::is_builtin(Object::Errhandler, h) {
                    return Err(Error::new(class::ARG, format!("{h:#x} is not an error handler")));
                }
                error::release(s, h);
                Ok(())
            })?;
            out(errhandler, handles::MPI_ERRHANDLER_NULL)
        })
    }

    /// `MPI_Comm_call_errhandler`.
    fn MPI_Comm_call_errhandler / PMPI_Comm_call_errhandler(comm: c_int, errorcode: c_int) -> c_int {
        let known = state::with(|s| s.comm(comm).map(|_| ()));
        if let Err(e) = known {
            return error::raise("MPI_Comm_call_errhandler", MPI_COMM_WORLD, &e);
        }
        let class = state::with_any(|s| s.codes.class_of(errorcode))
            .flatten()
            .unwrap_or(class::UNKNOWN);
        let text = state::with_any(|s| s.codes.text_of(errorcode))
            .flatten()
            .unwrap_or_default();
        error::handle("MPI_Comm_call_errhandler", comm, errorcode, &Error::new(class, text));
        handles::MPI_SUCCESS
    }

    /// `MPI_Comm_create_keyval`.
    fn MPI_Comm_create_keyval / PMPI_Comm_create_keyval(copy: Option<CopyFn>, delete: Option<DeleteFn>, keyval: *mut c_int, extra: *mut c_void) -> c_int {
        call("MPI_Comm_create_keyval", None, || create_keyval(copy, delete, keyval, extra))
    }

    /// `MPI_Keyval_create` (MPI-1's name).
    fn MPI_Keyval_create / PMPI_Keyval_create(copy: Option<CopyFn>, delete: Option<DeleteFn>, keyval: *mut c_int, extra: *mut c_void) -> c_int {
        call("MPI_Keyval_create", None, || create_keyval(copy, delete, keyval, extra))
    }

    /// `MPI_Comm_free_keyval`.
    fn MPI_Comm_free_keyval / PMPI_Comm_free_keyval(keyval: *mut c_int) -> c_int {
        call("MPI_Comm_free_keyval", None, || free_keyval(keyval))
    }

    /// `MPI_Keyval_free` (MPI-1's name).
    fn MPI_Keyval_free / PMPI_Keyval_free(keyval: *mut c_int) -> c_int {
        call("MPI_Keyval_free", None, || free_keyval(keyval))
    }

    /// `MPI_Comm_set_attr`.
    fn MPI_Comm_set_attr / PMPI_Comm_set_attr(comm: c_int, keyval: c_int, value: *mut c_void) -> c_int {
        call("MPI_Comm_set_attr", Some(comm), || set_attr(comm, keyval, value))
    }

    /// `MPI_Attr_put` (MPI-1's name).
    fn MPI_Attr_put / PMPI_Attr_put(comm: c_int, keyval: c_int, value: *mut c_void) -> c_int {
        call("MPI_Attr_put", Some(comm), || set_attr(comm, keyval, value))
    }

    /// `MPI_Comm_get_attr`.
    fn MPI_Comm_get_attr / PMPI_Comm_get_attr(comm: c_int, keyval: c_int, value: *mut c_void, flag: *mut c_int) -> c_int {
        call("MPI_Comm_get_attr", Some(comm), || get_attr(comm, keyval, value, flag))
    }

    /// `MPI_Attr_get` (MPI-1's name).
    fn MPI_Attr_get / PMPI_Attr_get(comm: c_int, keyval: c_int, value: *mut c_void, flag: *mut c_int) -> c_int {
        call("MPI_Attr_get", Some(comm), || get_attr(comm, keyval, value, flag))
    }

    /// `MPI_Comm_delete_attr`.
    fn MPI_Comm_delete_attr / PMPI_Comm_delete_attr(comm: c_int, keyval: c_int) -> c_int {
        call("MPI_Comm_delete_attr", Some(comm), || delete_attr(comm, keyval))
    }

    /// `MPI_Attr_delete` (MPI-1's name).
    fn MPI_Attr_delete / PMPI_Attr_delete(comm: c_int, keyval: c_int) -> c_int {
        call("MPI_Attr_delete", Some(comm), || delete_attr(comm, keyval))
    }

    /// `MPI_Group_size`.
    fn MPI_Group_size / PMPI_Group_size(group: c_int, size: *mut c_int) -> c_int {
        call("MPI_Group_size", None, || out(size, group_of(group)?.size()))
    }

    /// `MPI_Group_rank`.
    fn MPI_Group_rank / PMPI_Group_rank(group: c_int, rank: *mut c_int) -> c_int {
        call("MPI_Group_rank", None, || out(rank, group_of(group)?.rank().unwrap_or(MPI_UNDEFINED)))
    }

    /// `MPI_Group_free`.
    fn MPI_Group_free / PMPI_Group_free(group: *mut c_int) -> c_int {
        call("MPI_Group_free", None, || {
            if group.is_null() {
                return Err(Error::new(class::ARG, "the group argument is null"));
            }
            // SAFETY: non-null.
            let h = unsafe { *group };
            if h != MPI_GROUP_EMPTY {
                state::with(|s| {
                    handles::direct_index(Object::Group, h)
                        .and_then(|i| s.groups.remove(i))
                        .map(|_| ())
                        .ok_or_else(|| Error::new(class::GROUP, format!("{h:#x} is not a group")))
                })?;
            }
            out(group, MPI_GROUP_NULL)
        })
    }

    /// `MPI_Group_incl`.
    fn MPI_Group_incl / PMPI_Group_incl(group: c_int, n: c_int, r: *const c_int, newgroup: *mut c_int) -> c_int {
        call("MPI_Group_incl", None, || {
            let g = group_of(group)?.include(ranks(r, n)?).map_err(|e| Error::new(class::RANK, e.to_string()))?;
            new_group(g, newgroup)
        })
    }

    /// `MPI_Group_excl`.
    fn MPI_Group_excl / PMPI_Group_excl(group: c_int, n: c_int, r: *const c_int, newgroup: *mut c_int) -> c_int {
        call("MPI_Group_excl", None, || {
            let g = group_of(group)?.exclude(ranks(r, n)?).map_err(|e| Error::new(class::RANK, e.to_string()))?;
            new_group(g, newgroup)
        })
    }

    /// `MPI_Group_range_incl`.
    fn MPI_Group_range_incl / PMPI_Group_range_incl(group: c_int, n: c_int, r: *const [c_int; 3], newgroup: *mut c_int) -> c_int {
        call("MPI_Group_range_incl", None, || {
            let g = group_of(group)?.range_include(&ranges(r, n)?).map_err(|e| Error::new(class::RANK, e.to_string()))?;
            new_group(g, newgroup)
        })
    }

    /// `MPI_Group_range_excl`.
    fn MPI_Group_range_excl / PMPI_Group_range_excl(group: c_int, n: c_int, r: *const [c_int; 3], newgroup: *mut c_int) -> c_int {
        call("MPI_Group_range_excl", None, || {
            let g = group_of(group)?.range_exclude(&ranges(r, n)?).map_err(|e| Error::new(class::RANK, e.to_string()))?;
            new_group(g, newgroup)
        })
    }

    /// `MPI_Group_union`.
    fn MPI_Group_union / PMPI_Group_union(a: c_int, b: c_int, newgroup: *mut c_int) -> c_int {
        call("MPI_Group_union", None, || new_group(group_of(a)?.union(&group_of(b)?), newgroup))
    }

    /// `MPI_Group_intersection`.
    fn MPI_Group_intersection / PMPI_Group_intersection(a: c_int, b: c_int, newgroup: *mut c_int) -> c_int {
        call("MPI_Group_intersection", None, || new_group(group_of(a)?.intersection(&group_of(b)?), newgroup))
    }

    /// `MPI_Group_difference`.
    fn MPI_Group_difference / PMPI_Group_difference(a: c_int, b: c_int, newgroup: *mut c_int) -> c_int {
        call("MPI_Group_difference", None, || new_group(group_of(a)?.difference(&group_of(b)?), newgroup))
    }

    /// `MPI_Group_translate_ranks`.
    fn MPI_Group_translate_ranks / PMPI_Group_translate_ranks(a: c_int, n: c_int, r: *const c_int, b: c_int, out_ranks: *mut c_int) -> c_int {
        call("MPI_Group_translate_ranks", None, || {
            let (ga, gb) = (group_of(a)?, group_of(b)?);
            let r = ranks(r, n)?;
            if let Some(bad) = r.iter().find(|&&x| x != handles::MPI_PROC_NULL && !(0..ga.size()).contains(&x)) {
                return Err(Error::new(class::RANK, format!("rank {bad} is not in the group of {}", ga.size())));
            }
            if !r.is_empty() && out_ranks.is_null() {
                return Err(Error::new(class::ARG, "the output array is null"));
            }
            for (i, &x) in r.iter().enumerate() {
                let t = if x == handles::MPI_PROC_NULL { handles::MPI_PROC_NULL } else { ga.translate_rank(x, &gb).unwrap_or(MPI_UNDEFINED) };
                // SAFETY: the program passes `n` outputs.
                unsafe { *out_ranks.add(i) = t };
            }
            Ok(())
        })
    }

    /// `MPI_Group_compare`.
    fn MPI_Group_compare / PMPI_Group_compare(a: c_int, b: c_int, result: *mut c_int) -> c_int {
        call("MPI_Group_compare", None, || {
            let r = match group_of(a)?.compare(&group_of(b)?) {
                GroupRelation::Identical => 0,
                GroupRelation::Similar => 2,
                GroupRelation::Unequal => 3,
            };
            out(result, r)
        })
    }
}

/// MPICH's `MPI_DUP_FN` (`MPI_COMM_DUP_FN`, `MPI_TYPE_DUP_FN`): the attribute is copied as is.
///
/// # Safety
/// `out` receives a `void*` and `flag` an int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MPIR_Dup_fn(
    _comm: c_int,
    _key: c_int,
    _extra: *mut c_void,
    value: *mut c_void,
    out: *mut c_void,
    flag: *mut c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        *out.cast::<*mut c_void>() = value;
        *flag = 1;
    }
    handles::MPI_SUCCESS
}
