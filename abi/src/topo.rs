//! Virtual topologies (Cartesian, graph, distributed graph), `MPI_Dims_create`, and the
//! neighbor collectives.
//!
//! A communicator with a topology keeps its description beside it and a duplicate for the
//! neighbor collectives' messages, so they never match the program's own.

use std::ffi::{c_int, c_void};
use std::rc::Rc;

use onecopy::SimpleCommunicator;
use onecopy::topology::Color;
use onecopy::traits::*;

use crate::comm::register;
use crate::error::{Error, Result, call, class};
use crate::export::mpi_export;
use crate::handles::{MPI_COMM_NULL, MPI_PROC_NULL, MPI_REQUEST_NULL, MPI_UNDEFINED};
use crate::p2p::{irecv, isend};
use crate::state::{self, State};
use crate::types;

/// `MPI_GRAPH`, `MPI_CART`, `MPI_DIST_GRAPH`.
const GRAPH: c_int = 1;
const CART: c_int = 2;
const DIST_GRAPH: c_int = 3;

/// A virtual topology.
#[derive(Debug)]
pub struct Topo {
    /// Its shape.
    pub shape: Shape,
    /// A duplicate of the communicator for neighbor collectives, as a handle.
    pub hidden: c_int,
}

/// The shapes of topology.
#[derive(Debug, Clone)]
pub enum Shape {
    /// A grid: extent and periodicity per dimension.
    Cart {
        /// Processes per dimension.
        dims: Vec<c_int>,
        /// Whether each dimension wraps around.
        periods: Vec<bool>,
    },
    /// A graph: MPI's `index` and `edges` arrays.
    Graph {
        /// Cumulative degrees.
        index: Vec<c_int>,
        /// Neighbors, concatenated.
        edges: Vec<c_int>,
    },
    /// A distributed graph: this rank's in and out neighbors, with weights.
    Dist {
        /// Ranks that send to this one.
        sources: Vec<c_int>,
        /// Their weights.
        source_weights: Vec<c_int>,
        /// Ranks this one sends to.
        destinations: Vec<c_int>,
        /// Their weights.
        destination_weights: Vec<c_int>,
        /// Whether weights were given.
        weighted: bool,
    },
}

impl Shape {
    /// Neighbors this rank receives from and sends to, in MPI's order.
    fn neighbors(&self, rank: c_int) -> (Vec<c_int>, Vec<c_int>) {
        match self {
            Shape::Cart { dims, periods } => {
                let mut n = Vec::new();
                for d in 0..dims.len() {
                    let (down, up) = cart_shift(dims, periods, rank, d, 1);
                    n.push(down);
                    n.push(up);
                }
                (n.clone(), n)
            }
            Shape::Graph { index, edges } => {
                let r = rank as usize;
                let start = if r == 0 { 0 } else { index[r - 1] as usize };
                let n = edges[start..index[r] as usize].to_vec();
                (n.clone(), n)
            }
            Shape::Dist {
                sources,
                destinations,
                ..
            } => (sources.clone(), destinations.clone()),
        }
    }
}

fn coords_of(dims: &[c_int], mut rank: c_int) -> Vec<c_int> {
    let mut c = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        c[d] = rank % dims[d];
        rank /= dims[d];
    }
    c
}

fn rank_of(dims: &[c_int], periods: &[bool], coords: &[c_int]) -> Option<c_int> {
    let mut r = 0;
    for d in 0..dims.len() {
        let mut c = coords[d];
        if periods[d] {
            c = c.rem_euclid(dims[d]);
        } else if c < 0 || c >= dims[d] {
            return None;
        }
        r = r * dims[d] + c;
    }
    Some(r)
}

fn cart_shift(
    dims: &[c_int],
    periods: &[bool],
    rank: c_int,
    dim: usize,
    disp: c_int,
) -> (c_int, c_int) {
    let me = coords_of(dims, rank);
    let at = |delta: c_int| {
        let mut c = me.clone();
        c[dim] += delta;
        rank_of(dims, periods, &c).unwrap_or(MPI_PROC_NULL)
    };
    (at(-disp), at(disp))
}

fn array<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::new(class::ARG, format!("the {what} array is null")));
    }
    // SAFETY: the program passes `n` values.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

fn out_array<T: Copy>(p: *mut T, values: &[T], room: usize, what: &str) -> Result {
    if values.is_empty() || room == 0 {
        return Ok(());
    }
    if p.is_null() {
        return Err(Error::new(class::ARG, format!("the {what} array is null")));
    }
    for (i, v) in values.iter().take(room).enumerate() {
        // SAFETY: the program passes room for `room` values.
        unsafe { *p.add(i) = *v };
    }
    Ok(())
}

fn out<T>(p: *mut T, v: T) -> Result {
    if p.is_null() {
        return Err(Error::new(class::ARG, "an output argument is null"));
    }
    // SAFETY: non-null; the program's output.
    unsafe { p.write(v) };
    Ok(())
}

fn topo_of(comm: c_int) -> Result<Rc<Topo>> {
    state::with(|s| {
        s.comm(comm)?
            .topo
            .clone()
            .ok_or_else(|| Error::new(class::TOPOLOGY, "the communicator has no topology"))
    })
}

/// A communicator of the first `size` ranks of `comm`, with `shape`; `MPI_COMM_NULL` for the rest.
fn with_topology(comm: c_int, size: c_int, shape: Shape, newcomm: *mut c_int) -> Result {
    let c = state::comm(comm)?;
    if c.test_inter() {
        return Err(Error::new(
            class::COMM,
            "topologies need an intracommunicator",
        ));
    }
    if size > c.size() {
        return Err(Error::new(
            class::ARG,
            format!(
                "the topology has {size} processes, the communicator {}",
                c.size()
            ),
        ));
    }
    let color = if c.rank() < size {
        Color::with_value(0)
    } else {
        Color::undefined()
    };
    let Some(new) = c.split_by_color_with_key(color, 0)? else {
        return out(newcomm, MPI_COMM_NULL);
    };
    install(new, comm, shape, newcomm)
}

fn install(new: SimpleCommunicator, parent: c_int, shape: Shape, newcomm: *mut c_int) -> Result {
    let hidden = register(new.duplicate()?, parent)?;
    state::with(|s| {
        let i = State::comm_index(hidden).expect("registered");
        let old = s.comms.get(i).expect("registered").errhandler;
        crate::error::release(s, old);
        let i = State::comm_index(hidden).expect("registered");
        s.comms.get_mut(i).expect("registered").errhandler = crate::handles::MPI_ERRORS_RETURN;
        Ok(())
    })?;
    let h = register(new, parent)?;
    state::with(|s| {
        let i = State::comm_index(h).expect("registered");
        s.comms.get_mut(i).expect("registered").topo = Some(Rc::new(Topo { shape, hidden }));
        Ok(())
    })?;
    out(newcomm, h)
}

fn dims_create(nnodes: c_int, dims: &mut [c_int]) -> Result {
    if nnodes < 1 {
        return Err(Error::new(
            class::ARG,
            format!("nnodes {nnodes} is not positive"),
        ));
    }
    let mut rest = nnodes;
    let mut free = 0;
    for &d in dims.iter() {
        if d < 0 {
            return Err(Error::new(
                class::DIMS,
                format!("dimension {d} is negative"),
            ));
        }
        if d > 0 {
            if rest % d != 0 {
                return Err(Error::new(
                    class::DIMS,
                    format!("{nnodes} is not divisible by the fixed dimensions"),
                ));
            }
            rest /= d;
        } else {
            free += 1;
        }
    }
    if free == 0 {
        return if rest == 1 {
            Ok(())
        } else {
            Err(Error::new(
                class::DIMS,
                "the fixed dimensions do not multiply to nnodes",
            ))
        };
    }
    // Prime factors, largest first, each to the currently smallest free dimension: as balanced
    // as MPI asks, in non-increasing order.
    let mut factors = Vec::new();
    let mut n = rest;
    let mut p = 2;
    while p * p <= n {
        while n % p == 0 {
            factors.push(p);
            n /= p;
        }
        p += 1;
    }
    if n > 1 {
        factors.push(n);
    }
    let mut free_dims = vec![1; free];
    for f in factors.into_iter().rev() {
        let smallest = (0..free)
            .min_by_key(|&i| free_dims[i])
            .expect("at least one");
        free_dims[smallest] *= f;
    }
    free_dims.sort_unstable_by(|a, b| b.cmp(a));
    let mut it = free_dims.into_iter();
    for d in dims.iter_mut().filter(|d| **d == 0) {
        *d = it.next().expect("one per free dimension");
    }
    Ok(())
}

/// Runs a neighbor exchange: sends block `i` of `send` to `dests[i]` and receives block `i`
/// of `recv` from `sources[i]`, on the topology's hidden communicator. On a grid the tag says
/// the direction, so that a neighbor met both ways (a periodic dimension of 2) gets each block
/// in its place: what goes up arrives as the block from below.
fn exchange(
    t: &Topo,
    sources: &[c_int],
    dests: &[c_int],
    send: &[(*const c_void, c_int, c_int)],
    recv: &[(*mut c_void, c_int, c_int)],
) -> Result {
    const TAG: c_int = 0x6e62;
    let cart = matches!(t.shape, Shape::Cart { .. });
    let send_tag = |i: usize| if cart { TAG + i as c_int } else { TAG };
    let recv_tag = |i: usize| if cart { TAG + (i ^ 1) as c_int } else { TAG };
    let mut reqs = Vec::new();
    let mut post = || -> Result {
        for (i, &src) in sources.iter().enumerate() {
            let (p, n, ty) = recv[i];
            let mut r = MPI_REQUEST_NULL;
            irecv(p, n, ty, src, recv_tag(i), t.hidden, &mut r)?;
            reqs.push(r);
        }
        for (i, &dst) in dests.iter().enumerate() {
            let (p, n, ty) = send[i];
            let mut r = MPI_REQUEST_NULL;
            isend(
                p,
                n,
                ty,
                dst,
                send_tag(i),
                t.hidden,
                onecopy::request::SendMode::Standard,
                &mut r,
            )?;
            reqs.push(r);
        }
        Ok(())
    };
    let posted = post();
    let mut statuses = vec![crate::handles::MpiStatus::default(); reqs.len()];
    // SAFETY: `reqs.len()` requests and statuses; the hidden communicator returns errors.
    let rc = unsafe {
        crate::p2p::PMPI_Waitall(
            reqs.len() as c_int,
            reqs.as_mut_ptr(),
            statuses.as_mut_ptr(),
        )
    };
    posted?;
    if rc != 0 {
        let first = statuses
            .iter()
            .map(|s| s.error)
            .find(|&e| e != 0)
            .unwrap_or(class::OTHER);
        return Err(Error::new(first, "a neighbor message failed"));
    }
    Ok(())
}

fn at(p: *const c_void, bytes: isize) -> *const c_void {
    p.cast::<u8>().wrapping_offset(bytes).cast()
}

fn extent(datatype: c_int) -> Result<isize> {
    Ok(types::ty(datatype)?.extent().1)
}

mpi_export! {
    /// `MPI_Dims_create`.
    fn MPI_Dims_create / PMPI_Dims_create(nnodes: c_int, ndims: c_int, dims: *mut c_int) -> c_int {
        call("MPI_Dims_create", None, || {
            let n = usize::try_from(ndims).map_err(|_| Error::new(class::DIMS, "ndims is negative"))?;
            if n > 0 && dims.is_null() {
                return Err(Error::new(class::ARG, "dims is null"));
            }
            let d = if n == 0 { &mut [][..] } else {
                // SAFETY: the program passes `ndims` ints.
                unsafe { std::slice::from_raw_parts_mut(dims, n) }
            };
            dims_create(nnodes, d)
        })
    }

    /// `MPI_Cart_create` (ranks keep their order; `reorder` is allowed to do nothing).
    fn MPI_Cart_create / PMPI_Cart_create(comm: c_int, ndims: c_int, dims: *const c_int, periods: *const c_int, _reorder: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Cart_create", Some(comm), || {
            let n = usize::try_from(ndims).map_err(|_| Error::new(class::DIMS, "ndims is negative"))?;
            let d = array(dims, n, "dims")?.to_vec();
            let p: Vec<bool> = array(periods, n, "periods")?.iter().map(|&x| x != 0).collect();
            if d.iter().any(|&x| x <= 0) {
                return Err(Error::new(class::DIMS, "every dimension must be positive"));
            }
            let size = d.iter().try_fold(1 as c_int, |a, &x| a.checked_mul(x)).ok_or_else(|| Error::new(class::DIMS, "the grid is too large"))?;
            with_topology(comm, size, Shape::Cart { dims: d, periods: p }, newcomm)
        })
    }

    /// `MPI_Cartdim_get`.
    fn MPI_Cartdim_get / PMPI_Cartdim_get(comm: c_int, ndims: *mut c_int) -> c_int {
        call("MPI_Cartdim_get", Some(comm), || match &topo_of(comm)?.shape {
            Shape::Cart { dims, .. } => out(ndims, dims.len() as c_int),
            _ => Err(Error::new(class::TOPOLOGY, "not a Cartesian communicator")),
        })
    }

    /// `MPI_Cart_get`.
    fn MPI_Cart_get / PMPI_Cart_get(comm: c_int, maxdims: c_int, dims: *mut c_int, periods: *mut c_int, coords: *mut c_int) -> c_int {
        call("MPI_Cart_get", Some(comm), || {
            let t = topo_of(comm)?;
            let Shape::Cart { dims: d, periods: p } = &t.shape else { return Err(Error::new(class::TOPOLOGY, "not a Cartesian communicator")) };
            let room = usize::try_from(maxdims).map_err(|_| Error::new(class::ARG, "maxdims is negative"))?;
            let me = state::comm(comm)?.rank();
            out_array(dims, d, room, "dims")?;
            out_array(periods, &p.iter().map(|&x| x as c_int).collect::<Vec<_>>(), room, "periods")?;
            out_array(coords, &coords_of(d, me), room, "coords")
        })
    }

    /// `MPI_Cart_rank`.
    fn MPI_Cart_rank / PMPI_Cart_rank(comm: c_int, coords: *const c_int, rank: *mut c_int) -> c_int {
        call("MPI_Cart_rank", Some(comm), || {
            let t = topo_of(comm)?;
            let Shape::Cart { dims, periods } = &t.shape else { return Err(Error::new(class::TOPOLOGY, "not a Cartesian communicator")) };
            let c = array(coords, dims.len(), "coords")?;
            let r = rank_of(dims, periods, c).ok_or_else(|| Error::new(class::ARG, "coordinates outside a non-periodic dimension"))?;
            out(rank, r)
        })
    }

    /// `MPI_Cart_coords`.
    fn MPI_Cart_coords / PMPI_Cart_coords(comm: c_int, rank: c_int, maxdims: c_int, coords: *mut c_int) -> c_int {
        call("MPI_Cart_coords", Some(comm), || {
            let t = topo_of(comm)?;
            let Shape::Cart { dims, .. } = &t.shape else { return Err(Error::new(class::TOPOLOGY, "not a Cartesian communicator")) };
            let size: c_int = dims.iter().product();
            if !(0..size).contains(&rank) {
                return Err(Error::new(class::RANK, format!("rank {rank} is not in the grid of {size}")));
            }
            let room = usize::try_from(maxdims).map_err(|_| Error::new(class::ARG, "maxdims is negative"))?;
            out_array(coords, &coords_of(dims, rank), room, "coords")
        })
    }

    /// `MPI_Cart_shift`.
    fn MPI_Cart_shift / PMPI_Cart_shift(comm: c_int, direction: c_int, disp: c_int, source: *mut c_int, dest: *mut c_int) -> c_int {
        call("MPI_Cart_shift", Some(comm), || {
            let t = topo_of(comm)?;
            let Shape::Cart { dims, periods } = &t.shape else { return Err(Error::new(class::TOPOLOGY, "not a Cartesian communicator")) };
            let d = usize::try_from(direction).ok().filter(|&d| d < dims.len()).ok_or_else(|| Error::new(class::ARG, format!("direction {direction} of {} dimensions", dims.len())))?;
            let me = state::comm(comm)?.rank();
            let (s, t) = cart_shift(dims, periods, me, d, disp);
            out(source, s)?;
            out(dest, t)
        })
    }

    /// `MPI_Cart_sub`.
    fn MPI_Cart_sub / PMPI_Cart_sub(comm: c_int, remain_dims: *const c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Cart_sub", Some(comm), || {
            let t = topo_of(comm)?;
            let Shape::Cart { dims, periods } = &t.shape else { return Err(Error::new(class::TOPOLOGY, "not a Cartesian communicator")) };
            let keep: Vec<bool> = array(remain_dims, dims.len(), "remain_dims")?.iter().map(|&x| x != 0).collect();
            let c = state::comm(comm)?;
            let me = coords_of(dims, c.rank());
            let (mut color, mut key) = (0, 0);
            for d in 0..dims.len() {
                if keep[d] {
                    key = key * dims[d] + me[d];
                } else {
                    color = color * dims[d] + me[d];
                }
            }
            let new = c.split_by_color_with_key(Color::with_value(color), key)?.expect("every rank has a color");
            let shape = Shape::Cart {
                dims: (0..dims.len()).filter(|&d| keep[d]).map(|d| dims[d]).collect(),
                periods: (0..dims.len()).filter(|&d| keep[d]).map(|d| periods[d]).collect(),
            };
            install(new, comm, shape, newcomm)
        })
    }

    /// `MPI_Cart_map`: the rank it would have in the grid (ranks keep their order).
    fn MPI_Cart_map / PMPI_Cart_map(comm: c_int, ndims: c_int, dims: *const c_int, _periods: *const c_int, newrank: *mut c_int) -> c_int {
        call("MPI_Cart_map", Some(comm), || {
            let n = usize::try_from(ndims).map_err(|_| Error::new(class::DIMS, "ndims is negative"))?;
            let size: c_int = array(dims, n, "dims")?.iter().product();
            let me = state::comm(comm)?.rank();
            out(newrank, if me < size { me } else { MPI_UNDEFINED })
        })
    }

    /// `MPI_Graph_create`.
    fn MPI_Graph_create / PMPI_Graph_create(comm: c_int, nnodes: c_int, index: *const c_int, edges: *const c_int, _reorder: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Graph_create", Some(comm), || {
            let n = usize::try_from(nnodes).map_err(|_| Error::new(class::ARG, "nnodes is negative"))?;
            let index = array(index, n, "index")?.to_vec();
            let total = index.last().copied().unwrap_or(0);
            let edges = array(edges, usize::try_from(total).map_err(|_| Error::new(class::ARG, "index is negative"))?, "edges")?.to_vec();
            if index.windows(2).any(|w| w[1] < w[0]) || edges.iter().any(|&e| !(0..nnodes).contains(&e)) {
                return Err(Error::new(class::ARG, "index must not decrease and edges must name nodes of the graph"));
            }
            with_topology(comm, nnodes, Shape::Graph { index, edges }, newcomm)
        })
    }

    /// `MPI_Graphdims_get`.
    fn MPI_Graphdims_get / PMPI_Graphdims_get(comm: c_int, nnodes: *mut c_int, nedges: *mut c_int) -> c_int {
        call("MPI_Graphdims_get", Some(comm), || match &topo_of(comm)?.shape {
            Shape::Graph { index, edges } => {
                out(nnodes, index.len() as c_int)?;
                out(nedges, edges.len() as c_int)
            }
            _ => Err(Error::new(class::TOPOLOGY, "not a graph communicator")),
        })
    }

    /// `MPI_Graph_get`.
    fn MPI_Graph_get / PMPI_Graph_get(comm: c_int, maxindex: c_int, maxedges: c_int, index: *mut c_int, edges: *mut c_int) -> c_int {
        call("MPI_Graph_get", Some(comm), || match &topo_of(comm)?.shape {
            Shape::Graph { index: i, edges: e } => {
                out_array(index, i, maxindex.max(0) as usize, "index")?;
                out_array(edges, e, maxedges.max(0) as usize, "edges")
            }
            _ => Err(Error::new(class::TOPOLOGY, "not a graph communicator")),
        })
    }

    /// `MPI_Graph_neighbors_count`.
    fn MPI_Graph_neighbors_count / PMPI_Graph_neighbors_count(comm: c_int, rank: c_int, nneighbors: *mut c_int) -> c_int {
        call("MPI_Graph_neighbors_count", Some(comm), || {
            let t = topo_of(comm)?;
            let Shape::Graph { index, .. } = &t.shape else { return Err(Error::new(class::TOPOLOGY, "not a graph communicator")) };
            if !(0..index.len() as c_int).contains(&rank) {
                return Err(Error::new(class::RANK, format!("rank {rank} is not a node")));
            }
            out(nneighbors, t.shape.neighbors(rank).1.len() as c_int)
        })
    }

    /// `MPI_Graph_neighbors`.
    fn MPI_Graph_neighbors / PMPI_Graph_neighbors(comm: c_int, rank: c_int, maxneighbors: c_int, neighbors: *mut c_int) -> c_int {
        call("MPI_Graph_neighbors", Some(comm), || {
            let t = topo_of(comm)?;
            let Shape::Graph { index, .. } = &t.shape else { return Err(Error::new(class::TOPOLOGY, "not a graph communicator")) };
            if !(0..index.len() as c_int).contains(&rank) {
                return Err(Error::new(class::RANK, format!("rank {rank} is not a node")));
            }
            out_array(neighbors, &t.shape.neighbors(rank).1, maxneighbors.max(0) as usize, "neighbors")
        })
    }

    /// `MPI_Graph_map`.
    fn MPI_Graph_map / PMPI_Graph_map(comm: c_int, nnodes: c_int, _index: *const c_int, _edges: *const c_int, newrank: *mut c_int) -> c_int {
        call("MPI_Graph_map", Some(comm), || {
            let me = state::comm(comm)?.rank();
            out(newrank, if me < nnodes { me } else { MPI_UNDEFINED })
        })
    }

    /// `MPI_Dist_graph_create_adjacent`.
    fn MPI_Dist_graph_create_adjacent / PMPI_Dist_graph_create_adjacent(comm: c_int, indegree: c_int, sources: *const c_int, sourceweights: *const c_int, outdegree: c_int, destinations: *const c_int, destweights: *const c_int, _info: c_int, _reorder: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Dist_graph_create_adjacent", Some(comm), || {
            let c = state::comm(comm)?;
            let (i, o) = (types::count(indegree)?, types::count(outdegree)?);
            let s = array(sources, i, "sources")?.to_vec();
            let d = array(destinations, o, "destinations")?.to_vec();
            if s.iter().chain(&d).any(|&r| !(0..c.size()).contains(&r)) {
                return Err(Error::new(class::RANK, "a neighbor is not a rank of the communicator"));
            }
            let weighted = !is_unweighted(sourceweights) && !is_unweighted(destweights);
            let sw = if weighted { array(sourceweights, i, "sourceweights")?.to_vec() } else { vec![1; i] };
            let dw = if weighted { array(destweights, o, "destweights")?.to_vec() } else { vec![1; o] };
            let new = c.duplicate()?;
            install(new, comm, Shape::Dist { sources: s, source_weights: sw, destinations: d, destination_weights: dw, weighted }, newcomm)
        })
    }

    /// `MPI_Dist_graph_create`: the edges every rank names are sent to their ends.
    fn MPI_Dist_graph_create / PMPI_Dist_graph_create(comm: c_int, n: c_int, sources: *const c_int, degrees: *const c_int, destinations: *const c_int, weights: *const c_int, _info: c_int, _reorder: c_int, newcomm: *mut c_int) -> c_int {
        call("MPI_Dist_graph_create", Some(comm), || {
            let c = state::comm(comm)?;
            let n = types::count(n)?;
            let src = array(sources, n, "sources")?;
            let deg = array(degrees, n, "degrees")?;
            let total: usize = deg.iter().map(|&d| types::count(d)).sum::<Result<usize>>()?;
            let dst = array(destinations, total, "destinations")?;
            let weighted = !is_unweighted(weights);
            let w = if weighted { array(weights, total, "weights")?.to_vec() } else { vec![1; total] };
            // Every edge (s, d, w) as three ints, to both s (an out edge) and d (an in edge).
            let size = c.size() as usize;
            let mut to: Vec<Vec<c_int>> = vec![Vec::new(); size];
            let mut k = 0;
            for (i, &s) in src.iter().enumerate() {
                for _ in 0..deg[i] {
                    let (d, wt) = (dst[k], w[k]);
                    k += 1;
                    if !(0..size as c_int).contains(&s) || !(0..size as c_int).contains(&d) {
                        return Err(Error::new(class::RANK, "an edge names a rank outside the communicator"));
                    }
                    to[s as usize].extend([s, d, wt]);
                    if d != s {
                        to[d as usize].extend([s, d, wt]);
                    }
                }
            }
            let send_counts: Vec<usize> = to.iter().map(Vec::len).collect();
            let mut recv_counts = vec![0usize; size];
            c.all_to_all_into(&send_counts[..], &mut recv_counts[..])?;
            let flat: Vec<c_int> = to.concat();
            let displs = |counts: &[usize]| counts.iter().scan(0, |a, &x| { let d = *a; *a += x; Some(d) }).collect::<Vec<_>>();
            let mut got = vec![0 as c_int; recv_counts.iter().sum()];
            c.all_to_all_varcount_into(&flat[..], &send_counts, &displs(&send_counts), &mut got[..], &recv_counts, &displs(&recv_counts))?;
            let me = c.rank();
            let (mut s_, mut sw, mut d_, mut dw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for e in got.chunks_exact(3) {
                if e[1] == me {
                    s_.push(e[0]);
                    sw.push(e[2]);
                }
                if e[0] == me {
                    d_.push(e[1]);
                    dw.push(e[2]);
                }
            }
            let new = c.duplicate()?;
            install(new, comm, Shape::Dist { sources: s_, source_weights: sw, destinations: d_, destination_weights: dw, weighted }, newcomm)
        })
    }

    /// `MPI_Dist_graph_neighbors_count`.
    fn MPI_Dist_graph_neighbors_count / PMPI_Dist_graph_neighbors_count(comm: c_int, indegree: *mut c_int, outdegree: *mut c_int, weighted: *mut c_int) -> c_int {
        call("MPI_Dist_graph_neighbors_count", Some(comm), || {
            let t = topo_of(comm)?;
            let me = state::comm(comm)?.rank();
            let (i, o) = t.shape.neighbors(me);
            out(indegree, i.len() as c_int)?;
            out(outdegree, o.len() as c_int)?;
            out(weighted, matches!(t.shape, Shape::Dist { weighted: true, .. }) as c_int)
        })
    }

    /// `MPI_Dist_graph_neighbors`.
    fn MPI_Dist_graph_neighbors / PMPI_Dist_graph_neighbors(comm: c_int, maxindegree: c_int, sources: *mut c_int, sourceweights: *mut c_int, maxoutdegree: c_int, destinations: *mut c_int, destweights: *mut c_int) -> c_int {
        call("MPI_Dist_graph_neighbors", Some(comm), || {
            let t = topo_of(comm)?;
            let me = state::comm(comm)?.rank();
            let (i, o) = t.shape.neighbors(me);
            let (mi, mo) = (maxindegree.max(0) as usize, maxoutdegree.max(0) as usize);
            out_array(sources, &i, mi, "sources")?;
            out_array(destinations, &o, mo, "destinations")?;
            if let Shape::Dist { source_weights, destination_weights, weighted: true, .. } = &t.shape {
                if !is_unweighted(sourceweights) {
                    out_array(sourceweights, source_weights, mi, "sourceweights")?;
                }
                if !is_unweighted(destweights) {
                    out_array(destweights, destination_weights, mo, "destweights")?;
                }
            }
            Ok(())
        })
    }

    /// `MPI_Topo_test`.
    fn MPI_Topo_test / PMPI_Topo_test(comm: c_int, status: *mut c_int) -> c_int {
        call("MPI_Topo_test", Some(comm), || {
            let t = state::with(|s| Ok(s.comm(comm)?.topo.clone()))?;
            out(status, match t.map(|t| t.shape.clone()) {
                None => MPI_UNDEFINED,
                Some(Shape::Cart { .. }) => CART,
                Some(Shape::Graph { .. }) => GRAPH,
                Some(Shape::Dist { .. }) => DIST_GRAPH,
            })
        })
    }

    /// `MPI_Neighbor_allgather`.
    fn MPI_Neighbor_allgather / PMPI_Neighbor_allgather(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, comm: c_int) -> c_int {
        call("MPI_Neighbor_allgather", Some(comm), || {
            let t = topo_of(comm)?;
            let (srcs, dsts) = t.shape.neighbors(state::comm(comm)?.rank());
            let re = extent(recvtype)? * recvcount as isize;
            let send: Vec<_> = dsts.iter().map(|_| (sendbuf, sendcount, sendtype)).collect();
            let recv: Vec<_> = (0..srcs.len()).map(|i| (at(recvbuf, re * i as isize).cast_mut(), recvcount, recvtype)).collect();
            exchange(&t, &srcs, &dsts, &send, &recv)
        })
    }

    /// `MPI_Neighbor_allgatherv`.
    fn MPI_Neighbor_allgatherv / PMPI_Neighbor_allgatherv(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcounts: *const c_int, displs: *const c_int, recvtype: c_int, comm: c_int) -> c_int {
        call("MPI_Neighbor_allgatherv", Some(comm), || {
            let t = topo_of(comm)?;
            let (srcs, dsts) = t.shape.neighbors(state::comm(comm)?.rank());
            let re = extent(recvtype)?;
            let (rc, rd) = (array(recvcounts, srcs.len(), "recvcounts")?, array(displs, srcs.len(), "displs")?);
            let send: Vec<_> = dsts.iter().map(|_| (sendbuf, sendcount, sendtype)).collect();
            let recv: Vec<_> = (0..srcs.len()).map(|i| (at(recvbuf, re * rd[i] as isize).cast_mut(), rc[i], recvtype)).collect();
            exchange(&t, &srcs, &dsts, &send, &recv)
        })
    }

    /// `MPI_Neighbor_alltoall`.
    fn MPI_Neighbor_alltoall / PMPI_Neighbor_alltoall(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, comm: c_int) -> c_int {
        call("MPI_Neighbor_alltoall", Some(comm), || {
            let t = topo_of(comm)?;
            let (srcs, dsts) = t.shape.neighbors(state::comm(comm)?.rank());
            let (se, re) = (extent(sendtype)? * sendcount as isize, extent(recvtype)? * recvcount as isize);
            let send: Vec<_> = (0..dsts.len()).map(|i| (at(sendbuf, se * i as isize), sendcount, sendtype)).collect();
            let recv: Vec<_> = (0..srcs.len()).map(|i| (at(recvbuf, re * i as isize).cast_mut(), recvcount, recvtype)).collect();
            exchange(&t, &srcs, &dsts, &send, &recv)
        })
    }

    /// `MPI_Neighbor_alltoallv`.
    fn MPI_Neighbor_alltoallv / PMPI_Neighbor_alltoallv(sendbuf: *const c_void, sendcounts: *const c_int, sdispls: *const c_int, sendtype: c_int, recvbuf: *mut c_void, recvcounts: *const c_int, rdispls: *const c_int, recvtype: c_int, comm: c_int) -> c_int {
        call("MPI_Neighbor_alltoallv", Some(comm), || {
            let t = topo_of(comm)?;
            let (srcs, dsts) = t.shape.neighbors(state::comm(comm)?.rank());
            let (se, re) = (extent(sendtype)?, extent(recvtype)?);
            let (sc, sd) = (array(sendcounts, dsts.len(), "sendcounts")?, array(sdispls, dsts.len(), "sdispls")?);
            let (rc, rd) = (array(recvcounts, srcs.len(), "recvcounts")?, array(rdispls, srcs.len(), "rdispls")?);
            let send: Vec<_> = (0..dsts.len()).map(|i| (at(sendbuf, se * sd[i] as isize), sc[i], sendtype)).collect();
            let recv: Vec<_> = (0..srcs.len()).map(|i| (at(recvbuf, re * rd[i] as isize).cast_mut(), rc[i], recvtype)).collect();
            exchange(&t, &srcs, &dsts, &send, &recv)
        })
    }

    /// `MPI_Neighbor_alltoallw` (displacements in bytes).
    fn MPI_Neighbor_alltoallw / PMPI_Neighbor_alltoallw(sendbuf: *const c_void, sendcounts: *const c_int, sdispls: *const isize, sendtypes: *const c_int, recvbuf: *mut c_void, recvcounts: *const c_int, rdispls: *const isize, recvtypes: *const c_int, comm: c_int) -> c_int {
        call("MPI_Neighbor_alltoallw", Some(comm), || {
            let t = topo_of(comm)?;
            let (srcs, dsts) = t.shape.neighbors(state::comm(comm)?.rank());
            let (sc, sd, st) = (array(sendcounts, dsts.len(), "sendcounts")?, array(sdispls, dsts.len(), "sdispls")?, array(sendtypes, dsts.len(), "sendtypes")?);
            let (rc, rd, rt) = (array(recvcounts, srcs.len(), "recvcounts")?, array(rdispls, srcs.len(), "rdispls")?, array(recvtypes, srcs.len(), "recvtypes")?);
            let send: Vec<_> = (0..dsts.len()).map(|i| (at(sendbuf, sd[i]), sc[i], st[i])).collect();
            let recv: Vec<_> = (0..srcs.len()).map(|i| (at(recvbuf, rd[i]).cast_mut(), rc[i], rt[i])).collect();
            exchange(&t, &srcs, &dsts, &send, &recv)
        })
    }
}

/// MPICH's `MPI_UNWEIGHTED` and `MPI_WEIGHTS_EMPTY`: addresses of two exported ints.
#[unsafe(no_mangle)]
pub static mut MPI_UNWEIGHTED: *const c_int = &raw const UNWEIGHTED_MARK;
/// See [`MPI_UNWEIGHTED`].
#[unsafe(no_mangle)]
pub static mut MPI_WEIGHTS_EMPTY: *const c_int = &raw const WEIGHTS_EMPTY_MARK;

static UNWEIGHTED_MARK: c_int = 0;
static WEIGHTS_EMPTY_MARK: c_int = 0;

fn is_unweighted(p: *const c_int) -> bool {
    p == &raw const UNWEIGHTED_MARK || p.is_null()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_are_balanced_and_non_increasing() {
        let mut d = [0, 0];
        dims_create(12, &mut d).unwrap();
        assert_eq!(d, [4, 3]);
        let mut d = [0, 3, 0];
        dims_create(24, &mut d).unwrap();
        assert_eq!(d, [4, 3, 2]);
        let mut d = [0, 0, 0];
        dims_create(7, &mut d).unwrap();
        assert_eq!(d, [7, 1, 1]);
        assert!(dims_create(10, &mut [3, 0]).is_err());
    }

    #[test]
    fn cart_shifts_wrap_only_periodic_dimensions() {
        let dims = [2, 3];
        assert_eq!(cart_shift(&dims, &[false, true], 0, 1, 1), (2, 1));
        assert_eq!(
            cart_shift(&dims, &[false, true], 0, 0, 1),
            (MPI_PROC_NULL, 3)
        );
        assert_eq!(coords_of(&dims, 5), vec![1, 2]);
    }
}
