//! Datatypes: MPICH's builtin handles (their size is in the handle), the pair types, and
//! derived datatypes made by the constructors, which travel by single copy where they lie.

use std::ffi::{c_char, c_int, c_void};
use std::rc::Rc;

use onecopy::datatype::{Datatype, MutView, Primitive, UserDatatype, View};

use crate::error::{Error, Result, call, class, write_string};
use crate::export::mpi_export;
use crate::handles::{self, MPI_DATATYPE_NULL, Object};
use crate::state;

/// `MPI_Aint`, `MPI_Offset`, `MPI_Count`.
pub type Aint = isize;

/// A derived datatype behind a handle.
#[derive(Debug)]
pub struct Derived {
    /// The layout.
    pub datatype: Datatype,
    /// Whether `MPI_Type_commit` was called: only committed types communicate.
    pub committed: bool,
    /// Its name (`MPI_Type_set_name`).
    pub name: String,
    /// How it was made, for `MPI_Type_get_envelope` / `MPI_Type_get_contents`.
    pub contents: Rc<Contents>,
    /// Its attributes: key and value.
    pub attrs: Vec<(c_int, usize)>,
}

/// A constructor's arguments, as `MPI_Type_get_contents` gives them back.
#[derive(Debug)]
pub struct Contents {
    /// `MPI_COMBINER_*`.
    pub combiner: c_int,
    /// The integer arguments.
    pub ints: Vec<c_int>,
    /// The address arguments.
    pub aints: Vec<Aint>,
    /// The old types: a predefined handle, or how a derived one was made.
    pub types: Vec<TypeRef>,
}

/// An old type of a constructor.
#[derive(Debug, Clone)]
pub enum TypeRef {
    /// A predefined type's handle.
    Named(c_int),
    /// A derived type: its layout and how it was made.
    Derived(Datatype, Rc<Contents>),
}

/// MPI's combiners (MPICH's values).
#[allow(missing_docs)]
pub mod combiner {
    use std::ffi::c_int;
    pub const NAMED: c_int = 1;
    pub const DUP: c_int = 2;
    pub const CONTIGUOUS: c_int = 3;
    pub const VECTOR: c_int = 4;
    pub const HVECTOR: c_int = 6;
    pub const INDEXED: c_int = 7;
    pub const HINDEXED: c_int = 9;
    pub const INDEXED_BLOCK: c_int = 10;
    pub const STRUCT: c_int = 12;
    pub const SUBARRAY: c_int = 13;
    pub const DARRAY: c_int = 14;
    pub const RESIZED: c_int = 18;
    pub const HINDEXED_BLOCK: c_int = 19;
}

/// MPICH's builtin datatypes that onecopy knows the element type of, with their names.
pub const BUILTINS: &[(c_int, Option<Primitive>, &str)] = &[
    (0x4c000101, Some(Primitive::I8), "MPI_CHAR"),
    (0x4c000118, Some(Primitive::I8), "MPI_SIGNED_CHAR"),
    (0x4c000102, Some(Primitive::U8), "MPI_UNSIGNED_CHAR"),
    (0x4c00010d, Some(Primitive::Byte), "MPI_BYTE"),
    (0x4c00010f, Some(Primitive::Byte), "MPI_PACKED"),
    (0x4c00040e, Some(Primitive::I32), "MPI_WCHAR"),
    (0x4c000203, Some(Primitive::I16), "MPI_SHORT"),
    (0x4c000204, Some(Primitive::U16), "MPI_UNSIGNED_SHORT"),
    (0x4c000405, Some(Primitive::I32), "MPI_INT"),
    (0x4c000406, Some(Primitive::U32), "MPI_UNSIGNED"),
    (0x4c000807, Some(Primitive::I64), "MPI_LONG"),
    (0x4c000808, Some(Primitive::U64), "MPI_UNSIGNED_LONG"),
    (0x4c000809, Some(Primitive::I64), "MPI_LONG_LONG_INT"),
    (0x4c000819, Some(Primitive::U64), "MPI_UNSIGNED_LONG_LONG"),
    (0x4c00040a, Some(Primitive::F32), "MPI_FLOAT"),
    (0x4c00080b, Some(Primitive::F64), "MPI_DOUBLE"),
    (0x4c00100c, None, "MPI_LONG_DOUBLE"),
    (0x4c000137, Some(Primitive::I8), "MPI_INT8_T"),
    (0x4c000238, Some(Primitive::I16), "MPI_INT16_T"),
    (0x4c000439, Some(Primitive::I32), "MPI_INT32_T"),
    (0x4c00083a, Some(Primitive::I64), "MPI_INT64_T"),
    (0x4c00013b, Some(Primitive::U8), "MPI_UINT8_T"),
    (0x4c00023c, Some(Primitive::U16), "MPI_UINT16_T"),
    (0x4c00043d, Some(Primitive::U32), "MPI_UINT32_T"),
    (0x4c00083e, Some(Primitive::U64), "MPI_UINT64_T"),
    (0x4c00013f, Some(Primitive::Bool), "MPI_C_BOOL"),
    (0x4c000840, None, "MPI_C_FLOAT_COMPLEX"),
    (0x4c001041, None, "MPI_C_DOUBLE_COMPLEX"),
    (0x4c002042, None, "MPI_C_LONG_DOUBLE_COMPLEX"),
    (0x4c000843, Some(Primitive::I64), "MPI_AINT"),
    (0x4c000844, Some(Primitive::I64), "MPI_OFFSET"),
    (0x4c000845, Some(Primitive::I64), "MPI_COUNT"),
    (0x4c000133, Some(Primitive::Bool), "MPI_CXX_BOOL"),
    (0x4c000834, None, "MPI_CXX_FLOAT_COMPLEX"),
    (0x4c001035, None, "MPI_CXX_DOUBLE_COMPLEX"),
    (0x4c002036, None, "MPI_CXX_LONG_DOUBLE_COMPLEX"),
    (0x4c000816, None, "MPI_2INT"),
    (0x4c00041b, Some(Primitive::I32), "MPI_INTEGER"),
    (0x4c00041c, Some(Primitive::F32), "MPI_REAL"),
    (0x4c00081f, Some(Primitive::F64), "MPI_DOUBLE_PRECISION"),
    (0x4c00041d, Some(Primitive::I32), "MPI_LOGICAL"),
    (0x4c00011a, Some(Primitive::Byte), "MPI_CHARACTER"),
    (0x4c00081e, None, "MPI_COMPLEX"),
    (0x4c001022, None, "MPI_DOUBLE_COMPLEX"),
    (0x4c000820, None, "MPI_2INTEGER"),
    (0x4c000821, None, "MPI_2REAL"),
    (0x4c001023, None, "MPI_2DOUBLE_PRECISION"),
    (0x4c000427, Some(Primitive::F32), "MPI_REAL4"),
    (0x4c000829, Some(Primitive::F64), "MPI_REAL8"),
    (0x4c00102b, None, "MPI_REAL16"),
    (0x4c000828, None, "MPI_COMPLEX8"),
    (0x4c00102a, None, "MPI_COMPLEX16"),
    (0x4c00202c, None, "MPI_COMPLEX32"),
    (0x4c00012d, Some(Primitive::I8), "MPI_INTEGER1"),
    (0x4c00022f, Some(Primitive::I16), "MPI_INTEGER2"),
    (0x4c000430, Some(Primitive::I32), "MPI_INTEGER4"),
    (0x4c000831, Some(Primitive::I64), "MPI_INTEGER8"),
];

/// MPICH's pair types for `MPI_MINLOC` / `MPI_MAXLOC`: value, then an `int`, as C lays the
/// struct out.
pub const PAIRS: &[(c_int, &str)] = &[
    (0x8c000000_u32 as c_int, "MPI_FLOAT_INT"),
    (0x8c000001_u32 as c_int, "MPI_DOUBLE_INT"),
    (0x8c000002_u32 as c_int, "MPI_LONG_INT"),
    (0x8c000003_u32 as c_int, "MPI_SHORT_INT"),
    (0x8c000004_u32 as c_int, "MPI_LONG_DOUBLE_INT"),
];

/// A datatype as a call uses it.
#[derive(Debug, Clone)]
pub enum Ty {
    /// A builtin: `size` contiguous bytes per element.
    Basic {
        /// The handle.
        handle: c_int,
        /// Bytes per element.
        size: usize,
        /// The element type, where onecopy has it.
        primitive: Option<Primitive>,
    },
    /// A layout.
    Laid(Datatype),
}

impl Ty {
    /// Bytes of data per element.
    pub fn size(&self) -> usize {
        match self {
            Ty::Basic { size, .. } => *size,
            Ty::Laid(d) => d.size(),
        }
    }

    /// The element type, if every element is one primitive type.
    pub fn primitive(&self) -> Option<Primitive> {
        match self {
            Ty::Basic { primitive, .. } => *primitive,
            Ty::Laid(d) => d.homogeneous(),
        }
    }

    /// The datatype as onecopy's.
    pub fn datatype(&self) -> Datatype {
        match self {
            Ty::Basic {
                primitive: Some(p), ..
            } => Datatype::primitive(*p),
            Ty::Basic { size, .. } => UserDatatype::contiguous(*size, &Datatype::bytes())
                .map(Datatype::from)
                .unwrap_or_else(|_| Datatype::bytes()),
            Ty::Laid(d) => d.clone(),
        }
    }

    /// Lower bound and extent.
    pub fn extent(&self) -> (isize, isize) {
        match self {
            Ty::Basic { size, .. } => (0, *size as isize),
            Ty::Laid(d) => (d.lower_bound(), d.extent()),
        }
    }
}

fn pair(handle: c_int) -> Option<Datatype> {
    let int = Datatype::primitive(Primitive::I32);
    let (value, offset): (Datatype, isize) = match handle as u32 {
        0x8c000000 => (Datatype::primitive(Primitive::F32), 4),
        0x8c000001 => (Datatype::primitive(Primitive::F64), 8),
        0x8c000002 => (Datatype::primitive(Primitive::I64), 8),
        0x8c000003 => (Datatype::primitive(Primitive::I16), 2),
        0x8c000004 => (
            UserDatatype::contiguous(16, &Datatype::bytes())
                .ok()?
                .into(),
            16,
        ),
        _ => return None,
    };
    let extent = match handle as u32 {
        0x8c000003 => 8,
        0x8c000000 => 8,
        0x8c000004 => 32,
        _ => 16,
    };
    let s = UserDatatype::structured(&[1, 1], &[0, offset], &[value, int]).ok()?;
    UserDatatype::resized(&s, 0, extent)
        .ok()
        .map(Datatype::from)
}

/// The datatype behind `handle`; derived ones must be committed if `for_data`.
pub fn resolve(s: &state::State, handle: c_int, for_data: bool) -> Result<Ty> {
    if let Some(t) = predefined(handle) {
        return t;
    }
    if handle == MPI_DATATYPE_NULL {
        return Err(Error::new(class::TYPE, "the datatype is MPI_DATATYPE_NULL"));
    }
    let d = handles::direct_index(Object::Datatype, handle)
        .and_then(|i| s.types.get(i))
        .ok_or_else(|| {
            Error::new(
                class::TYPE,
                format!(
                    "{handle:#x} is not a datatype (freed, another kind of handle, or garbage)"
                ),
            )
        })?;
    if for_data && !d.committed {
        return Err(Error::new(
            class::TYPE,
            "the datatype is not committed (MPI_Type_commit)",
        ));
    }
    Ok(Ty::Laid(d.datatype.clone()))
}

/// A predefined datatype (builtin or pair) without the state: `None` if `handle` is neither.
fn predefined(handle: c_int) -> Option<Result<Ty>> {
    if handles::is_builtin(Object::Datatype, handle) {
        // MPICH's low byte is an index, unique among the builtins.
        type ByIndex = [Option<(c_int, Option<Primitive>)>; 256];
        static BY_INDEX: std::sync::OnceLock<ByIndex> = std::sync::OnceLock::new();
        let table = BY_INDEX.get_or_init(|| {
            let mut t = [None; 256];
            for &(h, p, _) in BUILTINS {
                t[(h & 0xff) as usize] = Some((h, p));
            }
            t
        });
        return Some(match table[(handle & 0xff) as usize] {
            Some((h, primitive)) if h == handle => Ok(Ty::Basic {
                handle,
                size: ((handle as u32 >> 8) & 0xff) as usize,
                primitive,
            }),
            _ => Err(Error::new(
                class::TYPE,
                format!("{handle:#x} is not a datatype onecopy knows"),
            )),
        });
    }
    if (0x8c00_0000_u32..=0x8c00_0004).contains(&(handle as u32)) {
        thread_local! {
            static PAIRS_MADE: std::cell::RefCell<Vec<Option<Datatype>>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let i = (handle as u32 - 0x8c00_0000) as usize;
        let d = PAIRS_MADE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() <= i {
                cache.resize(i + 1, None);
            }
            if cache[i].is_none() {
                cache[i] = pair(handle);
            }
            cache[i].clone()
        });
        return d.map(|d| Ok(Ty::Laid(d)));
    }
    None
}

/// [`resolve`] on the library's state (predefined types need none).
pub fn ty(handle: c_int) -> Result<Ty> {
    if let Some(t) = predefined(handle) {
        return t;
    }
    state::with(|s| resolve(s, handle, true))
}

/// Checks a count.
pub fn count(n: c_int) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::new(class::COUNT, format!("count {n} is negative")))
}

/// A send buffer: bytes, or a layout.
#[derive(Debug)]
pub enum Out<'a> {
    /// Contiguous bytes.
    Bytes(&'a [u8]),
    /// A layout over a buffer.
    Laid(View<'a>),
}

/// A receive buffer: bytes, or a layout.
#[derive(Debug)]
pub enum In<'a> {
    /// Contiguous bytes.
    Bytes(&'a mut [u8]),
    /// A layout over a buffer.
    Laid(MutView<'a>),
}

/// How a layout lies relative to the user's pointer: the datatype to view it with (shifted so
/// that its data starts at 0) and the offset of its first byte.
#[derive(Debug)]
pub struct Placed {
    /// The datatype, shifted.
    pub datatype: Datatype,
    /// Bytes from the user's pointer to the view's start.
    pub offset: isize,
    /// Bytes the view covers.
    pub len: usize,
}

/// Where `count` elements of `ty` at `ptr` lie: `Ok(None)` for contiguous bytes
/// (offset, length), else a [`Placed`] view.
pub fn place(
    ptr: *const c_void,
    count: usize,
    ty: &Ty,
) -> Result<std::result::Result<(isize, usize), Placed>> {
    let d = match ty {
        Ty::Basic { size, .. } => {
            let len = size
                .checked_mul(count)
                .ok_or_else(|| Error::new(class::COUNT, "count × size overflows"))?;
            return check_ptr(ptr, len).map(|()| Ok((0, len)));
        }
        Ty::Laid(d) => d,
    };
    if let Some((offset, len)) = d.contiguous_run(count) {
        return check_ptr(ptr, len).map(|()| Ok((offset, len)));
    }
    let Some((lb, ub)) = d.layout_bounds(count)? else {
        return Ok(Ok((0, 0)));
    };
    check_ptr(ptr, (ub - lb) as usize)?;
    let datatype = if lb == 0 {
        d.clone()
    } else {
        let shifted = UserDatatype::structured(&[1], &[-lb], std::slice::from_ref(d))?;
        UserDatatype::resized(&shifted, d.lower_bound() - lb, d.extent())?.into()
    };
    Ok(Err(Placed {
        datatype,
        offset: lb,
        len: (ub - lb) as usize,
    }))
}

fn check_ptr(ptr: *const c_void, len: usize) -> Result {
    if len > 0 && ptr.is_null() {
        return Err(Error::new(
            class::BUFFER,
            format!("the buffer is null but holds {len} bytes"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(Error::new(class::COUNT, "the buffer is larger than memory"));
    }
    Ok(())
}

/// The bytes at `ptr + offset`, `len` long.
///
/// # Safety
/// The program lends that memory for reading for `'a`.
pub unsafe fn bytes<'a>(ptr: *const c_void, offset: isize, len: usize) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the caller's contract; `check_ptr` refused null.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().wrapping_offset(offset), len) }
}

/// The bytes at `ptr + offset`, `len` long, for writing.
///
/// # Safety
/// The program lends that memory for writing for `'a`, to nothing else.
pub unsafe fn bytes_mut<'a>(ptr: *mut c_void, offset: isize, len: usize) -> &'a mut [u8] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: the caller's contract; `check_ptr` refused null.
    unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>().wrapping_offset(offset), len) }
}

/// The name of predefined datatype `handle`.
pub fn builtin_name(handle: c_int) -> Option<&'static str> {
    BUILTINS
        .iter()
        .map(|b| (b.0, b.2))
        .chain(PAIRS.iter().copied())
        .find(|b| b.0 == handle)
        .map(|b| b.1)
}

fn new_type(
    d: impl Into<Datatype>,
    combiner: c_int,
    ints: Vec<c_int>,
    aints: Vec<Aint>,
    olds: &[c_int],
    out: *mut c_int,
) -> Result {
    if out.is_null() {
        return Err(Error::new(class::ARG, "the datatype output is null"));
    }
    let d = d.into();
    let types = olds
        .iter()
        .map(|&h| type_ref(h))
        .collect::<Result<Vec<_>>>()?;
    let contents = Rc::new(Contents {
        combiner,
        ints,
        aints,
        types,
    });
    let index = state::with(|s| {
        s.types
            .insert(Derived {
                datatype: d,
                committed: false,
                name: String::new(),
                contents,
                attrs: Vec::new(),
            })
            .ok_or_else(|| Error::new(class::INTERN, "too many datatypes"))
    })?;
    // SAFETY: checked non-null; the program's output.
    unsafe { *out = handles::direct(Object::Datatype, index) };
    Ok(())
}

/// How `handle` is referred to by a type made from it.
fn type_ref(handle: c_int) -> Result<TypeRef> {
    if handles::is_builtin(Object::Datatype, handle) || pair(handle).is_some() {
        return Ok(TypeRef::Named(handle));
    }
    state::with(|s| {
        let d = handles::direct_index(Object::Datatype, handle)
            .and_then(|i| s.types.get(i))
            .ok_or_else(|| Error::new(class::TYPE, format!("{handle:#x} is not a datatype")))?;
        Ok(TypeRef::Derived(d.datatype.clone(), d.contents.clone()))
    })
}

fn old(handle: c_int) -> Result<Datatype> {
    state::with(|s| resolve(s, handle, false)).map(|t| t.datatype())
}

/// `n` values from the C array `p`.
///
/// # Safety
/// `p` holds `n` values, or `n` is 0.
unsafe fn array<'a, T>(p: *const T, n: usize) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::new(class::ARG, "an array argument is null"));
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

fn lengths(v: &[c_int]) -> Result<Vec<usize>> {
    v.iter().map(|&n| count(n)).collect()
}

fn write_out<T>(p: *mut T, v: T) -> Result {
    if p.is_null() {
        return Err(Error::new(class::ARG, "an output argument is null"));
    }
    // SAFETY: non-null; the program's output.
    unsafe { p.write(v) };
    Ok(())
}

mpi_export! {
    /// `MPI_Type_size`.
    fn MPI_Type_size / PMPI_Type_size(datatype: c_int, size: *mut c_int) -> c_int {
        call("MPI_Type_size", None, || {
            let t = state::with(|s| resolve(s, datatype, false))?;
            let n = c_int::try_from(t.size()).map_err(|_| Error::new(class::SIZE, "the size does not fit an int"))?;
            write_out(size, n)
        })
    }

    /// `MPI_Type_size_x`.
    fn MPI_Type_size_x / PMPI_Type_size_x(datatype: c_int, size: *mut Aint) -> c_int {
        call("MPI_Type_size_x", None, || {
            let t = state::with(|s| resolve(s, datatype, false))?;
            write_out(size, t.size() as Aint)
        })
    }

    /// `MPI_Type_get_extent`.
    fn MPI_Type_get_extent / PMPI_Type_get_extent(datatype: c_int, lb: *mut Aint, extent: *mut Aint) -> c_int {
        call("MPI_Type_get_extent", None, || {
            let (l, e) = state::with(|s| resolve(s, datatype, false))?.extent();
            write_out(lb, l)?;
            write_out(extent, e)
        })
    }

    /// `MPI_Type_get_extent_x`.
    fn MPI_Type_get_extent_x / PMPI_Type_get_extent_x(datatype: c_int, lb: *mut Aint, extent: *mut Aint) -> c_int {
        call("MPI_Type_get_extent_x", None, || {
            let (l, e) = state::with(|s| resolve(s, datatype, false))?.extent();
            write_out(lb, l)?;
            write_out(extent, e)
        })
    }

    /// `MPI_Type_get_true_extent`.
    fn MPI_Type_get_true_extent / PMPI_Type_get_true_extent(datatype: c_int, lb: *mut Aint, extent: *mut Aint) -> c_int {
        call("MPI_Type_get_true_extent", None, || {
            let d = old(datatype)?;
            write_out(lb, d.true_lower_bound())?;
            write_out(extent, d.true_extent())
        })
    }

    /// `MPI_Type_get_true_extent_x`.
    fn MPI_Type_get_true_extent_x / PMPI_Type_get_true_extent_x(datatype: c_int, lb: *mut Aint, extent: *mut Aint) -> c_int {
        call("MPI_Type_get_true_extent_x", None, || {
            let d = old(datatype)?;
            write_out(lb, d.true_lower_bound())?;
            write_out(extent, d.true_extent())
        })
    }

    /// `MPI_Type_contiguous`.
    fn MPI_Type_contiguous / PMPI_Type_contiguous(n: c_int, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_contiguous", None, || {
            new_type(UserDatatype::contiguous(count(n)?, &old(oldtype)?)?, combiner::CONTIGUOUS, vec![n], vec![], &[oldtype], newtype)
        })
    }

    /// `MPI_Type_vector`.
    fn MPI_Type_vector / PMPI_Type_vector(n: c_int, blocklength: c_int, stride: c_int, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_vector", None, || {
            new_type(UserDatatype::vector(count(n)?, count(blocklength)?, stride as isize, &old(oldtype)?)?, combiner::VECTOR, vec![n, blocklength, stride], vec![], &[oldtype], newtype)
        })
    }

    /// `MPI_Type_create_hvector`.
    fn MPI_Type_create_hvector / PMPI_Type_create_hvector(n: c_int, blocklength: c_int, stride: Aint, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_create_hvector", None, || {
            new_type(UserDatatype::heterogeneous_vector(count(n)?, count(blocklength)?, stride, &old(oldtype)?)?, combiner::HVECTOR, vec![n, blocklength], vec![stride], &[oldtype], newtype)
        })
    }

    /// `MPI_Type_indexed`.
    fn MPI_Type_indexed / PMPI_Type_indexed(n: c_int, blocklengths: *const c_int, displacements: *const c_int, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_indexed", None, || {
            let n = count(n)?;
            // SAFETY: the program passes arrays of `n`.
            let (b, di) = unsafe { (array(blocklengths, n)?, array(displacements, n)?) };
            let d: Vec<isize> = di.iter().map(|&x| x as isize).collect();
            new_type(UserDatatype::indexed(&lengths(b)?, &d, &old(oldtype)?)?, combiner::INDEXED, [&[n as c_int][..], b, di].concat(), vec![], &[oldtype], newtype)
        })
    }

    /// `MPI_Type_create_hindexed`.
    fn MPI_Type_create_hindexed / PMPI_Type_create_hindexed(n: c_int, blocklengths: *const c_int, displacements: *const Aint, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_create_hindexed", None, || {
            let n = count(n)?;
            // SAFETY: the program passes arrays of `n`.
            let (b, d) = unsafe { (array(blocklengths, n)?, array(displacements, n)?) };
            new_type(UserDatatype::heterogeneous_indexed(&lengths(b)?, d, &old(oldtype)?)?, combiner::HINDEXED, [&[n as c_int][..], b].concat(), d.to_vec(), &[oldtype], newtype)
        })
    }

    /// `MPI_Type_create_indexed_block`.
    fn MPI_Type_create_indexed_block / PMPI_Type_create_indexed_block(n: c_int, blocklength: c_int, displacements: *const c_int, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_create_indexed_block", None, || {
            let n = count(n)?;
            // SAFETY: the program passes an array of `n`.
            let di = unsafe { array(displacements, n)? };
            let d: Vec<isize> = di.iter().map(|&x| x as isize).collect();
            new_type(UserDatatype::indexed_block(count(blocklength)?, &d, &old(oldtype)?)?, combiner::INDEXED_BLOCK, [&[n as c_int, blocklength][..], di].concat(), vec![], &[oldtype], newtype)
        })
    }

    /// `MPI_Type_create_hindexed_block`.
    fn MPI_Type_create_hindexed_block / PMPI_Type_create_hindexed_block(n: c_int, blocklength: c_int, displacements: *const Aint, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_create_hindexed_block", None, || {
            let n = count(n)?;
            // SAFETY: the program passes an array of `n`.
            let d = unsafe { array(displacements, n)? };
            new_type(UserDatatype::heterogeneous_indexed_block(count(blocklength)?, d, &old(oldtype)?)?, combiner::HINDEXED_BLOCK, vec![n as c_int, blocklength], d.to_vec(), &[oldtype], newtype)
        })
    }

    /// `MPI_Type_create_struct`.
    fn MPI_Type_create_struct / PMPI_Type_create_struct(n: c_int, blocklengths: *const c_int, displacements: *const Aint, types: *const c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_create_struct", None, || {
            let n = count(n)?;
            // SAFETY: the program passes arrays of `n`.
            let (b, d, t) = unsafe { (array(blocklengths, n)?, array(displacements, n)?, array(types, n)?) };
            let tt = t.iter().map(|&h| old(h)).collect::<Result<Vec<_>>>()?;
            new_type(UserDatatype::structured(&lengths(b)?, d, &tt)?, combiner::STRUCT, [&[n as c_int][..], b].concat(), d.to_vec(), t, newtype)
        })
    }

    /// `MPI_Type_create_resized`.
    fn MPI_Type_create_resized / PMPI_Type_create_resized(oldtype: c_int, lb: Aint, extent: Aint, newtype: *mut c_int) -> c_int {
        call("MPI_Type_create_resized", None, || {
            new_type(UserDatatype::resized(&old(oldtype)?, lb, extent)?, combiner::RESIZED, vec![], vec![lb, extent], &[oldtype], newtype)
        })
    }

    /// `MPI_Type_dup`.
    fn MPI_Type_dup / PMPI_Type_dup(oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_dup", None, || {
            let committed = state::with(|s| Ok(handles::direct_index(Object::Datatype, oldtype).and_then(|i| s.types.get(i)).is_none_or(|d| d.committed)))?;
            new_type(UserDatatype::dup(&old(oldtype)?), combiner::DUP, vec![], vec![], &[oldtype], newtype)?;
            // SAFETY: `new_type` wrote it.
            let h = unsafe { *newtype };
            state::with(|s| {
                if let Some(d) = handles::direct_index(Object::Datatype, h).and_then(|i| s.types.get_mut(i)) {
                    d.committed = committed;
                }
                Ok(())
            })
        })
    }

    /// `MPI_Type_commit`.
    fn MPI_Type_commit / PMPI_Type_commit(datatype: *mut c_int) -> c_int {
        call("MPI_Type_commit", None, || {
            if datatype.is_null() {
                return Err(Error::new(class::ARG, "the datatype argument is null"));
            }
            // SAFETY: non-null.
            let h = unsafe { *datatype };
            state::with(|s| {
                if handles::is_builtin(Object::Datatype, h) || pair(h).is_some() {
                    return Ok(());
                }
                let d = handles::direct_index(Object::Datatype, h)
                    .and_then(|i| s.types.get_mut(i))
                    .ok_or_else(|| Error::new(class::TYPE, format!("{h:#x} is not a datatype")))?;
                d.committed = true;
                Ok(())
            })
        })
    }

    /// `MPI_Type_free`: the type goes; messages in flight with it are unaffected.
    fn MPI_Type_free / PMPI_Type_free(datatype: *mut c_int) -> c_int {
        call("MPI_Type_free", None, || {
            if datatype.is_null() {
                return Err(Error::new(class::ARG, "the datatype argument is null"));
            }
            // SAFETY: non-null.
            let h = unsafe { *datatype };
            if handles::is_builtin(Object::Datatype, h) || pair(h).is_some() {
                return Err(Error::new(class::TYPE, "a predefined datatype cannot be freed"));
            }
            let keys = type_attr_entry(h, |d| Ok(d.attrs.iter().map(|&(k, _)| k).collect::<Vec<_>>()))?;
            for k in keys.into_iter().rev() {
                delete_type_attr(h, k)?;
            }
            state::with(|s| {
                handles::direct_index(Object::Datatype, h)
                    .and_then(|i| s.types.remove(i))
                    .ok_or_else(|| Error::new(class::TYPE, format!("{h:#x} is not a datatype")))?;
                Ok(())
            })?;
            // SAFETY: non-null.
            unsafe { *datatype = MPI_DATATYPE_NULL };
            Ok(())
        })
    }

    /// `MPI_Type_get_name`: predefined types have their MPI names.
    fn MPI_Type_get_name / PMPI_Type_get_name(datatype: c_int, name: *mut c_char, len: *mut c_int) -> c_int {
        call("MPI_Type_get_name", None, || {
            let text = match builtin_name(datatype) {
                Some(n) => n.to_string(),
                None => state::with(|s| {
                    handles::direct_index(Object::Datatype, datatype)
                        .and_then(|i| s.types.get(i))
                        .map(|d| d.name.clone())
                        .ok_or_else(|| Error::new(class::TYPE, format!("{datatype:#x} is not a datatype")))
                })?,
            };
            // SAFETY: the program's buffer of MPI_MAX_OBJECT_NAME bytes.
            unsafe { write_string(&text, name, 128, len) }
        })
    }

    /// `MPI_Type_set_name`.
    fn MPI_Type_set_name / PMPI_Type_set_name(datatype: c_int, name: *const c_char) -> c_int {
        call("MPI_Type_set_name", None, || {
            if name.is_null() {
                return Err(Error::new(class::ARG, "the name is null"));
            }
            // SAFETY: a NUL-terminated string from the program.
            let text = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
            state::with(|s| {
                let d = handles::direct_index(Object::Datatype, datatype)
                    .and_then(|i| s.types.get_mut(i))
                    .ok_or_else(|| Error::new(class::TYPE, format!("{datatype:#x} is not a derived datatype")))?;
                d.name = text;
                Ok(())
            })
        })
    }

    /// `MPI_Get_address`.
    fn MPI_Get_address / PMPI_Get_address(location: *const c_void, address: *mut Aint) -> c_int {
        call("MPI_Get_address", None, || write_out(address, location as Aint))
    }

    /// `MPI_Address` (MPI-1's name).
    fn MPI_Address / PMPI_Address(location: *const c_void, address: *mut Aint) -> c_int {
        call("MPI_Address", None, || write_out(address, location as Aint))
    }

    /// `MPI_Pack_size`: the packed bytes `incount` elements take.
    fn MPI_Pack_size / PMPI_Pack_size(incount: c_int, datatype: c_int, _comm: c_int, size: *mut c_int) -> c_int {
        call("MPI_Pack_size", None, || {
            let t = state::with(|s| resolve(s, datatype, false))?;
            let n = t.size().checked_mul(count(incount)?).and_then(|n| c_int::try_from(n).ok())
                .ok_or_else(|| Error::new(class::COUNT, "the packed size does not fit an int"))?;
            write_out(size, n)
        })
    }

    /// `MPI_Pack`.
    fn MPI_Pack / PMPI_Pack(inbuf: *const c_void, incount: c_int, datatype: c_int, outbuf: *mut c_void, outsize: c_int, position: *mut c_int, _comm: c_int) -> c_int {
        call("MPI_Pack", None, || {
            let t = ty(datatype)?;
            let n = count(incount)?;
            if position.is_null() {
                return Err(Error::new(class::ARG, "position is null"));
            }
            // SAFETY: non-null.
            let pos = count(unsafe { *position })?;
            let room = count(outsize)?.checked_sub(pos).ok_or_else(|| Error::new(class::ARG, "position is past the end of the buffer"))?;
            let need = t.size() * n;
            if need > room {
                return Err(Error::new(class::TRUNCATE, format!("{need} bytes do not fit the {room} left")));
            }
            // SAFETY: the program lends `outsize` bytes at `outbuf`.
            let out = unsafe { bytes_mut(outbuf, pos as isize, need) };
            match place(inbuf, n, &t)? {
                // SAFETY: the program lends the elements for reading.
                Ok((offset, len)) => out.copy_from_slice(unsafe { bytes(inbuf, offset, len) }),
                Err(p) => {
                    // SAFETY: the program lends the elements for reading.
                    let buf = unsafe { bytes(inbuf, p.offset, p.len) };
                    View::with_count_and_datatype(buf, n, &p.datatype)?.pack_into(out)?;
                }
            }
            // SAFETY: non-null.
            unsafe { *position = (pos + need) as c_int };
            Ok(())
        })
    }

    /// `MPI_Unpack`.
    fn MPI_Unpack / PMPI_Unpack(inbuf: *const c_void, insize: c_int, position: *mut c_int, outbuf: *mut c_void, outcount: c_int, datatype: c_int, _comm: c_int) -> c_int {
        call("MPI_Unpack", None, || {
            let t = ty(datatype)?;
            let n = count(outcount)?;
            if position.is_null() {
                return Err(Error::new(class::ARG, "position is null"));
            }
            // SAFETY: non-null.
            let pos = count(unsafe { *position })?;
            let left = count(insize)?.checked_sub(pos).ok_or_else(|| Error::new(class::ARG, "position is past the end of the buffer"))?;
            let need = t.size() * n;
            if need > left {
                return Err(Error::new(class::TRUNCATE, format!("{need} bytes wanted, {left} left")));
            }
            // SAFETY: the program lends `insize` bytes at `inbuf`.
            let packed = unsafe { bytes(inbuf, pos as isize, need) };
            match place(outbuf, n, &t)? {
                // SAFETY: the program lends the elements for writing.
                Ok((offset, len)) => unsafe { bytes_mut(outbuf, offset, len) }.copy_from_slice(packed),
                Err(p) => {
                    // SAFETY: the program lends the elements for writing.
                    let buf = unsafe { bytes_mut(outbuf, p.offset, p.len) };
                    MutView::with_count_and_datatype(buf, n, &p.datatype)?.unpack_from(packed)?;
                }
            }
            // SAFETY: non-null.
            unsafe { *position = (pos + need) as c_int };
            Ok(())
        })
    }
}

/// `MPI_Aint_add`.
#[unsafe(no_mangle)]
pub extern "C" fn PMPI_Aint_add(base: Aint, disp: Aint) -> Aint {
    base.wrapping_add(disp)
}
/// `MPI_Aint_add` under its MPI name.
#[unsafe(no_mangle)]
pub extern "C" fn MPI_Aint_add(base: Aint, disp: Aint) -> Aint {
    PMPI_Aint_add(base, disp)
}
/// `MPI_Aint_diff`.
#[unsafe(no_mangle)]
pub extern "C" fn PMPI_Aint_diff(a: Aint, b: Aint) -> Aint {
    a.wrapping_sub(b)
}
/// `MPI_Aint_diff` under its MPI name.
#[unsafe(no_mangle)]
pub extern "C" fn MPI_Aint_diff(a: Aint, b: Aint) -> Aint {
    PMPI_Aint_diff(a, b)
}

fn envelope_counts(c: &Contents) -> (usize, usize, usize) {
    (c.ints.len(), c.aints.len(), c.types.len())
}

fn derived_contents(handle: c_int) -> Result<Option<Rc<Contents>>> {
    if handles::is_builtin(Object::Datatype, handle) || pair(handle).is_some() {
        return Ok(None);
    }
    state::with(|s| {
        handles::direct_index(Object::Datatype, handle)
            .and_then(|i| s.types.get(i))
            .map(|d| Some(d.contents.clone()))
            .ok_or_else(|| Error::new(class::TYPE, format!("{handle:#x} is not a datatype")))
    })
}

fn type_attr_entry<R>(handle: c_int, f: impl FnOnce(&mut Derived) -> Result<R>) -> Result<R> {
    state::with(|s| {
        let d = handles::direct_index(Object::Datatype, handle)
            .and_then(|i| s.types.get_mut(i))
            .ok_or_else(|| Error::new(class::TYPE, format!("{handle:#x} is not a derived datatype (attributes on predefined types are not kept)")))?;
        f(d)
    })
}

fn delete_type_attr(handle: c_int, key: c_int) -> Result {
    let found = type_attr_entry(handle, |d| {
        let at = d.attrs.iter().position(|&(k, _)| k == key);
        Ok(at.map(|at| d.attrs.remove(at).1))
    })?;
    let kv = state::with(|s| {
        Ok(handles::direct_index(Object::Keyval, key)
            .and_then(|i| s.keyvals.get(i))
            .copied())
    })?;
    if let (Some(v), Some(kv)) = (found, kv)
        && let Some(delete) = kv.delete
    {
        // SAFETY: the program's delete function, with the arguments MPI defines.
        let rc = unsafe { delete(handle, key, v as *mut c_void, kv.extra as *mut c_void) };
        if rc != 0 {
            return Err(Error::new(
                class::OTHER,
                format!("the delete function of attribute {key:#x} returned {rc}"),
            ));
        }
    }
    Ok(())
}

/// The keyval function types are those of communicators, with a datatype handle first.
type TypeCopyFn = crate::comm::CopyFn;
type TypeDeleteFn = crate::comm::DeleteFn;

mpi_export! {
    /// `MPI_Type_get_envelope`.
    fn MPI_Type_get_envelope / PMPI_Type_get_envelope(datatype: c_int, num_integers: *mut c_int, num_addresses: *mut c_int, num_datatypes: *mut c_int, combiner_out: *mut c_int) -> c_int {
        call("MPI_Type_get_envelope", None, || {
            let (ni, na, nt, c) = match derived_contents(datatype)? {
                None => {
                    state::with(|s| resolve(s, datatype, false))?;
                    (0, 0, 0, combiner::NAMED)
                }
                Some(c) => {
                    let (i, a, t) = envelope_counts(&c);
                    (i, a, t, c.combiner)
                }
            };
            write_out(num_integers, ni as c_int)?;
            write_out(num_addresses, na as c_int)?;
            write_out(num_datatypes, nt as c_int)?;
            write_out(combiner_out, c)
        })
    }

    /// `MPI_Type_get_contents`: derived old types come back as new handles (free them).
    fn MPI_Type_get_contents / PMPI_Type_get_contents(datatype: c_int, max_integers: c_int, max_addresses: c_int, max_datatypes: c_int, integers: *mut c_int, addresses: *mut Aint, datatypes: *mut c_int) -> c_int {
        call("MPI_Type_get_contents", None, || {
            let c = derived_contents(datatype)?.ok_or_else(|| Error::new(class::TYPE, "a predefined datatype has no contents"))?;
            let (ni, na, nt) = envelope_counts(&c);
            if (max_integers as i64) < ni as i64 || (max_addresses as i64) < na as i64 || (max_datatypes as i64) < nt as i64 {
                return Err(Error::new(class::ARG, "the arrays are smaller than MPI_Type_get_envelope said"));
            }
            for (i, &v) in c.ints.iter().enumerate() {
                // SAFETY: the program passes room for max_integers.
                unsafe { *integers.add(i) = v };
            }
            for (i, &v) in c.aints.iter().enumerate() {
                // SAFETY: the program passes room for max_addresses.
                unsafe { *addresses.add(i) = v };
            }
            for (i, t) in c.types.iter().enumerate() {
                let h = match t {
                    TypeRef::Named(h) => *h,
                    TypeRef::Derived(d, contents) => {
                        let index = state::with(|s| {
                            s.types
                                .insert(Derived { datatype: d.clone(), committed: true, name: String::new(), contents: contents.clone(), attrs: Vec::new() })
                                .ok_or_else(|| Error::new(class::INTERN, "too many datatypes"))
                        })?;
                        handles::direct(Object::Datatype, index)
                    }
                };
                // SAFETY: the program passes room for max_datatypes.
                unsafe { *datatypes.add(i) = h };
            }
            Ok(())
        })
    }

    /// `MPI_Type_create_subarray`.
    fn MPI_Type_create_subarray / PMPI_Type_create_subarray(ndims: c_int, sizes: *const c_int, subsizes: *const c_int, starts: *const c_int, order: c_int, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_create_subarray", None, || {
            let n = count(ndims)?;
            // SAFETY: the program passes arrays of `ndims`.
            let (a, b, c) = unsafe { (array(sizes, n)?, array(subsizes, n)?, array(starts, n)?) };
            let o = match order {
                56 => onecopy::datatype::Order::C,
                57 => onecopy::datatype::Order::Fortran,
                _ => return Err(Error::new(class::ARG, format!("order {order} is neither MPI_ORDER_C nor MPI_ORDER_FORTRAN"))),
            };
            let t = UserDatatype::subarray(&lengths(a)?, &lengths(b)?, &lengths(c)?, o, &old(oldtype)?)?;
            new_type(t, combiner::SUBARRAY, [&[ndims][..], a, b, c, &[order]].concat(), vec![], &[oldtype], newtype)
        })
    }

    /// `MPI_Type_extent` (MPI-1).
    fn MPI_Type_extent / PMPI_Type_extent(datatype: c_int, extent: *mut Aint) -> c_int {
        call("MPI_Type_extent", None, || write_out(extent, state::with(|s| resolve(s, datatype, false))?.extent().1))
    }

    /// `MPI_Type_lb` (MPI-1).
    fn MPI_Type_lb / PMPI_Type_lb(datatype: c_int, lb: *mut Aint) -> c_int {
        call("MPI_Type_lb", None, || write_out(lb, state::with(|s| resolve(s, datatype, false))?.extent().0))
    }

    /// `MPI_Type_ub` (MPI-1).
    fn MPI_Type_ub / PMPI_Type_ub(datatype: c_int, ub: *mut Aint) -> c_int {
        call("MPI_Type_ub", None, || {
            let (l, e) = state::with(|s| resolve(s, datatype, false))?.extent();
            write_out(ub, l + e)
        })
    }

    /// `MPI_Type_hvector` (MPI-1's `MPI_Type_create_hvector`).
    fn MPI_Type_hvector / PMPI_Type_hvector(n: c_int, blocklength: c_int, stride: Aint, oldtype: c_int, newtype: *mut c_int) -> c_int {
        // SAFETY: same arguments.
        unsafe { PMPI_Type_create_hvector(n, blocklength, stride, oldtype, newtype) }
    }

    /// `MPI_Type_hindexed` (MPI-1's `MPI_Type_create_hindexed`).
    fn MPI_Type_hindexed / PMPI_Type_hindexed(n: c_int, blocklengths: *const c_int, displacements: *const Aint, oldtype: c_int, newtype: *mut c_int) -> c_int {
        // SAFETY: same arguments.
        unsafe { PMPI_Type_create_hindexed(n, blocklengths, displacements, oldtype, newtype) }
    }

    /// `MPI_Type_struct` (MPI-1's `MPI_Type_create_struct`).
    fn MPI_Type_struct / PMPI_Type_struct(n: c_int, blocklengths: *const c_int, displacements: *const Aint, types: *const c_int, newtype: *mut c_int) -> c_int {
        // SAFETY: same arguments.
        unsafe { PMPI_Type_create_struct(n, blocklengths, displacements, types, newtype) }
    }

    /// `MPI_Type_match_size`: the predefined type of a class (`MPI_TYPECLASS_REAL` 1,
    /// `INTEGER` 2, `COMPLEX` 3) and size.
    fn MPI_Type_match_size / PMPI_Type_match_size(typeclass: c_int, size: c_int, datatype: *mut c_int) -> c_int {
        call("MPI_Type_match_size", None, || {
            let h: c_int = match (typeclass, size) {
                (1, 4) => 0x4c00040a,
                (1, 8) => 0x4c00080b,
                (1, 16) => 0x4c00100c,
                (2, 1) => 0x4c000137,
                (2, 2) => 0x4c000238,
                (2, 4) => 0x4c000439,
                (2, 8) => 0x4c00083a,
                (3, 8) => 0x4c000840,
                (3, 16) => 0x4c001041,
                (3, 32) => 0x4c002042,
                _ => return Err(Error::new(class::ARG, format!("no predefined type of class {typeclass} and size {size}"))),
            };
            write_out(datatype, h)
        })
    }

    /// `MPI_Type_create_keyval`.
    fn MPI_Type_create_keyval / PMPI_Type_create_keyval(copy: Option<TypeCopyFn>, delete: Option<TypeDeleteFn>, keyval: *mut c_int, extra: *mut c_void) -> c_int {
        // SAFETY: the same arguments as for communicators.
        unsafe { crate::comm::PMPI_Comm_create_keyval(copy, delete, keyval, extra) }
    }

    /// `MPI_Type_free_keyval`.
    fn MPI_Type_free_keyval / PMPI_Type_free_keyval(keyval: *mut c_int) -> c_int {
        // SAFETY: the same arguments as for communicators.
        unsafe { crate::comm::PMPI_Comm_free_keyval(keyval) }
    }

    /// `MPI_Type_set_attr`.
    fn MPI_Type_set_attr / PMPI_Type_set_attr(datatype: c_int, keyval: c_int, value: *mut c_void) -> c_int {
        call("MPI_Type_set_attr", None, || {
            let known = state::with(|s| Ok(handles::direct_index(Object::Keyval, keyval).is_some_and(|i| s.keyvals.get(i).is_some())))?;
            if !known {
                return Err(Error::new(class::KEYVAL, format!("{keyval:#x} is not an attribute key")));
            }
            delete_type_attr(datatype, keyval)?;
            type_attr_entry(datatype, |d| {
                d.attrs.push((keyval, value as usize));
                Ok(())
            })
        })
    }

    /// `MPI_Type_get_attr`.
    fn MPI_Type_get_attr / PMPI_Type_get_attr(datatype: c_int, keyval: c_int, value: *mut c_void, flag: *mut c_int) -> c_int {
        call("MPI_Type_get_attr", None, || {
            if value.is_null() || flag.is_null() {
                return Err(Error::new(class::ARG, "attribute_val or flag is null"));
            }
            let v = if handles::is_builtin(Object::Datatype, datatype) {
                None
            } else {
                type_attr_entry(datatype, |d| Ok(d.attrs.iter().find(|&&(k, _)| k == keyval).map(|&(_, v)| v)))?
            };
            // SAFETY: the program passes a `void*` to receive the value, and an int.
            unsafe {
                *flag = v.is_some() as c_int;
                if let Some(v) = v {
                    *value.cast::<usize>() = v;
                }
            }
            Ok(())
        })
    }

    /// `MPI_Type_delete_attr`.
    fn MPI_Type_delete_attr / PMPI_Type_delete_attr(datatype: c_int, keyval: c_int) -> c_int {
        call("MPI_Type_delete_attr", None, || delete_type_attr(datatype, keyval))
    }
}

/// `MPI_DISTRIBUTE_*` and `MPI_DISTRIBUTE_DFLT_DARG` (MPICH's values).
const DISTRIBUTE_BLOCK: c_int = 121;
const DISTRIBUTE_CYCLIC: c_int = 122;
const DISTRIBUTE_NONE: c_int = 123;
const DISTRIBUTE_DFLT_DARG: c_int = -49767;

/// The global indices of one dimension that process coordinate `coord` of `procs` holds, as
/// runs (start, length).
fn darray_runs(
    global: usize,
    distrib: c_int,
    darg: c_int,
    procs: usize,
    coord: usize,
) -> Result<Vec<(usize, usize)>> {
    match distrib {
        DISTRIBUTE_NONE => {
            if procs != 1 {
                return Err(Error::new(
                    class::ARG,
                    "MPI_DISTRIBUTE_NONE needs one process in its dimension",
                ));
            }
            Ok(vec![(0, global)])
        }
        DISTRIBUTE_BLOCK => {
            let block = if darg == DISTRIBUTE_DFLT_DARG {
                global.div_ceil(procs)
            } else {
                count(darg)?
            };
            if block * procs < global {
                return Err(Error::new(
                    class::ARG,
                    format!(
                        "blocks of {block} on {procs} processes do not cover {global} elements"
                    ),
                ));
            }
            let start = (coord * block).min(global);
            Ok(vec![(start, block.min(global - start))])
        }
        DISTRIBUTE_CYCLIC => {
            let block = if darg == DISTRIBUTE_DFLT_DARG {
                1
            } else {
                count(darg)?
            };
            if block == 0 {
                return Err(Error::new(class::ARG, "a cyclic block of 0 elements"));
            }
            let mut runs = Vec::new();
            let mut start = coord * block;
            while start < global {
                runs.push((start, block.min(global - start)));
                start += block * procs;
            }
            Ok(runs)
        }
        _ => Err(Error::new(
            class::ARG,
            format!("distribution {distrib} is not one of MPI_DISTRIBUTE_BLOCK, CYCLIC or NONE"),
        )),
    }
}

mpi_export! {
    /// `MPI_Type_create_darray`: the part of a block-, cyclic- or un-distributed global array
    /// that process `rank` of a row-major grid of `psizes` holds.
    fn MPI_Type_create_darray / PMPI_Type_create_darray(size: c_int, rank: c_int, ndims: c_int, gsizes: *const c_int, distribs: *const c_int, dargs: *const c_int, psizes: *const c_int, order: c_int, oldtype: c_int, newtype: *mut c_int) -> c_int {
        call("MPI_Type_create_darray", None, || {
            let n = count(ndims)?;
            // SAFETY: the program passes arrays of `ndims`.
            let (g, d, a, p) = unsafe { (array(gsizes, n)?, array(distribs, n)?, array(dargs, n)?, array(psizes, n)?) };
            let (gl, pl) = (lengths(g)?, lengths(p)?);
            if pl.iter().product::<usize>() != count(size)? || !(0..size).contains(&rank) {
                return Err(Error::new(class::ARG, format!("rank {rank} of {size} in a grid of {pl:?}")));
            }
            // Row-major process coordinates.
            let mut coords = vec![0; n];
            let mut r = rank as usize;
            for k in (0..n).rev() {
                coords[k] = r % pl[k];
                r /= pl[k];
            }
            let base = old(oldtype)?;
            let extent = base.extent();
            // Dimensions from the fastest-varying one.
            let dims: Vec<usize> = match order {
                56 => (0..n).rev().collect(),
                57 => (0..n).collect(),
                _ => return Err(Error::new(class::ARG, format!("order {order} is neither MPI_ORDER_C nor MPI_ORDER_FORTRAN"))),
            };
            let mut t = base.clone();
            let mut stride = extent;
            for &k in &dims {
                let runs = darray_runs(gl[k], d[k], a[k], pl[k], coords[k])?;
                let inner: Datatype = UserDatatype::resized(&t, 0, stride)?.into();
                let lens: Vec<usize> = runs.iter().map(|r| r.1).collect();
                let displs: Vec<isize> = runs.iter().map(|r| r.0 as isize * stride).collect();
                t = UserDatatype::heterogeneous_indexed(&lens, &displs, &inner)?.into();
                stride *= gl[k] as isize;
            }
            let whole = UserDatatype::resized(&t, 0, stride)?;
            new_type(whole, combiner::DARRAY, [&[size, rank, ndims][..], g, d, a, p, &[order]].concat(), vec![], &[oldtype], newtype)
        })
    }
}
