//! `libmpi.so.12`: onecopy's runtime behind MPICH's C ABI, so that a program built with Debian's
//! `mpicc.mpich` (or against onecopy's own `mpi.h`) runs on single copy unchanged.
//!
//! The ABI is MPICH 4.0's ([`handles`] has every value): handles are `int`s whose top bits say
//! their kind, `MPI_Status` is five `int`s with the count in bytes, `MPI_Aint` is 8 bytes.
//!
//! Every function is exported twice: `PMPI_X` is the implementation, and `MPI_X` calls it, so
//! that a profiling library preloaded in front (its `MPI_X` calling `PMPI_X`) sees each call of
//! the program once. The library never calls an exported name itself.
//!
//! The runtime is single-threaded ([`onecopy::SimpleCommunicator`] is not `Send`): the library
//! lives on the thread that called `MPI_Init`, and `MPI_Init_thread` provides
//! `MPI_THREAD_FUNNELED` at most. A call from another thread is an error, not a race.
//!
//! Where each part lives:
//! - [`handles`]: the ABI's constants, and the tables behind dynamic handles;
//! - [`error`]: error classes and codes, error strings, error handlers;
//! - [`state`]: the process's library state and its life (init, finalize);
//! - [`env`]: the environment functions (init, finalize, versions, time, abort);
//! - [`types`]: datatypes; [`p2p`]: point to point and requests; [`coll`]: collectives;
//!   [`icoll`]: nonblocking collectives;
//!   [`comm`]: communicators and groups; [`unsupported`]: every other function of MPI-3.1.

#![deny(missing_docs)]

mod export;

pub mod coll;
pub mod comm;
pub mod env;
pub mod error;
pub mod handles;
pub mod icoll;
pub mod p2p;
pub mod state;
pub mod topo;
pub mod types;
pub mod unsupported;
