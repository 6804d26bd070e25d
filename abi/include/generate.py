#!/usr/bin/env python3
"""Writes mpi.h: onecopy's own header for the MPICH ABI.

The constants are MPICH 4.0's ABI values (handles, error classes, status layout). The
prototypes are those of the functions the library implements, read from its Rust sources
(`mpi_export!` signatures and plain `extern "C"` functions), so the header declares exactly
what works. Run it after adding a function: `python3 abi/include/generate.py`; a test checks
that the committed header is what it writes.
"""
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE.parent / "src"

HANDLE_ARGS = {
    "MPI_Comm": {"comm", "comm1", "comm2", "local", "peer", "intercomm", "_comm"},
    "MPI_Datatype": {"datatype", "sendtype", "recvtype", "oldtype"},
    "MPI_Op": {"op"},
    "MPI_Errhandler": {"errhandler"},
    "MPI_Info": {"info", "_info"},
    "MPI_Request": {"request"},
}
HANDLE_OUTS = {
    "MPI_Comm": {"newcomm", "comm"},
    "MPI_Datatype": {"newtype", "datatype"},
    "MPI_Group": {"group", "newgroup"},
    "MPI_Errhandler": {"errhandler"},
    "MPI_Op": {"op"},
    "MPI_Message": {"message"},
    "MPI_Info": {"info", "newinfo"},
    "MPI_Request": {"request", "requests"},
}
GROUP_FUNCS = re.compile(r"MPI_Group_")


def c_type(func, name, ty):
    ty = ty.replace("handles::", "").replace("error::", "").strip()
    if ty == "c_int":
        if GROUP_FUNCS.match(func) and name in {"group", "a", "b"}:
            return "MPI_Group"
        if func in ("MPI_Comm_create", "MPI_Comm_create_group") and name == "group":
            return "MPI_Group"
        for t, names in HANDLE_ARGS.items():
            if name in names:
                return t
        return "int"
    if ty == "*mut c_int":
        if func in ("MPI_Status_c2f",):
            return "MPI_Fint *"
        for t, names in HANDLE_OUTS.items():
            if name in names:
                return t + " *"
        return "int *"
    simple = {
        "*const c_int": "const int *",
        "*const [c_int; 3]": "int (*)[3]",
        "*const c_void": "const void *",
        "*mut c_void": "void *",
        "*const c_char": "const char *",
        "*mut c_char": "char *",
        "*mut MpiStatus": "MPI_Status *",
        "*const MpiStatus": "const MPI_Status *",
        "isize": "MPI_Count" if func.endswith("_x") else "MPI_Aint",
        "Aint": "MPI_Aint",
        "*mut Aint": "MPI_Aint *",
        "*const Aint": "const MPI_Aint *",
        "*mut isize": "MPI_Count *",
        "f64": "double",
        "Option<UserFn>": "MPI_User_function *",
        "Option<HandlerFn>": "MPI_Comm_errhandler_function *",
        "Option<CopyFn>": "MPI_Comm_copy_attr_function *",
        "Option<DeleteFn>": "MPI_Comm_delete_attr_function *",
        "*mut *mut *mut c_char": "char ***",
        "*const isize": "const MPI_Aint *",
        "Option<QueryFn>": "MPI_Grequest_query_function *",
        "Option<FreeFn>": "MPI_Grequest_free_function *",
        "Option<CancelFn>": "MPI_Grequest_cancel_function *",
        "Option<TypeCopyFn>": "MPI_Type_copy_attr_function *",
        "Option<TypeDeleteFn>": "MPI_Type_delete_attr_function *",
    }
    if ty in simple:
        return simple[ty]
    sys.exit(f"generate.py: no C type for {func}({name}: {ty})")


def declare(func, args, ret):
    params = []
    for a in [a.strip() for a in args.split(",") if a.strip()]:
        name, ty = [x.strip() for x in a.split(":", 1)]
        t = c_type(func, name, ty)
        cname = name.lstrip("_")
        if cname in ("delete", "new", "class", "template", "this", "operator"):
            cname += "_fn" if cname == "delete" else "_"
        if t == "int (*)[3]":
            params.append(f"int {cname}[][3]")
        else:
            params.append(f"{t}{'' if t.endswith('*') else ' '}{cname}")
    rets = {"c_int": "int", "f64": "double", "Aint": "MPI_Aint", "*mut c_void": "MPI_File"}
    r = rets[ret.strip()]
    if func == "MPI_File_c2f":
        r, params = "MPI_Fint", ["MPI_File file"]
    if func == "MPI_File_f2c":
        params = ["MPI_Fint file"]
    p = ", ".join(params) or "void"
    return [f"{r} {func}({p});", f"{r} P{func}({p});"]


def prototypes():
    out = {}
    export = re.compile(r"fn (MPI_\w+) / PMPI_\w+\((.*?)\) -> ([^{]+?) \{")
    plain = re.compile(r'pub (?:unsafe )?extern "C" fn (MPI_\w+)\((.*?)\) -> ([^{]+?) \{')
    for f in sorted(SRC.glob("*.rs")):
        if f.name == "unsupported.rs":
            continue
        text = f.read_text()
        for m in list(export.finditer(text)) + list(plain.finditer(text)):
            out[m.group(1)] = declare(*m.groups())
    return [line for name in sorted(out) for line in out[name]]


HEAD = r"""/* mpi.h: onecopy's MPI header, with MPICH 4.0's ABI (the values of Debian 12's libmpich-dev),
 * so that a program built against it runs on onecopy's libmpi.so.12 and on MPICH's.
 * Written by abi/include/generate.py; it declares the functions onecopy implements. */
#ifndef ONECOPY_MPI_H
#define ONECOPY_MPI_H

#include <stddef.h>

#if defined(__cplusplus)
extern "C" {
#endif

#define ONECOPY_MPI 1
#define MPI_VERSION 3
#define MPI_SUBVERSION 1

typedef int MPI_Comm;
typedef int MPI_Group;
typedef int MPI_Datatype;
typedef int MPI_Op;
typedef int MPI_Request;
typedef int MPI_Message;
typedef int MPI_Errhandler;
typedef int MPI_Info;
typedef int MPI_Win;
typedef long MPI_Aint;
typedef long MPI_Offset;
typedef long MPI_Count;
typedef int MPI_Fint;
typedef struct onecopy_file *MPI_File;

typedef struct MPI_Status {
    int count_lo;
    int count_hi_and_cancelled;
    int MPI_SOURCE;
    int MPI_TAG;
    int MPI_ERROR;
} MPI_Status;

typedef void MPI_User_function(void *invec, void *inoutvec, int *len, MPI_Datatype *datatype);
typedef void MPI_Comm_errhandler_function(MPI_Comm *comm, int *code, ...);
typedef MPI_Comm_errhandler_function MPI_Handler_function;
typedef int MPI_Comm_copy_attr_function(MPI_Comm oldcomm, int keyval, void *extra_state,
                                        void *attribute_val_in, void *attribute_val_out, int *flag);
typedef int MPI_Comm_delete_attr_function(MPI_Comm comm, int keyval, void *attribute_val,
                                          void *extra_state);
typedef int MPI_Type_copy_attr_function(MPI_Datatype oldtype, int keyval, void *extra_state,
                                        void *attribute_val_in, void *attribute_val_out, int *flag);
typedef int MPI_Type_delete_attr_function(MPI_Datatype datatype, int keyval, void *attribute_val,
                                          void *extra_state);
typedef int MPI_Grequest_query_function(void *extra_state, MPI_Status *status);
typedef int MPI_Grequest_free_function(void *extra_state);
typedef int MPI_Grequest_cancel_function(void *extra_state, int complete);
typedef MPI_Comm_copy_attr_function MPI_Copy_function;
typedef MPI_Comm_delete_attr_function MPI_Delete_function;

#define MPI_COMM_WORLD ((MPI_Comm)0x44000000)
#define MPI_COMM_SELF ((MPI_Comm)0x44000001)
#define MPI_COMM_NULL ((MPI_Comm)0x04000000)
#define MPI_GROUP_NULL ((MPI_Group)0x08000000)
#define MPI_GROUP_EMPTY ((MPI_Group)0x48000000)
#define MPI_DATATYPE_NULL ((MPI_Datatype)0x0c000000)
#define MPI_OP_NULL ((MPI_Op)0x18000000)
#define MPI_REQUEST_NULL ((MPI_Request)0x2c000000)
#define MPI_MESSAGE_NULL ((MPI_Message)0x2c000000)
#define MPI_MESSAGE_NO_PROC ((MPI_Message)0x6c000000)
#define MPI_ERRHANDLER_NULL ((MPI_Errhandler)0x14000000)
#define MPI_ERRORS_ARE_FATAL ((MPI_Errhandler)0x54000000)
#define MPI_ERRORS_RETURN ((MPI_Errhandler)0x54000001)
#define MPI_ERRORS_ABORT ((MPI_Errhandler)0x54000003)
#define MPI_INFO_NULL ((MPI_Info)0x1c000000)
#define MPI_INFO_ENV ((MPI_Info)0x5c000001)
#define MPI_WIN_NULL ((MPI_Win)0x20000000)
#define MPI_FILE_NULL ((MPI_File)0)

#define MPI_CHAR ((MPI_Datatype)0x4c000101)
#define MPI_SIGNED_CHAR ((MPI_Datatype)0x4c000118)
#define MPI_UNSIGNED_CHAR ((MPI_Datatype)0x4c000102)
#define MPI_BYTE ((MPI_Datatype)0x4c00010d)
#define MPI_PACKED ((MPI_Datatype)0x4c00010f)
#define MPI_WCHAR ((MPI_Datatype)0x4c00040e)
#define MPI_SHORT ((MPI_Datatype)0x4c000203)
#define MPI_UNSIGNED_SHORT ((MPI_Datatype)0x4c000204)
#define MPI_INT ((MPI_Datatype)0x4c000405)
#define MPI_UNSIGNED ((MPI_Datatype)0x4c000406)
#define MPI_LONG ((MPI_Datatype)0x4c000807)
#define MPI_UNSIGNED_LONG ((MPI_Datatype)0x4c000808)
#define MPI_LONG_LONG_INT ((MPI_Datatype)0x4c000809)
#define MPI_LONG_LONG MPI_LONG_LONG_INT
#define MPI_UNSIGNED_LONG_LONG ((MPI_Datatype)0x4c000819)
#define MPI_FLOAT ((MPI_Datatype)0x4c00040a)
#define MPI_DOUBLE ((MPI_Datatype)0x4c00080b)
#define MPI_LONG_DOUBLE ((MPI_Datatype)0x4c00100c)
#define MPI_INT8_T ((MPI_Datatype)0x4c000137)
#define MPI_INT16_T ((MPI_Datatype)0x4c000238)
#define MPI_INT32_T ((MPI_Datatype)0x4c000439)
#define MPI_INT64_T ((MPI_Datatype)0x4c00083a)
#define MPI_UINT8_T ((MPI_Datatype)0x4c00013b)
#define MPI_UINT16_T ((MPI_Datatype)0x4c00023c)
#define MPI_UINT32_T ((MPI_Datatype)0x4c00043d)
#define MPI_UINT64_T ((MPI_Datatype)0x4c00083e)
#define MPI_C_BOOL ((MPI_Datatype)0x4c00013f)
#define MPI_C_FLOAT_COMPLEX ((MPI_Datatype)0x4c000840)
#define MPI_C_COMPLEX MPI_C_FLOAT_COMPLEX
#define MPI_C_DOUBLE_COMPLEX ((MPI_Datatype)0x4c001041)
#define MPI_C_LONG_DOUBLE_COMPLEX ((MPI_Datatype)0x4c002042)
#define MPI_AINT ((MPI_Datatype)0x4c000843)
#define MPI_OFFSET ((MPI_Datatype)0x4c000844)
#define MPI_COUNT ((MPI_Datatype)0x4c000845)
#define MPI_CXX_BOOL ((MPI_Datatype)0x4c000133)
#define MPI_CXX_FLOAT_COMPLEX ((MPI_Datatype)0x4c000834)
#define MPI_CXX_DOUBLE_COMPLEX ((MPI_Datatype)0x4c001035)
#define MPI_CXX_LONG_DOUBLE_COMPLEX ((MPI_Datatype)0x4c002036)
#define MPI_FLOAT_INT ((MPI_Datatype)0x8c000000)
#define MPI_DOUBLE_INT ((MPI_Datatype)0x8c000001)
#define MPI_LONG_INT ((MPI_Datatype)0x8c000002)
#define MPI_SHORT_INT ((MPI_Datatype)0x8c000003)
#define MPI_LONG_DOUBLE_INT ((MPI_Datatype)0x8c000004)
#define MPI_2INT ((MPI_Datatype)0x4c000816)
#define MPI_INTEGER ((MPI_Datatype)0x4c00041b)
#define MPI_REAL ((MPI_Datatype)0x4c00041c)
#define MPI_DOUBLE_PRECISION ((MPI_Datatype)0x4c00081f)
#define MPI_LOGICAL ((MPI_Datatype)0x4c00041d)
#define MPI_CHARACTER ((MPI_Datatype)0x4c00011a)

#define MPI_MAX ((MPI_Op)0x58000001)
#define MPI_MIN ((MPI_Op)0x58000002)
#define MPI_SUM ((MPI_Op)0x58000003)
#define MPI_PROD ((MPI_Op)0x58000004)
#define MPI_LAND ((MPI_Op)0x58000005)
#define MPI_BAND ((MPI_Op)0x58000006)
#define MPI_LOR ((MPI_Op)0x58000007)
#define MPI_BOR ((MPI_Op)0x58000008)
#define MPI_LXOR ((MPI_Op)0x58000009)
#define MPI_BXOR ((MPI_Op)0x5800000a)
#define MPI_MINLOC ((MPI_Op)0x5800000b)
#define MPI_MAXLOC ((MPI_Op)0x5800000c)
#define MPI_REPLACE ((MPI_Op)0x5800000d)
#define MPI_NO_OP ((MPI_Op)0x5800000e)

#define MPI_ANY_SOURCE (-2)
#define MPI_ANY_TAG (-1)
#define MPI_PROC_NULL (-1)
#define MPI_ROOT (-3)
#define MPI_UNDEFINED (-32766)
#define MPI_KEYVAL_INVALID 0x24000000
#define MPI_IN_PLACE ((void *)-1)
#define MPI_BOTTOM ((void *)0)
#define MPI_STATUS_IGNORE ((MPI_Status *)1)
#define MPI_STATUSES_IGNORE ((MPI_Status *)1)
#define MPI_ERRCODES_IGNORE ((int *)0)
#define MPI_ARGV_NULL ((char **)0)
#define MPI_ARGVS_NULL ((char ***)0)

#define MPI_TAG_UB 0x64400001
#define MPI_HOST 0x64400003
#define MPI_IO 0x64400005
#define MPI_WTIME_IS_GLOBAL 0x64400007
#define MPI_UNIVERSE_SIZE 0x64400009
#define MPI_LASTUSEDCODE 0x6440000b
#define MPI_APPNUM 0x6440000d

#define MPI_THREAD_SINGLE 0
#define MPI_THREAD_FUNNELED 1
#define MPI_THREAD_SERIALIZED 2
#define MPI_THREAD_MULTIPLE 3
#define MPI_IDENT 0
#define MPI_CONGRUENT 1
#define MPI_SIMILAR 2
#define MPI_UNEQUAL 3
#define MPI_GRAPH 1
#define MPI_CART 2
#define MPI_DIST_GRAPH 3
#define MPI_COMM_TYPE_SHARED 1
#define MPI_ORDER_C 56
#define MPI_ORDER_FORTRAN 57
#define MPI_DISTRIBUTE_BLOCK 121
#define MPI_DISTRIBUTE_CYCLIC 122
#define MPI_DISTRIBUTE_NONE 123
#define MPI_DISTRIBUTE_DFLT_DARG (-49767)

#define MPI_MAX_PROCESSOR_NAME 128
#define MPI_MAX_LIBRARY_VERSION_STRING 8192
#define MPI_MAX_ERROR_STRING 512
#define MPI_MAX_OBJECT_NAME 128
#define MPI_MAX_INFO_KEY 255
#define MPI_MAX_INFO_VAL 1024
#define MPI_MAX_PORT_NAME 256
#define MPI_BSEND_OVERHEAD 96

#define MPI_NULL_COPY_FN ((MPI_Copy_function *)0)
#define MPI_NULL_DELETE_FN ((MPI_Delete_function *)0)
#define MPI_COMM_NULL_COPY_FN ((MPI_Comm_copy_attr_function *)0)
#define MPI_COMM_NULL_DELETE_FN ((MPI_Comm_delete_attr_function *)0)
int MPIR_Dup_fn(MPI_Comm, int, void *, void *, void *, int *);
#define MPI_DUP_FN MPIR_Dup_fn
#define MPI_COMM_DUP_FN ((MPI_Comm_copy_attr_function *)MPI_DUP_FN)
#define MPI_TYPE_NULL_COPY_FN ((MPI_Type_copy_attr_function *)0)
#define MPI_TYPE_NULL_DELETE_FN ((MPI_Type_delete_attr_function *)0)
#define MPI_TYPE_DUP_FN ((MPI_Type_copy_attr_function *)MPI_DUP_FN)
extern int *const MPI_UNWEIGHTED;
extern int *const MPI_WEIGHTS_EMPTY;
#define MPI_TYPECLASS_REAL 1
#define MPI_TYPECLASS_INTEGER 2
#define MPI_TYPECLASS_COMPLEX 3
#define MPI_COMBINER_NAMED 1
#define MPI_COMBINER_DUP 2
#define MPI_COMBINER_CONTIGUOUS 3
#define MPI_COMBINER_VECTOR 4
#define MPI_COMBINER_HVECTOR_INTEGER 5
#define MPI_COMBINER_HVECTOR 6
#define MPI_COMBINER_INDEXED 7
#define MPI_COMBINER_HINDEXED_INTEGER 8
#define MPI_COMBINER_HINDEXED 9
#define MPI_COMBINER_INDEXED_BLOCK 10
#define MPI_COMBINER_STRUCT_INTEGER 11
#define MPI_COMBINER_STRUCT 12
#define MPI_COMBINER_SUBARRAY 13
#define MPI_COMBINER_DARRAY 14
#define MPI_COMBINER_RESIZED 18
#define MPI_COMBINER_HINDEXED_BLOCK 19

#define MPI_SUCCESS 0
#define MPI_ERR_BUFFER 1
#define MPI_ERR_COUNT 2
#define MPI_ERR_TYPE 3
#define MPI_ERR_TAG 4
#define MPI_ERR_COMM 5
#define MPI_ERR_RANK 6
#define MPI_ERR_ROOT 7
#define MPI_ERR_GROUP 8
#define MPI_ERR_OP 9
#define MPI_ERR_TOPOLOGY 10
#define MPI_ERR_DIMS 11
#define MPI_ERR_ARG 12
#define MPI_ERR_UNKNOWN 13
#define MPI_ERR_TRUNCATE 14
#define MPI_ERR_OTHER 15
#define MPI_ERR_INTERN 16
#define MPI_ERR_IN_STATUS 17
#define MPI_ERR_PENDING 18
#define MPI_ERR_REQUEST 19
#define MPI_ERR_INFO 28
#define MPI_ERR_INFO_KEY 29
#define MPI_ERR_INFO_VALUE 30
#define MPI_ERR_INFO_NOKEY 31
#define MPI_ERR_NO_MEM 34
#define MPI_ERR_NOT_SAME 35
#define MPI_ERR_SPAWN 42
#define MPI_ERR_UNSUPPORTED_OPERATION 44
#define MPI_ERR_WIN 45
#define MPI_ERR_KEYVAL 48
#define MPI_ERR_SIZE 51
#define MPI_ERR_PROC_ABORTED 76
#define MPI_ERR_VALUE_TOO_LARGE 77
#define MPI_ERR_LASTCODE 0x3fffffff

#define MPI_Comm_c2f(h) ((MPI_Fint)(h))
#define MPI_Comm_f2c(h) ((MPI_Comm)(h))
#define MPI_Type_c2f(h) ((MPI_Fint)(h))
#define MPI_Type_f2c(h) ((MPI_Datatype)(h))
#define MPI_Group_c2f(h) ((MPI_Fint)(h))
#define MPI_Group_f2c(h) ((MPI_Group)(h))
#define MPI_Request_c2f(h) ((MPI_Fint)(h))
#define MPI_Request_f2c(h) ((MPI_Request)(h))
#define MPI_Op_c2f(h) ((MPI_Fint)(h))
#define MPI_Op_f2c(h) ((MPI_Op)(h))
#define MPI_Info_c2f(h) ((MPI_Fint)(h))
#define MPI_Info_f2c(h) ((MPI_Info)(h))
#define MPI_Errhandler_c2f(h) ((MPI_Fint)(h))
#define MPI_Errhandler_f2c(h) ((MPI_Errhandler)(h))
#define MPI_Message_c2f(h) ((MPI_Fint)(h))
#define MPI_Message_f2c(h) ((MPI_Message)(h))
"""

TAIL = r"""
#if defined(__cplusplus)
}
#endif

#endif
"""


# Limits of functions that work, for the table.
NOTES = {
    "MPI_Init_thread": "provides at most MPI_THREAD_FUNNELED: the runtime lives on the thread that initialized it",
    "MPI_Ibcast": "contiguous datatypes (builtin, or derived without holes)",
    "MPI_Iallreduce": "contiguous datatypes; intracommunicators",
    "MPI_Ireduce": "contiguous datatypes; intracommunicators",
    "MPI_Iscan": "contiguous datatypes",
    "MPI_Iexscan": "contiguous datatypes",
    "MPI_Ireduce_scatter_block": "contiguous datatypes; intracommunicators",
    "MPI_Igather": "contiguous datatypes; intracommunicators",
    "MPI_Igatherv": "builtin datatypes; intracommunicators",
    "MPI_Iscatter": "contiguous datatypes; intracommunicators",
    "MPI_Iscatterv": "builtin datatypes; intracommunicators",
    "MPI_Iallgather": "contiguous datatypes; intracommunicators",
    "MPI_Iallgatherv": "builtin datatypes; intracommunicators",
    "MPI_Ialltoall": "contiguous datatypes; intracommunicators",
    "MPI_Ialltoallv": "builtin datatypes, not in place; intracommunicators",
    "MPI_Ibarrier": "intracommunicators",
    "MPI_Alltoallv": "not in place",
    "MPI_Reduce_scatter": "intracommunicators",
    "MPI_Op_create": "contiguous elements of up to 64 bytes (1 to 16 words of 8, 4, 2 or 1 bytes)",
    "MPI_Alltoallw": "not in place; blocks at or after their buffer's start",
    "MPI_Cart_create": "reorder is accepted and ranks keep their order",
    "MPI_Graph_create": "reorder is accepted and ranks keep their order",
    "MPI_Buffer_attach": "the space is onecopy's own; the program's buffer stays untouched",
    "MPI_Comm_split_type": "every split type but MPI_UNDEFINED keeps the whole group (one node shares memory)",
    "MPI_Comm_set_info": "accepted; no hints are used",
    "MPI_Get_version": "reports 3.1",
}


def unsupported():
    text = (SRC / "unsupported.rs").read_text()
    rows = []
    for block in re.finditer(r'"(\w+)":((?:\s+MPI_\w+ / PMPI_\w+[,;])+)', text):
        for name in re.findall(r"(MPI_\w+) / PMPI_", block.group(2)):
            rows.append((name, block.group(1)))
    reasons = dict(re.findall(r'"(\w+)" => "([^"]+)"', text))
    return rows, reasons


def table():
    works = sorted({n for n in (line.split("(")[0].split()[-1] for line in prototypes()) if n.startswith("MPI_")})
    rows, reasons = unsupported()
    lines = [
        "# MPI functions in onecopy's libmpi.so.12",
        "",
        "Every `MPI_` function of MPI-3.1 that MPICH 4.0's `libmpi.so.12` exports is exported, with its",
        "`PMPI_` twin. **works**: it does what the MPI standard says (limits in the notes).",
        "**unsupported**: it returns `MPI_ERR_UNSUPPORTED_OPERATION` through `MPI_COMM_WORLD`'s error",
        "handler, with an error string naming the function. Large-count `_c` functions and MPI-4",
        "functions are not exported. Written by `abi/include/generate.py`; `cargo test` checks it",
        "against the library's exported symbols.",
        "",
        f"{len(works)} work, {len(rows)} unsupported.",
        "",
        "| function | status | notes |",
        "|---|---|---|",
    ]
    every = [(n, "works", NOTES.get(n, "")) for n in works] + [(n, "unsupported", reasons.get(g, reasons.get("_", "not built yet")) if g in reasons else "not built yet") for n, g in rows]
    for n, st, note in sorted(every):
        lines.append(f"| `{n}` | {st} | {note} |")
    return "\n".join(lines) + "\n"


def main():
    text = HEAD + "\n" + "\n".join(prototypes()) + "\n" + TAIL
    outputs = {HERE / "mpi.h": text, HERE.parent.parent / "docs" / "mpi-functions.md": table()}
    if sys.argv[1:] == ["--check"]:
        for target, want in outputs.items():
            if not target.is_file() or target.read_text() != want:
                sys.exit(f"{target.name} is out of date: run python3 abi/include/generate.py")
        return
    for target, want in outputs.items():
        target.write_text(want)


main()
