//! MPICH's handle values and constants (Debian 12's MPICH 4.0.2 ABI), and the tables behind
//! dynamic handles.
//!
//! A handle is an `int`: bits 31–30 are its kind (1 builtin, 2 direct), bits 29–26 its object
//! type, the rest an index. A builtin datatype carries its size in bytes in bits 15–8. Dynamic
//! objects made here are direct handles of their type, so a handle of the wrong type or a
//! garbage `int` is recognised before any table is read.

use std::ffi::c_int;

/// Kind bits of a builtin handle.
pub const BUILTIN: u32 = 0x4000_0000;
/// Kind bits of a direct (dynamic) handle.
pub const DIRECT: u32 = 0x8000_0000;
const KIND_MASK: u32 = 0xc000_0000;
const TYPE_MASK: u32 = 0x3c00_0000;

/// Object types, as bits 29–26 hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Object {
    /// `MPI_Comm`.
    Comm = 1 << 26,
    /// `MPI_Group`.
    Group = 2 << 26,
    /// `MPI_Datatype`.
    Datatype = 3 << 26,
    /// `MPI_Errhandler`.
    Errhandler = 5 << 26,
    /// `MPI_Op`.
    Op = 6 << 26,
    /// `MPI_Info`.
    Info = 7 << 26,
    /// Attribute keys.
    Keyval = 9 << 26,
    /// `MPI_Request` (and `MPI_Message`).
    Request = 0xb << 26,
}

/// The dynamic handle of `object` at `index`.
pub fn direct(object: Object, index: usize) -> c_int {
    (DIRECT | object as u32 | index as u32) as c_int
}

/// The table index of a dynamic handle of `object`, if `handle` is one.
pub fn direct_index(object: Object, handle: c_int) -> Option<usize> {
    let h = handle as u32;
    (h & KIND_MASK == DIRECT && h & TYPE_MASK == object as u32)
        .then_some((h & 0x03ff_ffff) as usize)
}

/// Whether `handle` is a builtin of `object`.
pub fn is_builtin(object: Object, handle: c_int) -> bool {
    let h = handle as u32;
    h & KIND_MASK == BUILTIN && h & TYPE_MASK == object as u32
}

/// `MPI_SUCCESS`.
pub const MPI_SUCCESS: c_int = 0;
/// `MPI_COMM_WORLD`.
pub const MPI_COMM_WORLD: c_int = 0x4400_0000;
/// `MPI_COMM_SELF`.
pub const MPI_COMM_SELF: c_int = 0x4400_0001;
/// `MPI_COMM_NULL`.
pub const MPI_COMM_NULL: c_int = 0x0400_0000;
/// `MPI_GROUP_NULL`.
pub const MPI_GROUP_NULL: c_int = 0x0800_0000;
/// `MPI_GROUP_EMPTY`.
pub const MPI_GROUP_EMPTY: c_int = 0x4800_0000;
/// `MPI_DATATYPE_NULL`.
pub const MPI_DATATYPE_NULL: c_int = 0x0c00_0000;
/// `MPI_OP_NULL`.
pub const MPI_OP_NULL: c_int = 0x1800_0000;
/// `MPI_REQUEST_NULL`.
pub const MPI_REQUEST_NULL: c_int = 0x2c00_0000;
/// `MPI_ERRHANDLER_NULL`.
pub const MPI_ERRHANDLER_NULL: c_int = 0x1400_0000;
/// `MPI_ERRORS_ARE_FATAL`.
pub const MPI_ERRORS_ARE_FATAL: c_int = 0x5400_0000;
/// `MPI_ERRORS_RETURN`.
pub const MPI_ERRORS_RETURN: c_int = 0x5400_0001;
/// `MPI_ERRORS_ABORT`.
pub const MPI_ERRORS_ABORT: c_int = 0x5400_0003;
/// `MPI_INFO_NULL`.
pub const MPI_INFO_NULL: c_int = 0x1c00_0000;

/// `MPI_ANY_SOURCE`.
pub const MPI_ANY_SOURCE: c_int = -2;
/// `MPI_ANY_TAG`.
pub const MPI_ANY_TAG: c_int = -1;
/// `MPI_PROC_NULL`.
pub const MPI_PROC_NULL: c_int = -1;
/// `MPI_ROOT`.
pub const MPI_ROOT: c_int = -3;
/// `MPI_UNDEFINED`.
pub const MPI_UNDEFINED: c_int = -32766;
/// The largest tag (`MPI_TAG_UB`'s value).
pub const TAG_UB: c_int = i32::MAX;

/// `MPI_IN_PLACE`.
pub const MPI_IN_PLACE: *const std::ffi::c_void = usize::MAX as *const std::ffi::c_void;
/// `MPI_STATUS_IGNORE` and `MPI_STATUSES_IGNORE`.
pub const MPI_STATUS_IGNORE: usize = 1;

/// Predefined attribute keys.
pub mod keys {
    use std::ffi::c_int;
    /// `MPI_TAG_UB`.
    pub const TAG_UB: c_int = 0x6440_0001;
    /// `MPI_HOST`.
    pub const HOST: c_int = 0x6440_0003;
    /// `MPI_IO`.
    pub const IO: c_int = 0x6440_0005;
    /// `MPI_WTIME_IS_GLOBAL`.
    pub const WTIME_IS_GLOBAL: c_int = 0x6440_0007;
    /// `MPI_UNIVERSE_SIZE`.
    pub const UNIVERSE_SIZE: c_int = 0x6440_0009;
    /// `MPI_LASTUSEDCODE`.
    pub const LASTUSEDCODE: c_int = 0x6440_000b;
    /// `MPI_APPNUM`.
    pub const APPNUM: c_int = 0x6440_000d;
}

/// Thread levels.
pub mod thread {
    use std::ffi::c_int;
    /// `MPI_THREAD_SINGLE`.
    pub const SINGLE: c_int = 0;
    /// `MPI_THREAD_FUNNELED`.
    pub const FUNNELED: c_int = 1;
    /// `MPI_THREAD_SERIALIZED`.
    pub const SERIALIZED: c_int = 2;
    /// `MPI_THREAD_MULTIPLE`.
    pub const MULTIPLE: c_int = 3;
}

/// `MPI_Status`: five `int`s, the count in bytes split over the first two (the high word
/// shifted left by one, bit 0 the cancelled flag).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MpiStatus {
    /// The count's low 32 bits.
    pub count_lo: c_int,
    /// The count's high bits shifted left by one; bit 0 is the cancelled flag.
    pub count_hi_and_cancelled: c_int,
    /// `MPI_SOURCE`.
    pub source: c_int,
    /// `MPI_TAG`.
    pub tag: c_int,
    /// `MPI_ERROR`.
    pub error: c_int,
}

impl MpiStatus {
    /// A status with `source`, `tag` and `bytes`.
    pub fn new(source: c_int, tag: c_int, bytes: u64, cancelled: bool) -> MpiStatus {
        MpiStatus {
            count_lo: bytes as u32 as c_int,
            count_hi_and_cancelled: (((bytes >> 32) << 1) as c_int) | cancelled as c_int,
            source,
            tag,
            error: MPI_SUCCESS,
        }
    }

    /// The status of an operation with nothing to report (`MPI_PROC_NULL`, a null request).
    pub fn empty() -> MpiStatus {
        MpiStatus::new(MPI_ANY_SOURCE, MPI_ANY_TAG, 0, false)
    }

    /// The count in bytes.
    pub fn bytes(&self) -> u64 {
        (self.count_lo as u32 as u64) | ((self.count_hi_and_cancelled as u32 as u64 >> 1) << 32)
    }

    /// Whether the operation was cancelled.
    pub fn cancelled(&self) -> bool {
        self.count_hi_and_cancelled & 1 != 0
    }

    /// Writes `self` to `out` unless it is `MPI_STATUS_IGNORE` (or null).
    ///
    /// # Safety
    /// `out` is `MPI_STATUS_IGNORE`, null, or valid for a write.
    pub unsafe fn store(self, out: *mut MpiStatus) {
        if !out.is_null() && out as usize != MPI_STATUS_IGNORE {
            // SAFETY: the caller's contract.
            unsafe { out.write(self) }
        }
    }
}

/// A table of objects behind dynamic handles: freed slots are reused, and a handle whose slot
/// is empty is invalid.
#[derive(Debug)]
pub struct Table<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    /// The first index handed out: lower ones are kept for fixed handles.
    first: usize,
}

/// Dynamic handles reach at most this index (26 bits).
const MAX_INDEX: usize = 0x03ff_ffff;

impl<T> Table<T> {
    /// An empty table handing out indices from `first`.
    pub fn new(first: usize) -> Table<T> {
        Table {
            slots: (0..first).map(|_| None).collect(),
            free: Vec::new(),
            first,
        }
    }

    /// Stores `value`; its index, or `None` if the table is full.
    pub fn insert(&mut self, value: T) -> Option<usize> {
        if let Some(i) = self.free.pop() {
            self.slots[i] = Some(value);
            return Some(i);
        }
        if self.slots.len() > MAX_INDEX {
            return None;
        }
        self.slots.push(Some(value));
        Some(self.slots.len() - 1)
    }

    /// The object at `index`.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.slots.get(index)?.as_ref()
    }

    /// The object at `index`, mutably.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.slots.get_mut(index)?.as_mut()
    }

    /// Takes the object at `index` out, freeing its slot.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.slots.get_mut(index)?.take()?;
        if index >= self.first {
            self.free.push(index);
        }
        Some(value)
    }

    /// Puts `value` at a fixed index below `first`.
    pub fn set_fixed(&mut self, index: usize, value: T) {
        debug_assert!(index < self.first);
        self.slots[index] = Some(value);
    }

    /// How many objects the table holds.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_count_round_trips_every_width_and_the_cancel_bit() {
        for bytes in [0u64, 1, 0xffff_ffff, 0x1_0000_0000, (1 << 62) + 12345] {
            for cancelled in [false, true] {
                let s = MpiStatus::new(3, 7, bytes, cancelled);
                assert_eq!(s.bytes(), bytes);
                assert_eq!(s.cancelled(), cancelled);
            }
        }
        assert_eq!(std::mem::size_of::<MpiStatus>(), 20);
    }

    #[test]
    fn handles_of_one_kind_are_not_taken_for_another() {
        let comm = direct(Object::Comm, 5);
        assert_eq!(comm as u32, 0x8400_0005);
        assert_eq!(direct_index(Object::Comm, comm), Some(5));
        assert_eq!(direct_index(Object::Group, comm), None);
        assert_eq!(direct_index(Object::Comm, MPI_COMM_WORLD), None);
        assert!(is_builtin(Object::Comm, MPI_COMM_WORLD));
        assert!(!is_builtin(Object::Datatype, MPI_COMM_WORLD));
        assert_eq!(direct_index(Object::Comm, 12345), None);
    }

    #[test]
    fn a_freed_slot_is_empty_until_reused() {
        let mut t = Table::new(2);
        let a = t.insert("a").unwrap();
        assert_eq!(a, 2);
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(t.get(a), None);
        assert_eq!(t.remove(a), None);
        assert_eq!(t.insert("b"), Some(2));
    }
}
