//! The macro that exports a function under its `PMPI_` and `MPI_` names.

/// Defines `PMPI_X` with the body given and `MPI_X` calling it, both `extern "C"` and
/// unmangled.
macro_rules! mpi_export {
    ($(
        $(#[doc = $doc:literal])*
        fn $name:ident / $pname:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty $body:block
    )*) => {$(
        $(#[doc = $doc])*
        ///
        /// # Safety
        /// Every pointer is valid as the MPI standard requires of this function's arguments.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $pname($($arg: $ty),*) -> $ret $body

        #[doc = concat!("`", stringify!($pname), "` under its MPI name, for tools to interpose.")]
        ///
        /// # Safety
        /// As for the `PMPI_` name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the caller's contract is the same.
            unsafe { $pname($($arg),*) }
        }
    )*};
}

pub(crate) use mpi_export;
