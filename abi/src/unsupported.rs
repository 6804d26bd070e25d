//! Every other function of MPI-3.1 that MPICH's `libmpi.so.12` exports, so that any program
//! built against MPICH loads: each returns `MPI_ERR_UNSUPPORTED_OPERATION` through
//! `MPI_COMM_WORLD`'s error handler, with an error string that names it. `docs/mpi-functions.md`
//! lists them, and a test checks that list against these.
//!
//! A stub takes no arguments: under the x86-64 System V convention the caller's arguments are
//! in registers or on its own stack, so a function that ignores them is safe to call with any.

use std::ffi::c_int;

use crate::error::{Error, class, raise};
use crate::handles::MPI_COMM_WORLD;

/// Why a group of functions is missing.
pub fn reason(group: &str) -> &'static str {
    match group {
        "rma" => "one-sided communication is not built yet",
        "io" => "MPI-IO is not built yet",
        "dynamic" => {
            "dynamic processes are not built: a job's ranks are fixed when onecopy run starts it"
        }
        "tool" => "the MPI tool information interface (MPI_T) is not provided",
        _ => "not built yet",
    }
}

/// Raises the error of an unsupported function.
pub fn unsupported(name: &str, group: &str) -> c_int {
    let e = Error::new(
        class::UNSUPPORTED_OPERATION,
        format!("{name} is not supported by onecopy: {}", reason(group)),
    );
    raise(name, MPI_COMM_WORLD, &e)
}

macro_rules! unsupported {
    ($($group:literal: $($name:ident / $pname:ident),* ;)*) => {
        /// Every unsupported function, with the group that says why.
        pub const UNSUPPORTED: &[(&str, &str)] = &[$($((stringify!($name), $group)),*),*];
        $($(
            #[doc = concat!("`", stringify!($name), "`: unsupported (", $group, ").")]
            #[unsafe(no_mangle)]
            pub extern "C" fn $pname() -> c_int {
                unsupported(stringify!($name), $group)
            }
            #[doc = concat!("`", stringify!($name), "` under its MPI name.")]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name() -> c_int {
                unsupported(stringify!($name), $group)
            }
        )*)*
    };
}

unsupported! {
    "rma":
        MPI_Accumulate / PMPI_Accumulate,
        MPI_Compare_and_swap / PMPI_Compare_and_swap,
        MPI_Fetch_and_op / PMPI_Fetch_and_op,
        MPI_Get / PMPI_Get,
        MPI_Get_accumulate / PMPI_Get_accumulate,
        MPI_Put / PMPI_Put,
        MPI_Raccumulate / PMPI_Raccumulate,
        MPI_Rget / PMPI_Rget,
        MPI_Rget_accumulate / PMPI_Rget_accumulate,
        MPI_Rput / PMPI_Rput,
        MPI_Win_allocate / PMPI_Win_allocate,
        MPI_Win_allocate_shared / PMPI_Win_allocate_shared,
        MPI_Win_attach / PMPI_Win_attach,
        MPI_Win_call_errhandler / PMPI_Win_call_errhandler,
        MPI_Win_complete / PMPI_Win_complete,
        MPI_Win_create / PMPI_Win_create,
        MPI_Win_create_dynamic / PMPI_Win_create_dynamic,
        MPI_Win_create_errhandler / PMPI_Win_create_errhandler,
        MPI_Win_create_keyval / PMPI_Win_create_keyval,
        MPI_Win_delete_attr / PMPI_Win_delete_attr,
        MPI_Win_detach / PMPI_Win_detach,
        MPI_Win_fence / PMPI_Win_fence,
        MPI_Win_flush / PMPI_Win_flush,
        MPI_Win_flush_all / PMPI_Win_flush_all,
        MPI_Win_flush_local / PMPI_Win_flush_local,
        MPI_Win_flush_local_all / PMPI_Win_flush_local_all,
        MPI_Win_free / PMPI_Win_free,
        MPI_Win_free_keyval / PMPI_Win_free_keyval,
        MPI_Win_get_attr / PMPI_Win_get_attr,
        MPI_Win_get_errhandler / PMPI_Win_get_errhandler,
        MPI_Win_get_group / PMPI_Win_get_group,
        MPI_Win_get_info / PMPI_Win_get_info,
        MPI_Win_get_name / PMPI_Win_get_name,
        MPI_Win_lock / PMPI_Win_lock,
        MPI_Win_lock_all / PMPI_Win_lock_all,
        MPI_Win_post / PMPI_Win_post,
        MPI_Win_set_attr / PMPI_Win_set_attr,
        MPI_Win_set_errhandler / PMPI_Win_set_errhandler,
        MPI_Win_set_info / PMPI_Win_set_info,
        MPI_Win_set_name / PMPI_Win_set_name,
        MPI_Win_shared_query / PMPI_Win_shared_query,
        MPI_Win_start / PMPI_Win_start,
        MPI_Win_sync / PMPI_Win_sync,
        MPI_Win_test / PMPI_Win_test,
        MPI_Win_unlock / PMPI_Win_unlock,
        MPI_Win_unlock_all / PMPI_Win_unlock_all,
        MPI_Win_wait / PMPI_Win_wait;
    "io":
        MPI_File_call_errhandler / PMPI_File_call_errhandler,
        MPI_File_close / PMPI_File_close,
        MPI_File_create_errhandler / PMPI_File_create_errhandler,
        MPI_File_delete / PMPI_File_delete,
        MPI_File_get_amode / PMPI_File_get_amode,
        MPI_File_get_atomicity / PMPI_File_get_atomicity,
        MPI_File_get_byte_offset / PMPI_File_get_byte_offset,
        MPI_File_get_errhandler / PMPI_File_get_errhandler,
        MPI_File_get_group / PMPI_File_get_group,
        MPI_File_get_info / PMPI_File_get_info,
        MPI_File_get_position / PMPI_File_get_position,
        MPI_File_get_position_shared / PMPI_File_get_position_shared,
        MPI_File_get_size / PMPI_File_get_size,
        MPI_File_get_type_extent / PMPI_File_get_type_extent,
        MPI_File_get_view / PMPI_File_get_view,
        MPI_File_iread / PMPI_File_iread,
        MPI_File_iread_all / PMPI_File_iread_all,
        MPI_File_iread_at / PMPI_File_iread_at,
        MPI_File_iread_at_all / PMPI_File_iread_at_all,
        MPI_File_iread_shared / PMPI_File_iread_shared,
        MPI_File_iwrite / PMPI_File_iwrite,
        MPI_File_iwrite_all / PMPI_File_iwrite_all,
        MPI_File_iwrite_at / PMPI_File_iwrite_at,
        MPI_File_iwrite_at_all / PMPI_File_iwrite_at_all,
        MPI_File_iwrite_shared / PMPI_File_iwrite_shared,
        MPI_File_open / PMPI_File_open,
        MPI_File_preallocate / PMPI_File_preallocate,
        MPI_File_read / PMPI_File_read,
        MPI_File_read_all / PMPI_File_read_all,
        MPI_File_read_all_begin / PMPI_File_read_all_begin,
        MPI_File_read_all_end / PMPI_File_read_all_end,
        MPI_File_read_at / PMPI_File_read_at,
        MPI_File_read_at_all / PMPI_File_read_at_all,
        MPI_File_read_at_all_begin / PMPI_File_read_at_all_begin,
        MPI_File_read_at_all_end / PMPI_File_read_at_all_end,
        MPI_File_read_ordered / PMPI_File_read_ordered,
        MPI_File_read_ordered_begin / PMPI_File_read_ordered_begin,
        MPI_File_read_ordered_end / PMPI_File_read_ordered_end,
        MPI_File_read_shared / PMPI_File_read_shared,
        MPI_File_seek / PMPI_File_seek,
        MPI_File_seek_shared / PMPI_File_seek_shared,
        MPI_File_set_atomicity / PMPI_File_set_atomicity,
        MPI_File_set_errhandler / PMPI_File_set_errhandler,
        MPI_File_set_info / PMPI_File_set_info,
        MPI_File_set_size / PMPI_File_set_size,
        MPI_File_set_view / PMPI_File_set_view,
        MPI_File_sync / PMPI_File_sync,
        MPI_File_write / PMPI_File_write,
        MPI_File_write_all / PMPI_File_write_all,
        MPI_File_write_all_begin / PMPI_File_write_all_begin,
        MPI_File_write_all_end / PMPI_File_write_all_end,
        MPI_File_write_at / PMPI_File_write_at,
        MPI_File_write_at_all / PMPI_File_write_at_all,
        MPI_File_write_at_all_begin / PMPI_File_write_at_all_begin,
        MPI_File_write_at_all_end / PMPI_File_write_at_all_end,
        MPI_File_write_ordered / PMPI_File_write_ordered,
        MPI_File_write_ordered_begin / PMPI_File_write_ordered_begin,
        MPI_File_write_ordered_end / PMPI_File_write_ordered_end,
        MPI_File_write_shared / PMPI_File_write_shared,
        MPI_Register_datarep / PMPI_Register_datarep;
    "dynamic":
        MPI_Close_port / PMPI_Close_port,
        MPI_Comm_accept / PMPI_Comm_accept,
        MPI_Comm_connect / PMPI_Comm_connect,
        MPI_Comm_get_parent / PMPI_Comm_get_parent,
        MPI_Comm_join / PMPI_Comm_join,
        MPI_Comm_spawn / PMPI_Comm_spawn,
        MPI_Comm_spawn_multiple / PMPI_Comm_spawn_multiple,
        MPI_Lookup_name / PMPI_Lookup_name,
        MPI_Open_port / PMPI_Open_port,
        MPI_Publish_name / PMPI_Publish_name,
        MPI_Unpublish_name / PMPI_Unpublish_name;
    "tool":
        MPI_T_category_changed / PMPI_T_category_changed,
        MPI_T_category_get_categories / PMPI_T_category_get_categories,
        MPI_T_category_get_cvars / PMPI_T_category_get_cvars,
        MPI_T_category_get_index / PMPI_T_category_get_index,
        MPI_T_category_get_info / PMPI_T_category_get_info,
        MPI_T_category_get_num / PMPI_T_category_get_num,
        MPI_T_category_get_pvars / PMPI_T_category_get_pvars,
        MPI_T_cvar_get_index / PMPI_T_cvar_get_index,
        MPI_T_cvar_get_info / PMPI_T_cvar_get_info,
        MPI_T_cvar_get_num / PMPI_T_cvar_get_num,
        MPI_T_cvar_handle_alloc / PMPI_T_cvar_handle_alloc,
        MPI_T_cvar_handle_free / PMPI_T_cvar_handle_free,
        MPI_T_cvar_read / PMPI_T_cvar_read,
        MPI_T_cvar_write / PMPI_T_cvar_write,
        MPI_T_enum_get_info / PMPI_T_enum_get_info,
        MPI_T_enum_get_item / PMPI_T_enum_get_item,
        MPI_T_finalize / PMPI_T_finalize,
        MPI_T_init_thread / PMPI_T_init_thread,
        MPI_T_pvar_get_index / PMPI_T_pvar_get_index,
        MPI_T_pvar_get_info / PMPI_T_pvar_get_info,
        MPI_T_pvar_get_num / PMPI_T_pvar_get_num,
        MPI_T_pvar_handle_alloc / PMPI_T_pvar_handle_alloc,
        MPI_T_pvar_handle_free / PMPI_T_pvar_handle_free,
        MPI_T_pvar_read / PMPI_T_pvar_read,
        MPI_T_pvar_readreset / PMPI_T_pvar_readreset,
        MPI_T_pvar_reset / PMPI_T_pvar_reset,
        MPI_T_pvar_session_create / PMPI_T_pvar_session_create,
        MPI_T_pvar_session_free / PMPI_T_pvar_session_free,
        MPI_T_pvar_start / PMPI_T_pvar_start,
        MPI_T_pvar_stop / PMPI_T_pvar_stop,
        MPI_T_pvar_write / PMPI_T_pvar_write;
    "later":
        MPI_Comm_idup / PMPI_Comm_idup,
        MPI_Ialltoallw / PMPI_Ialltoallw,
        MPI_Ineighbor_allgather / PMPI_Ineighbor_allgather,
        MPI_Ineighbor_allgatherv / PMPI_Ineighbor_allgatherv,
        MPI_Ineighbor_alltoall / PMPI_Ineighbor_alltoall,
        MPI_Ineighbor_alltoallv / PMPI_Ineighbor_alltoallv,
        MPI_Ineighbor_alltoallw / PMPI_Ineighbor_alltoallw,
        MPI_Ireduce_scatter / PMPI_Ireduce_scatter,
        MPI_Pack_external / PMPI_Pack_external,
        MPI_Pack_external_size / PMPI_Pack_external_size,
        MPI_Type_create_f90_complex / PMPI_Type_create_f90_complex,
        MPI_Type_create_f90_integer / PMPI_Type_create_f90_integer,
        MPI_Type_create_f90_real / PMPI_Type_create_f90_real,
        MPI_Unpack_external / PMPI_Unpack_external;
}
