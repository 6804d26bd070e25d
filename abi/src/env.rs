//! The environment: init and finalize, versions, names, time, abort, error strings and
//! classes, memory, and info objects.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::time::Instant;

use onecopy::traits::*;

use crate::error::{self, Error, Result, call, class, write_string};
use crate::export::mpi_export;
use crate::handles::{self, MPI_INFO_NULL, MPI_SUCCESS, Object, thread};
use crate::state::{self, Phase};

/// What `MPI_Get_library_version` says.
pub const LIBRARY_VERSION: &str = concat!(
    "onecopy ",
    env!("CARGO_PKG_VERSION"),
    ": MPI on one node by single copy (Cross Memory Attach), MPICH ABI (libmpi.so.12)"
);

/// `MPI_INFO_ENV`.
pub const MPI_INFO_ENV: c_int = 0x5c00_0001;

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
static MAIN: std::sync::OnceLock<std::thread::ThreadId> = std::sync::OnceLock::new();

fn out<T>(p: *mut T, v: T) -> Result {
    if p.is_null() {
        return Err(Error::new(class::ARG, "an output argument is null"));
    }
    // SAFETY: non-null; the program's output.
    unsafe { p.write(v) };
    Ok(())
}

fn init(level: c_int) -> Result<c_int> {
    let provided = level.clamp(thread::SINGLE, thread::FUNNELED);
    state::start(provided)?;
    let _ = EPOCH.get_or_init(Instant::now);
    let _ = MAIN.set(std::thread::current().id());
    Ok(provided)
}

fn c_str(p: *const c_char, what: &str) -> Result<String> {
    if p.is_null() {
        return Err(Error::new(class::ARG, format!("the {what} is null")));
    }
    // SAFETY: a NUL-terminated string from the program.
    Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn info_index(handle: c_int) -> Result<usize> {
    if handle == MPI_INFO_ENV {
        return Ok(1);
    }
    handles::direct_index(Object::Info, handle)
        .filter(|&i| i >= 2)
        .ok_or_else(|| {
            Error::new(
                class::INFO,
                format!("{handle:#x} is not an info object (freed, MPI_INFO_NULL, or garbage)"),
            )
        })
}

fn with_info<R>(
    handle: c_int,
    f: impl FnOnce(&mut Vec<(String, String)>) -> Result<R>,
) -> Result<R> {
    let i = info_index(handle)?;
    state::with(|s| {
        if i == 1 {
            let mut env = Vec::new();
            return f(&mut env);
        }
        let info = s.infos.get_mut(i).ok_or_else(|| {
            Error::new(
                class::INFO,
                format!("{handle:#x} is not an info object (freed?)"),
            )
        })?;
        f(info)
    })
}

fn new_info(v: Vec<(String, String)>, out_handle: *mut c_int) -> Result {
    let i = state::with(|s| {
        s.infos
            .insert(v)
            .ok_or_else(|| Error::new(class::INTERN, "too many info objects"))
    })?;
    out(out_handle, handles::direct(Object::Info, i))
}

mpi_export! {
    /// `MPI_Init`: joins the job `onecopy run` started, or runs as a world of one.
    fn MPI_Init / PMPI_Init(_argc: *mut c_int, _argv: *mut *mut *mut c_char) -> c_int {
        call("MPI_Init", None, || init(thread::SINGLE).map(|_| ()))
    }

    /// `MPI_Init_thread`: provides at most `MPI_THREAD_FUNNELED` (the runtime lives on the
    /// thread that initialized it).
    fn MPI_Init_thread / PMPI_Init_thread(_argc: *mut c_int, _argv: *mut *mut *mut c_char, required: c_int, provided: *mut c_int) -> c_int {
        call("MPI_Init_thread", None, || {
            let p = init(required)?;
            out(provided, p)
        })
    }

    /// `MPI_Finalize`: attributes of the world and self go, every rank waits for the others.
    fn MPI_Finalize / PMPI_Finalize() -> c_int {
        call("MPI_Finalize", None, || {
            crate::comm::finalize_attrs()?;
            state::finish()
        })
    }

    /// `MPI_Initialized`.
    fn MPI_Initialized / PMPI_Initialized(flag: *mut c_int) -> c_int {
        call("MPI_Initialized", None, || out(flag, (state::phase() != Phase::Before) as c_int))
    }

    /// `MPI_Finalized`.
    fn MPI_Finalized / PMPI_Finalized(flag: *mut c_int) -> c_int {
        call("MPI_Finalized", None, || out(flag, (state::phase() == Phase::After) as c_int))
    }

    /// `MPI_Abort`: this process exits with `errorcode`, and the launcher ends every other rank.
    fn MPI_Abort / PMPI_Abort(comm: c_int, errorcode: c_int) -> c_int {
        let c = state::comm(comm).or_else(|_| state::comm(handles::MPI_COMM_WORLD));
        match c {
            Ok(c) => c.abort(errorcode),
            Err(_) => {
                eprintln!("onecopy: MPI_Abort({errorcode}) outside MPI_Init/MPI_Finalize");
                std::process::exit(if errorcode & 0xff == 0 { 1 } else { errorcode })
            }
        }
    }

    /// `MPI_Query_thread`.
    fn MPI_Query_thread / PMPI_Query_thread(provided: *mut c_int) -> c_int {
        call("MPI_Query_thread", None, || out(provided, state::with(|s| Ok(s.thread_level))?))
    }

    /// `MPI_Is_thread_main`.
    fn MPI_Is_thread_main / PMPI_Is_thread_main(flag: *mut c_int) -> c_int {
        call("MPI_Is_thread_main", None, || out(flag, (MAIN.get() == Some(&std::thread::current().id())) as c_int))
    }

    /// `MPI_Get_version`: the MPI standard version whose functions this library covers.
    fn MPI_Get_version / PMPI_Get_version(version: *mut c_int, subversion: *mut c_int) -> c_int {
        call("MPI_Get_version", None, || {
            out(version, 3)?;
            out(subversion, 1)
        })
    }

    /// `MPI_Get_library_version`.
    fn MPI_Get_library_version / PMPI_Get_library_version(version: *mut c_char, len: *mut c_int) -> c_int {
        // SAFETY: the program's buffer of MPI_MAX_LIBRARY_VERSION_STRING bytes.
        call("MPI_Get_library_version", None, || unsafe { write_string(LIBRARY_VERSION, version, 8192, len) })
    }

    /// `MPI_Get_processor_name`: the host name.
    fn MPI_Get_processor_name / PMPI_Get_processor_name(name: *mut c_char, len: *mut c_int) -> c_int {
        call("MPI_Get_processor_name", None, || {
            let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
            // SAFETY: the program's buffer of MPI_MAX_PROCESSOR_NAME bytes.
            unsafe { write_string(&host, name, 128, len) }
        })
    }

    /// `MPI_Error_string`.
    fn MPI_Error_string / PMPI_Error_string(code: c_int, text: *mut c_char, len: *mut c_int) -> c_int {
        call("MPI_Error_string", None, || {
            let s = state::with_any(|s| s.codes.text_of(code)).flatten()
                .or_else(|| (0..=class::LAST_PREDEFINED).contains(&code).then(|| error::class_text(code)))
                .ok_or_else(|| Error::new(class::ARG, format!("{code} is not an error code")))?;
            // SAFETY: the program's buffer of MPI_MAX_ERROR_STRING bytes.
            unsafe { write_string(&s, text, 512, len) }
        })
    }

    /// `MPI_Error_class`.
    fn MPI_Error_class / PMPI_Error_class(code: c_int, class_out: *mut c_int) -> c_int {
        call("MPI_Error_class", None, || {
            let c = state::with_any(|s| s.codes.class_of(code)).flatten()
                .or_else(|| (0..=class::LAST_PREDEFINED).contains(&code).then_some(code))
                .ok_or_else(|| Error::new(class::ARG, format!("{code} is not an error code")))?;
            out(class_out, c)
        })
    }

    /// `MPI_Add_error_class`.
    fn MPI_Add_error_class / PMPI_Add_error_class(class_out: *mut c_int) -> c_int {
        call("MPI_Add_error_class", None, || {
            let c = state::with(|s| {
                let next = s.codes.added.iter().filter(|(c, cls, _)| c == cls).count() as c_int;
                let c = class::LAST_PREDEFINED + 1 + next;
                if c >= 0x7f {
                    return Err(Error::new(class::INTERN, "no more error classes"));
                }
                s.codes.added.push((c, c, String::new()));
                s.codes.last_used = s.codes.last_used.max(c);
                Ok(c)
            })?;
            out(class_out, c)
        })
    }

    /// `MPI_Add_error_code`.
    fn MPI_Add_error_code / PMPI_Add_error_code(errorclass: c_int, code_out: *mut c_int) -> c_int {
        call("MPI_Add_error_code", None, || {
            let c = state::with(|s| {
                if s.codes.class_of(errorclass) != Some(errorclass) {
                    return Err(Error::new(class::ARG, format!("{errorclass} is not an error class")));
                }
                let c = error::FIRST_ADDED_CODE + s.codes.added.len() as c_int;
                s.codes.added.push((c, errorclass, String::new()));
                s.codes.last_used = s.codes.last_used.max(c);
                Ok(c)
            })?;
            out(code_out, c)
        })
    }

    /// `MPI_Add_error_string`.
    fn MPI_Add_error_string / PMPI_Add_error_string(code: c_int, text: *const c_char) -> c_int {
        call("MPI_Add_error_string", None, || {
            let t = c_str(text, "string")?;
            state::with(|s| {
                let e = s.codes.added.iter_mut().find(|(c, _, _)| *c == code)
                    .ok_or_else(|| Error::new(class::ARG, format!("{code} is not an added class or code; predefined strings cannot change")))?;
                e.2 = t;
                Ok(())
            })
        })
    }

    /// `MPI_Alloc_mem`.
    fn MPI_Alloc_mem / PMPI_Alloc_mem(size: isize, _info: c_int, baseptr: *mut c_void) -> c_int {
        call("MPI_Alloc_mem", None, || {
            let n = usize::try_from(size).map_err(|_| Error::new(class::ARG, "the size is negative"))?;
            // SAFETY: plain allocation; 64-byte alignment for any element type.
            let p = unsafe {
                let mut p: *mut c_void = std::ptr::null_mut();
                if libc::posix_memalign(&mut p, 64, n.max(1)) != 0 {
                    return Err(Error::new(class::NO_MEM, format!("cannot allocate {n} bytes")));
                }
                p
            };
            if baseptr.is_null() {
                // SAFETY: allocated just above.
                unsafe { libc::free(p) };
                return Err(Error::new(class::ARG, "baseptr is null"));
            }
            // SAFETY: the program passes a `void*` to receive the pointer.
            unsafe { *baseptr.cast::<*mut c_void>() = p };
            Ok(())
        })
    }

    /// `MPI_Free_mem`.
    fn MPI_Free_mem / PMPI_Free_mem(base: *mut c_void) -> c_int {
        // SAFETY: memory from MPI_Alloc_mem (posix_memalign), as MPI requires.
        unsafe { libc::free(base) };
        MPI_SUCCESS
    }

    /// `MPI_Pcontrol`: profiling control, which does nothing here (tools interpose it).
    fn MPI_Pcontrol / PMPI_Pcontrol(_level: c_int) -> c_int {
        MPI_SUCCESS
    }

    /// `MPI_Info_create`.
    fn MPI_Info_create / PMPI_Info_create(info: *mut c_int) -> c_int {
        call("MPI_Info_create", None, || new_info(Vec::new(), info))
    }

    /// `MPI_Info_dup`.
    fn MPI_Info_dup / PMPI_Info_dup(info: c_int, newinfo: *mut c_int) -> c_int {
        call("MPI_Info_dup", None, || {
            let v = with_info(info, |v| Ok(v.clone()))?;
            new_info(v, newinfo)
        })
    }

    /// `MPI_Info_free`.
    fn MPI_Info_free / PMPI_Info_free(info: *mut c_int) -> c_int {
        call("MPI_Info_free", None, || {
            if info.is_null() {
                return Err(Error::new(class::ARG, "the info argument is null"));
            }
            // SAFETY: non-null.
            let i = info_index(unsafe { *info })?;
            if i == 1 {
                return Err(Error::new(class::INFO, "MPI_INFO_ENV cannot be freed"));
            }
            state::with(|s| s.infos.remove(i).map(|_| ()).ok_or_else(|| Error::new(class::INFO, "the info object was freed already")))?;
            out(info, MPI_INFO_NULL)
        })
    }

    /// `MPI_Info_set`.
    fn MPI_Info_set / PMPI_Info_set(info: c_int, key: *const c_char, value: *const c_char) -> c_int {
        call("MPI_Info_set", None, || {
            let (k, v) = (c_str(key, "key")?, c_str(value, "value")?);
            if k.is_empty() || k.len() > 255 {
                return Err(Error::new(28 + 1, format!("info key of {} bytes (1 to 255)", k.len())));
            }
            if v.len() > 1024 {
                return Err(Error::new(28 + 2, format!("info value of {} bytes (at most 1024)", v.len())));
            }
            if info == MPI_INFO_ENV {
                return Err(Error::new(class::INFO, "MPI_INFO_ENV is read-only"));
            }
            with_info(info, |all| {
                match all.iter_mut().find(|(x, _)| *x == k) {
                    Some(e) => e.1 = v,
                    None => all.push((k, v)),
                }
                Ok(())
            })
        })
    }

    /// `MPI_Info_delete`.
    fn MPI_Info_delete / PMPI_Info_delete(info: c_int, key: *const c_char) -> c_int {
        call("MPI_Info_delete", None, || {
            let k = c_str(key, "key")?;
            with_info(info, |all| {
                let at = all.iter().position(|(x, _)| *x == k).ok_or_else(|| Error::new(28 + 3, format!("no key {k:?}")))?;
                all.remove(at);
                Ok(())
            })
        })
    }

    /// `MPI_Info_get`.
    fn MPI_Info_get / PMPI_Info_get(info: c_int, key: *const c_char, valuelen: c_int, value: *mut c_char, flag: *mut c_int) -> c_int {
        call("MPI_Info_get", None, || {
            let k = c_str(key, "key")?;
            let v = with_info(info, |all| Ok(all.iter().find(|(x, _)| *x == k).map(|e| e.1.clone())))?;
            out(flag, v.is_some() as c_int)?;
            if let Some(v) = v {
                let cap = usize::try_from(valuelen).map_err(|_| Error::new(class::ARG, "valuelen is negative"))?;
                // SAFETY: the program's buffer of valuelen + 1 bytes.
                unsafe { write_string(&v, value, cap + 1, std::ptr::null_mut())? };
            }
            Ok(())
        })
    }

    /// `MPI_Info_get_valuelen`.
    fn MPI_Info_get_valuelen / PMPI_Info_get_valuelen(info: c_int, key: *const c_char, valuelen: *mut c_int, flag: *mut c_int) -> c_int {
        call("MPI_Info_get_valuelen", None, || {
            let k = c_str(key, "key")?;
            let v = with_info(info, |all| Ok(all.iter().find(|(x, _)| *x == k).map(|e| e.1.len())))?;
            out(flag, v.is_some() as c_int)?;
            if let Some(n) = v {
                out(valuelen, n as c_int)?;
            }
            Ok(())
        })
    }

    /// `MPI_Info_get_nkeys`.
    fn MPI_Info_get_nkeys / PMPI_Info_get_nkeys(info: c_int, nkeys: *mut c_int) -> c_int {
        call("MPI_Info_get_nkeys", None, || out(nkeys, with_info(info, |all| Ok(all.len() as c_int))?))
    }

    /// `MPI_Info_get_nthkey`.
    fn MPI_Info_get_nthkey / PMPI_Info_get_nthkey(info: c_int, n: c_int, key: *mut c_char) -> c_int {
        call("MPI_Info_get_nthkey", None, || {
            let k = with_info(info, |all| {
                usize::try_from(n).ok().and_then(|n| all.get(n)).map(|e| e.0.clone())
                    .ok_or_else(|| Error::new(class::ARG, format!("key {n} of {}", all.len())))
            })?;
            // SAFETY: the program's buffer of MPI_MAX_INFO_KEY + 1 bytes.
            unsafe { write_string(&k, key, 256, std::ptr::null_mut()) }
        })
    }
}

/// `MPI_Wtime`: seconds since the library started.
#[unsafe(no_mangle)]
pub extern "C" fn PMPI_Wtime() -> f64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64()
}
/// `MPI_Wtime` under its MPI name.
#[unsafe(no_mangle)]
pub extern "C" fn MPI_Wtime() -> f64 {
    PMPI_Wtime()
}
/// `MPI_Wtick`: the clock's resolution.
#[unsafe(no_mangle)]
pub extern "C" fn PMPI_Wtick() -> f64 {
    1e-9
}
/// `MPI_Wtick` under its MPI name.
#[unsafe(no_mangle)]
pub extern "C" fn MPI_Wtick() -> f64 {
    PMPI_Wtick()
}

mpi_export! {
    /// `MPI_Status_c2f`: the Fortran status is the same five ints.
    fn MPI_Status_c2f / PMPI_Status_c2f(c: *const handles::MpiStatus, f: *mut c_int) -> c_int {
        call("MPI_Status_c2f", None, || {
            if c.is_null() || f.is_null() || c as usize == handles::MPI_STATUS_IGNORE {
                return Err(Error::new(class::ARG, "a status is null or MPI_STATUS_IGNORE"));
            }
            // SAFETY: the program's status and five ints.
            unsafe { std::ptr::copy_nonoverlapping(c.cast::<c_int>(), f, 5) };
            Ok(())
        })
    }

    /// `MPI_Status_f2c`.
    fn MPI_Status_f2c / PMPI_Status_f2c(f: *const c_int, c: *mut handles::MpiStatus) -> c_int {
        call("MPI_Status_f2c", None, || {
            if c.is_null() || f.is_null() || c as usize == handles::MPI_STATUS_IGNORE {
                return Err(Error::new(class::ARG, "a status is null or MPI_STATUS_IGNORE"));
            }
            // SAFETY: five ints and the program's status.
            unsafe { std::ptr::copy_nonoverlapping(f, c.cast::<c_int>(), 5) };
            Ok(())
        })
    }

    /// `MPI_Errhandler_create` (MPI-1's `MPI_Comm_create_errhandler`).
    fn MPI_Errhandler_create / PMPI_Errhandler_create(func: Option<error::HandlerFn>, errhandler: *mut c_int) -> c_int {
        // SAFETY: same arguments.
        unsafe { crate::comm::PMPI_Comm_create_errhandler(func, errhandler) }
    }
}

/// `MPI_File_c2f`: no file is ever open (MPI-IO is not built), so every file is 0.
#[unsafe(no_mangle)]
pub extern "C" fn PMPI_File_c2f(_file: *mut c_void) -> c_int {
    0
}
/// `MPI_File_c2f` under its MPI name.
#[unsafe(no_mangle)]
pub extern "C" fn MPI_File_c2f(file: *mut c_void) -> c_int {
    PMPI_File_c2f(file)
}
/// `MPI_File_f2c`: `MPI_FILE_NULL`, as no file is ever open.
#[unsafe(no_mangle)]
pub extern "C" fn PMPI_File_f2c(_file: c_int) -> *mut c_void {
    std::ptr::null_mut()
}
/// `MPI_File_f2c` under its MPI name.
#[unsafe(no_mangle)]
pub extern "C" fn MPI_File_f2c(file: c_int) -> *mut c_void {
    PMPI_File_f2c(file)
}
