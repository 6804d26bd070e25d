//! Collectives over derived datatypes: every non-reduction collective and its varcount form with
//! views on 1 to 5 ranks (strided and indexed layouts, different layouts on different ranks and
//! sides, blocks from 192 bytes to over 1 MiB) against serial references that also check the
//! gaps of receive layouts; all-to-all-w with a datatype per peer; reductions over a strided
//! column and a user struct type; and bad input that must be an error, never a hang.

mod common;

use common::{assert_all_ok, run_job, run_job_config, watchdog};

use bytemuck::{Pod, Zeroable};
use onecopy::World;
use onecopy::collective::{SystemOperation, TypedBlock, UserOperation};
use onecopy::comm::CommError;
use onecopy::config::Config;
use onecopy::datatype::{Datatype, Equivalence, MutView, UserDatatype, View};
use onecopy::traits::*;

const GAP: i32 = 0x7F7F_7F7F;

/// What each rank runs.
type Body = fn(&World) -> Result<(), String>;

/// Element layouts over `i32`: `per` ints of data in an extent of `ext` ints.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// One int.
    Contiguous,
    /// Two blocks of 3 ints at a stride of 5, extent 10.
    Vector,
    /// Blocks of 2, 1 and 3 ints at 0, 3 and 6, extent 10.
    Indexed,
    /// 16 ints, extent 32: pieces large enough to move by single copy where they lie.
    Wide,
}

const SHAPES: [Shape; 4] = [
    Shape::Contiguous,
    Shape::Vector,
    Shape::Indexed,
    Shape::Wide,
];

/// A shape's datatype and its sizes.
struct Lay {
    dt: Datatype,
    per: usize,
    ext: usize,
}

impl Shape {
    fn lay(self) -> Lay {
        let int = i32::equivalent_datatype();
        let resized = |t: UserDatatype, ints: isize| -> Datatype {
            UserDatatype::resized(&t, 0, ints * 4)
                .expect("resized")
                .into()
        };
        match self {
            Shape::Contiguous => Lay {
                dt: int,
                per: 1,
                ext: 1,
            },
            Shape::Vector => Lay {
                dt: resized(UserDatatype::vector(2, 3, 5, &int).expect("vector"), 10),
                per: 6,
                ext: 10,
            },
            Shape::Indexed => Lay {
                dt: resized(
                    UserDatatype::indexed(&[2, 1, 3], &[0, 3, 6], &int).expect("indexed"),
                    10,
                ),
                per: 6,
                ext: 10,
            },
            Shape::Wide => Lay {
                dt: resized(UserDatatype::contiguous(16, &int).expect("wide"), 32),
                per: 16,
                ext: 32,
            },
        }
    }
}

/// The shape rank `rank` uses on side `side` of case `case`: ranks differ, so contiguous and
/// laid-out ranks meet in one collective.
fn shape(case: usize, rank: usize, side: usize) -> Shape {
    SHAPES[(case + rank * 3 + side) % SHAPES.len()]
}

/// Ints of data per block (multiples of 48, which every shape divides): 192 B inline or
/// eager, 19 KB, 192 KB rendezvous, 1.1 MiB.
const UNITS: [usize; 4] = [48, 4800, 48_000, 288_000];

/// The value of int `k` of block `block` from rank `rank`.
fn val(rank: usize, block: usize, k: usize) -> i32 {
    ((rank * 1_000_003 + block * 7919 + k) as i32) ^ 0x1234
}

fn stream(rank: usize, block: usize, ints: usize) -> Vec<i32> {
    (0..ints).map(|k| val(rank, block, k)).collect()
}

/// A buffer of `elems` elements of `lay`, gaps `GAP`, with each `(first element, ints)` piece
/// unpacked at its element.
fn laid_out(lay: &Lay, elems: usize, pieces: &[(usize, Vec<i32>)]) -> Vec<i32> {
    let mut buf = vec![GAP; elems * lay.ext];
    for (first, data) in pieces {
        let count = data.len() / lay.per;
        let at = &mut buf[first * lay.ext..];
        lay.dt
            .unpack_from(
                bytemuck::cast_slice(data),
                bytemuck::cast_slice_mut(at),
                count,
            )
            .expect("unpack reference");
    }
    buf
}

fn err(what: &str) -> impl Fn(CommError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn same(what: &str, got: &[i32], want: &[i32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} ints, not {}", got.len(), want.len()));
    }
    match (0..got.len()).find(|&k| got[k] != want[k]) {
        Some(k) => Err(format!(
            "{what}: int {k} is {:#x}, not {:#x}",
            got[k], want[k]
        )),
        None => Ok(()),
    }
}

fn view<'a>(buf: &'a [i32], count: usize, lay: &'a Lay) -> Result<View<'a>, String> {
    View::with_count_and_datatype(buf, count, &lay.dt).map_err(|e| e.to_string())
}

fn view_mut<'a>(buf: &'a mut [i32], count: usize, lay: &'a Lay) -> Result<MutView<'a>, String> {
    MutView::with_count_and_datatype(buf, count, &lay.dt).map_err(|e| e.to_string())
}

/// Unit sizes for `n` ranks: the largest only up to 3 ranks (a 5-rank all-to-all of them
/// holds 10 MB a rank in a debug build).
fn units(n: usize) -> &'static [usize] {
    if n <= 3 { &UNITS } else { &UNITS[..3] }
}

fn broadcast(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for &u in units(n) {
        for case in 0..SHAPES.len() {
            let root = case % n;
            let what = format!("broadcast of {u} ints from {root}, case {case}");
            let lay = shape(case, r, 0).lay();
            let count = u / lay.per;
            let want = laid_out(&lay, count, &[(0, stream(root, 0, u))]);
            let mut buf = if r == root {
                want.clone()
            } else {
                vec![GAP; count * lay.ext]
            };
            let mut v = view_mut(&mut buf, count, &lay)?;
            world
                .process_at_rank(root as i32)
                .broadcast_into(&mut v)
                .map_err(err(&what))?;
            same(&what, &buf, &want)?;
        }
    }
    Ok(())
}

/// Block `i`'s ints in the varcount forms: 1, 2 or 3 units.
fn varying(u: usize, i: usize) -> usize {
    u * (1 + (i % 3))
}

/// Element displacements of blocks of `ints[i]` ints (in elements of `lay`), laid out in
/// reverse rank order with one element of gap between them; and the elements in all.
fn reverse_displs(lay: &Lay, ints: &[usize]) -> (Vec<usize>, Vec<usize>, usize) {
    let counts: Vec<usize> = ints.iter().map(|&k| k / lay.per).collect();
    let mut displs = vec![0; ints.len()];
    let mut at = 1;
    for i in (0..ints.len()).rev() {
        displs[i] = at;
        at += counts[i] + 1;
    }
    (counts, displs, at)
}

fn gather_scatter(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for &u in units(n) {
        for case in 0..SHAPES.len() {
            let root = (case + 1) % n;
            let peer = world.process_at_rank(root as i32);
            let mine = shape(case, r, 0).lay();
            let at_root = shape(case, root, 1).lay();
            // Fixed counts: every rank's `u` ints, in rank order.
            let what = format!("gather of {u} ints to {root}, case {case}");
            let send = laid_out(&mine, u / mine.per, &[(0, stream(r, 0, u))]);
            let sv = view(&send, u / mine.per, &mine)?;
            if r == root {
                let elems = n * u / at_root.per;
                let pieces: Vec<_> = (0..n)
                    .map(|i| (i * u / at_root.per, stream(i, 0, u)))
                    .collect();
                let want = laid_out(&at_root, elems, &pieces);
                let mut got = vec![GAP; elems * at_root.ext];
                let mut rv = view_mut(&mut got, elems, &at_root)?;
                peer.gather_into_root(&sv, &mut rv).map_err(err(&what))?;
                same(&what, &got, &want)?;
                // And back: block i of the gathered buffer goes to rank i.
                let what = format!("scatter of {u} ints from {root}, case {case}");
                let out = view(&got, elems, &at_root)?;
                let mut back = vec![GAP; send.len()];
                let mut bv = view_mut(&mut back, u / mine.per, &mine)?;
                peer.scatter_into_root(&out, &mut bv).map_err(err(&what))?;
                same(&what, &back, &send)?;
            } else {
                peer.gather_into(&sv).map_err(err(&what))?;
                let what = format!("scatter of {u} ints from {root}, case {case}");
                let mut back = vec![GAP; send.len()];
                let mut bv = view_mut(&mut back, u / mine.per, &mine)?;
                peer.scatter_into(&mut bv).map_err(err(&what))?;
                same(&what, &back, &send)?;
            }
            // Varying counts, blocks in reverse order with gaps.
            let what = format!("gatherv of {u}-int units to {root}, case {case}");
            let ints: Vec<usize> = (0..n).map(|i| varying(u, i)).collect();
            let k = ints[r];
            let send = laid_out(&mine, k / mine.per, &[(0, stream(r, 1, k))]);
            let sv = view(&send, k / mine.per, &mine)?;
            if r == root {
                let (counts, displs, elems) = reverse_displs(&at_root, &ints);
                let pieces: Vec<_> = (0..n).map(|i| (displs[i], stream(i, 1, ints[i]))).collect();
                let want = laid_out(&at_root, elems, &pieces);
                let mut got = vec![GAP; elems * at_root.ext];
                let mut rv = view_mut(&mut got, elems, &at_root)?;
                peer.gather_varcount_into_root(&sv, &mut rv, &counts, &displs)
                    .map_err(err(&what))?;
                same(&what, &got, &want)?;
                let what = format!("scatterv of {u}-int units from {root}, case {case}");
                let out = view(&got, elems, &at_root)?;
                let mut back = vec![GAP; send.len()];
                let mut bv = view_mut(&mut back, k / mine.per, &mine)?;
                peer.scatter_varcount_into_root(&out, &counts, &displs, &mut bv)
                    .map_err(err(&what))?;
                same(&what, &back, &send)?;
            } else {
                peer.gather_varcount_into(&sv).map_err(err(&what))?;
                let what = format!("scatterv of {u}-int units from {root}, case {case}");
                let mut back = vec![GAP; send.len()];
                let mut bv = view_mut(&mut back, k / mine.per, &mine)?;
                peer.scatter_varcount_into(&mut bv).map_err(err(&what))?;
                same(&what, &back, &send)?;
            }
        }
    }
    Ok(())
}

fn all_gather(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for &u in units(n) {
        for case in 0..SHAPES.len() {
            let (mine, into) = (shape(case, r, 0).lay(), shape(case, r, 1).lay());
            let what = format!("all_gather of {u} ints, case {case}");
            let send = laid_out(&mine, u / mine.per, &[(0, stream(r, 2, u))]);
            let sv = view(&send, u / mine.per, &mine)?;
            let elems = n * u / into.per;
            let pieces: Vec<_> = (0..n)
                .map(|i| (i * u / into.per, stream(i, 2, u)))
                .collect();
            let want = laid_out(&into, elems, &pieces);
            let mut got = vec![GAP; elems * into.ext];
            let mut rv = view_mut(&mut got, elems, &into)?;
            world.all_gather_into(&sv, &mut rv).map_err(err(&what))?;
            same(&what, &got, &want)?;

            let what = format!("all_gatherv of {u}-int units, case {case}");
            let ints: Vec<usize> = (0..n).map(|i| varying(u, i)).collect();
            let send = laid_out(&mine, ints[r] / mine.per, &[(0, stream(r, 3, ints[r]))]);
            let sv = view(&send, ints[r] / mine.per, &mine)?;
            let (counts, displs, elems) = reverse_displs(&into, &ints);
            let pieces: Vec<_> = (0..n).map(|i| (displs[i], stream(i, 3, ints[i]))).collect();
            let want = laid_out(&into, elems, &pieces);
            let mut got = vec![GAP; elems * into.ext];
            let mut rv = view_mut(&mut got, elems, &into)?;
            world
                .all_gather_varcount_into(&sv, &mut rv, &counts, &displs)
                .map_err(err(&what))?;
            same(&what, &got, &want)?;
        }
    }
    Ok(())
}

fn all_to_all(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for &u in units(n) {
        for case in 0..SHAPES.len() {
            let (mine, into) = (shape(case, r, 0).lay(), shape(case, r, 1).lay());
            // Block j of rank i's send is stream(i, 10 + j).
            let what = format!("all_to_all of {u} ints, case {case}");
            let out: Vec<_> = (0..n)
                .map(|j| (j * u / mine.per, stream(r, 10 + j, u)))
                .collect();
            let send = laid_out(&mine, n * u / mine.per, &out);
            let sv = view(&send, n * u / mine.per, &mine)?;
            let elems = n * u / into.per;
            let pieces: Vec<_> = (0..n)
                .map(|i| (i * u / into.per, stream(i, 10 + r, u)))
                .collect();
            let want = laid_out(&into, elems, &pieces);
            let mut got = vec![GAP; elems * into.ext];
            let mut rv = view_mut(&mut got, elems, &into)?;
            world.all_to_all_into(&sv, &mut rv).map_err(err(&what))?;
            same(&what, &got, &want)?;

            // Varying: rank i sends varying(u, i + j) ints to rank j.
            let what = format!("all_to_allv of {u}-int units, case {case}");
            let sent: Vec<usize> = (0..n).map(|j| varying(u, r + j)).collect();
            let (scounts, sdispls, selems) = reverse_displs(&mine, &sent);
            let out: Vec<_> = (0..n)
                .map(|j| (sdispls[j], stream(r, 20 + j, sent[j])))
                .collect();
            let send = laid_out(&mine, selems, &out);
            let sv = view(&send, selems, &mine)?;
            let taken: Vec<usize> = (0..n).map(|i| varying(u, i + r)).collect();
            let (rcounts, rdispls, relems) = reverse_displs(&into, &taken);
            let pieces: Vec<_> = (0..n)
                .map(|i| (rdispls[i], stream(i, 20 + r, taken[i])))
                .collect();
            let want = laid_out(&into, relems, &pieces);
            let mut got = vec![GAP; relems * into.ext];
            let mut rv = view_mut(&mut got, relems, &into)?;
            world
                .all_to_all_varcount_into(&sv, &scounts, &sdispls, &mut rv, &rcounts, &rdispls)
                .map_err(err(&what))?;
            same(&what, &got, &want)?;
        }
    }
    Ok(())
}

/// Each pair's all-to-all-w block: rank `i` sends `ints(i, j)` ints to rank `j` (0 for some
/// pairs) in shape `(i + j) % 4`, which `j` receives in shape `(i + j + 1) % 4`.
fn w_ints(i: usize, j: usize) -> usize {
    48 * ((i + 2 * j) % 3) * if (i + j).is_multiple_of(2) { 1 } else { 100 }
}

/// Byte displacements of blocks of `ints[k]` ints in shapes `lays[k]`, reverse order, with
/// 4 ints of gap; and the ints in all.
fn w_displs(lays: &[Lay], ints: &[usize]) -> (Vec<usize>, usize) {
    let mut displs = vec![0; ints.len()];
    let mut at = 4;
    for k in (0..ints.len()).rev() {
        displs[k] = at * 4;
        at += ints[k] / lays[k].per * lays[k].ext + 4;
    }
    (displs, at)
}

/// The all-to-all-w blocks of `ints[k]` ints in shapes `lays[k]` at byte `displs[k]`.
fn typed<'a>(lays: &'a [Lay], ints: &[usize], displs: &[usize]) -> Vec<TypedBlock<'a>> {
    (0..lays.len())
        .map(|k| TypedBlock::new(ints[k] / lays[k].per, displs[k], &lays[k].dt))
        .collect()
}

fn all_to_all_w(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let send_lays: Vec<Lay> = (0..n).map(|j| SHAPES[(r + j) % 4].lay()).collect();
    let recv_lays: Vec<Lay> = (0..n).map(|i| SHAPES[(i + r + 1) % 4].lay()).collect();
    let sent: Vec<usize> = (0..n).map(|j| w_ints(r, j)).collect();
    let taken: Vec<usize> = (0..n).map(|i| w_ints(i, r)).collect();
    let (sdispls, slen) = w_displs(&send_lays, &sent);
    let (rdispls, rlen) = w_displs(&recv_lays, &taken);
    // Fill a buffer of `len` ints with block k of `stream(of(k), 30 + to(k))` at byte `displs[k]`.
    let fill = |lays: &[Lay], ints: &[usize], displs: &[usize], len: usize, mine: bool| {
        let mut buf = vec![GAP; len];
        for k in 0..n {
            let (from, to) = if mine { (r, k) } else { (k, r) };
            let data = stream(from, 30 + to, ints[k]);
            let at = &mut buf[displs[k] / 4..];
            lays[k]
                .dt
                .unpack_from(
                    bytemuck::cast_slice(&data),
                    bytemuck::cast_slice_mut(at),
                    ints[k] / lays[k].per,
                )
                .expect("unpack reference");
        }
        buf
    };
    let send = fill(&send_lays, &sent, &sdispls, slen, true);
    let want = fill(&recv_lays, &taken, &rdispls, rlen, false);
    let sb = typed(&send_lays, &sent, &sdispls);
    let rb = typed(&recv_lays, &taken, &rdispls);
    let mut got = vec![GAP; rlen];
    world
        .all_to_all_w_into(&send, &sb, &mut got, &rb)
        .map_err(err("all_to_all_w"))?;
    same("all_to_all_w", &got, &want)?;
    // Raw bytes on the receive side work the same.
    let mut raw = vec![0x7Fu8; rlen * 4];
    world
        .all_to_all_w_into(&send, &sb, &mut raw, &rb)
        .map_err(err("all_to_all_w into bytes"))?;
    same("all_to_all_w into bytes", bytemuck::cast_slice(&raw), &want)
}

fn every_collective(world: &World) -> Result<(), String> {
    broadcast(world)?;
    gather_scatter(world)?;
    all_gather(world)?;
    all_to_all(world)?;
    all_to_all_w(world)
}

#[test]
fn views_through_every_collective_on_1_to_5_ranks() {
    let _dog = watchdog("views_through_every_collective_on_1_to_5_ranks", 600);
    for n in 1..=5 {
        assert_all_ok(&run_job(n, "auto", every_collective), &format!("{n} ranks"));
    }
    assert_all_ok(&run_job(3, "cma-read", every_collective), "cma-read");
    assert_all_ok(&run_job(4, "shm-copy", every_collective), "shm-copy");
    // Every layout above the eager size moves by single copy where it lies.
    let in_place = Config {
        layout_send_piece_bytes: 0,
        layout_recv_piece_bytes: 0,
        ..Config::default()
    };
    assert_all_ok(
        &run_job_config(3, "auto", in_place, every_collective),
        "layouts in place",
    );
}

fn alltoallw_zero_counts_intercommunicator(world: &World) -> Result<(), String> {
    // Split into two halves joined by an intercommunicator; each rank sends rank j of the other
    // group `j + 1` strided ints, and receives its own from each.
    let r = world.rank();
    let half = world
        .split_by_color(onecopy::topology::Color::with_value(r % 2))
        .map_err(err("split"))?
        .ok_or("no half")?;
    let inter = onecopy::topology::InterCommunicator::create(&half, 0, world, 1 - r % 2, 7)
        .map_err(err("intercomm"))?;
    let (remote, me) = (inter.remote_size() as usize, half.rank() as usize);
    let lay = Shape::Vector.lay();
    let sent: Vec<usize> = (0..remote).map(|j| 6 * (j + me % 2)).collect();
    let taken: Vec<usize> = (0..remote).map(|i| 6 * (me + i % 2)).collect();
    let lays: Vec<Lay> = (0..remote).map(|_| Shape::Vector.lay()).collect();
    let (sd, slen) = w_displs(&lays, &sent);
    let (rd, rlen) = w_displs(&lays, &taken);
    let group = (r % 2) as usize;
    let mut send = vec![GAP; slen];
    for j in 0..remote {
        let data = stream(group * 100 + me, j, sent[j]);
        lay.dt
            .unpack_from(
                bytemuck::cast_slice(&data),
                bytemuck::cast_slice_mut(&mut send[sd[j] / 4..]),
                sent[j] / 6,
            )
            .expect("unpack");
    }
    let mut want = vec![GAP; rlen];
    for i in 0..remote {
        let data = stream((1 - group) * 100 + i, me, taken[i]);
        lay.dt
            .unpack_from(
                bytemuck::cast_slice(&data),
                bytemuck::cast_slice_mut(&mut want[rd[i] / 4..]),
                taken[i] / 6,
            )
            .expect("unpack");
    }
    let sb: Vec<_> = (0..remote)
        .map(|j| TypedBlock::new(sent[j] / 6, sd[j], &lay.dt))
        .collect();
    let rb: Vec<_> = (0..remote)
        .map(|i| TypedBlock::new(taken[i] / 6, rd[i], &lay.dt))
        .collect();
    let mut got = vec![GAP; rlen];
    inter
        .all_to_all_w_into(&send, &sb, &mut got, &rb)
        .map_err(err("inter all_to_all_w"))?;
    same("inter all_to_all_w", &got, &want)?;
    // And an all-gather of views across the groups.
    let mine = laid_out(&lay, 1, &[(0, stream(group * 100 + me, 0, 6))]);
    let mut all = vec![GAP; remote * 10];
    let mut av = view_mut(&mut all, remote, &lay)?;
    inter
        .all_gather_into(&view(&mine, 1, &lay)?, &mut av)
        .map_err(err("inter all_gather"))?;
    let pieces: Vec<_> = (0..remote)
        .map(|i| (i, stream((1 - group) * 100 + i, 0, 6)))
        .collect();
    same("inter all_gather", &all, &laid_out(&lay, remote, &pieces))
}

#[test]
fn all_to_all_w_on_intercommunicators() {
    let _dog = watchdog("all_to_all_w_on_intercommunicators", 120);
    for n in 2..=5 {
        assert_all_ok(
            &run_job(n, "auto", alltoallw_zero_counts_intercommunicator),
            &format!("{n} ranks"),
        );
    }
}

// ----- reductions -----

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Particle {
    id: i32,
    hits: i32,
    mass: f64,
}

onecopy::equivalence!(Particle {
    id: i32,
    hits: i32,
    mass: f64
});

/// Rank `r`'s particle `i`.
fn particle(r: usize, i: usize) -> Particle {
    Particle {
        id: (i * 10 + r) as i32,
        hits: (r + 1) as i32,
        mass: (r * 3 + i) as f64 * 0.5,
    }
}

/// The particles' combination: the larger id, hits added, the heavier mass.
fn combine(a: &Particle, b: &Particle) -> Particle {
    Particle {
        id: a.id.max(b.id),
        hits: a.hits + b.hits,
        mass: a.mass.max(b.mass),
    }
}

fn reductions(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let f64t = f64::equivalent_datatype();
    for rows in [1usize, 7, 3000, 70_000] {
        // Column 1 of a rows × 3 matrix of f64, into column 2 of a rows × 4 one.
        let column = |cols| UserDatatype::vector(rows, 1, cols, &f64t).expect("column");
        let (from, into) = (column(3), column(4));
        let value = |k: usize, i: usize| (k * 7 + i % 13) as f64 * 0.25;
        let mut matrix = vec![-1.0f64; rows * 3];
        for i in 0..rows {
            matrix[i * 3 + 1] = value(r, i);
        }
        let send =
            View::with_count_and_datatype(&matrix[1..], 1, &from).map_err(|e| e.to_string())?;
        let fold = |upto: usize| -> Vec<f64> {
            (0..rows)
                .map(|i| (0..upto).map(|k| value(k, i)).sum())
                .collect()
        };
        let expect = |sums: &[f64]| {
            let mut m = vec![-2.0f64; rows * 4];
            for i in 0..rows {
                m[i * 4 + 2] = sums[i];
            }
            m
        };
        let what = format!("all_reduce of a {rows}-row column");
        let mut out = vec![-2.0f64; rows * 4];
        let mut rv =
            MutView::with_count_and_datatype(&mut out[2..], 1, &into).map_err(|e| e.to_string())?;
        world
            .all_reduce_view_into::<f64, _>(&send, &mut rv, SystemOperation::sum())
            .map_err(err(&what))?;
        if out != expect(&fold(n)) {
            return Err(format!("{what} differs from the serial sum"));
        }
        let what = format!("scan of a {rows}-row column");
        let mut out = vec![-2.0f64; rows * 4];
        let mut rv =
            MutView::with_count_and_datatype(&mut out[2..], 1, &into).map_err(|e| e.to_string())?;
        world
            .scan_view_into::<f64, _>(&send, &mut rv, SystemOperation::sum())
            .map_err(err(&what))?;
        if out != expect(&fold(r + 1)) {
            return Err(format!("{what} differs from the serial prefix sum"));
        }
        let what = format!("exclusive scan of a {rows}-row column");
        let mut out = vec![-2.0f64; rows * 4];
        let mut rv =
            MutView::with_count_and_datatype(&mut out[2..], 1, &into).map_err(|e| e.to_string())?;
        world
            .exclusive_scan_view_into::<f64, _>(&send, &mut rv, SystemOperation::sum())
            .map_err(err(&what))?;
        let want = if r == 0 {
            vec![-2.0f64; rows * 4]
        } else {
            expect(&fold(r))
        };
        if out != want {
            return Err(format!("{what} differs from the serial prefix sum"));
        }
        let root = world.process_at_rank((n - 1) as i32);
        let what = format!("reduce of a {rows}-row column");
        if r == n - 1 {
            let mut out = vec![-2.0f64; rows * 4];
            let mut rv = MutView::with_count_and_datatype(&mut out[2..], 1, &into)
                .map_err(|e| e.to_string())?;
            root.reduce_view_into_root::<f64, _>(&send, &mut rv, SystemOperation::sum())
                .map_err(err(&what))?;
            if out != expect(&fold(n)) {
                return Err(format!("{what} differs from the serial sum"));
            }
        } else {
            root.reduce_view_into::<f64, _>(&send, SystemOperation::sum())
                .map_err(err(&what))?;
        }
    }
    // Reduce-scatter-block over a strided column of n × 5 rows: block r is rows 5r..5r+5.
    let rows = 5 * n;
    let from = UserDatatype::vector(rows, 1, 2, &f64t).expect("column");
    let mut matrix = vec![0.0f64; rows * 2];
    for i in 0..rows {
        matrix[i * 2] = (r * 100 + i) as f64;
    }
    let send = View::with_count_and_datatype(&matrix, 1, &from).map_err(|e| e.to_string())?;
    let into = UserDatatype::vector(5, 1, 3, &f64t).expect("column");
    let mut out = vec![-3.0f64; 15];
    let mut rv = MutView::with_count_and_datatype(&mut out, 1, &into).map_err(|e| e.to_string())?;
    world
        .reduce_scatter_block_view_into::<f64, _>(&send, &mut rv, SystemOperation::sum())
        .map_err(err("reduce_scatter_block"))?;
    for (i, x) in out.iter().enumerate() {
        let want = if i % 3 == 0 {
            (0..n).map(|k| (k * 100 + 5 * r + i / 3) as f64).sum()
        } else {
            -3.0
        };
        if *x != want {
            return Err(format!(
                "reduce_scatter_block: element {i} is {x}, not {want}"
            ));
        }
    }
    // A user struct type, every other particle, combined by a user operation.
    let pt = Particle::equivalent_datatype();
    let every_other = UserDatatype::vector(9, 1, 2, &pt).expect("every other");
    let mine: Vec<Particle> = (0..18).map(|i| particle(r, i / 2)).collect();
    let send = View::with_count_and_datatype(&mine, 1, &every_other).map_err(|e| e.to_string())?;
    let blank = Particle {
        id: -1,
        hits: -1,
        mass: -1.0,
    };
    let mut got = vec![blank; 18];
    let mut rv =
        MutView::with_count_and_datatype(&mut got, 1, &every_other).map_err(|e| e.to_string())?;
    let op = UserOperation::commutative(|a: &[Particle], b: &mut [Particle]| {
        for (x, y) in a.iter().zip(b.iter_mut()) {
            *y = combine(x, y);
        }
    });
    world
        .all_reduce_view_into(&send, &mut rv, op)
        .map_err(err("user struct all_reduce"))?;
    for (k, p) in got.iter().enumerate() {
        let want = if k % 2 == 0 {
            (1..n).fold(particle(0, k / 2), |acc, q| {
                combine(&acc, &particle(q, k / 2))
            })
        } else {
            blank
        };
        if *p != want {
            return Err(format!(
                "user struct all_reduce: particle {k} is {p:?}, not {want:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn reductions_over_views_on_1_to_5_ranks() {
    let _dog = watchdog("reductions_over_views_on_1_to_5_ranks", 300);
    for n in 1..=5 {
        assert_all_ok(&run_job(n, "auto", reductions), &format!("{n} ranks"));
    }
    assert_all_ok(&run_job(3, "shm-copy", reductions), "shm-copy");
}

// ----- bad input -----

fn invalid_argument(what: &str, r: Result<(), CommError>) -> Result<(), String> {
    match r {
        Err(CommError::InvalidArgument(_)) => Ok(()),
        other => Err(format!("{what} gave {other:?}, not InvalidArgument")),
    }
}

fn bad_local_arguments(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    let int = i32::equivalent_datatype();
    // Receive blocks that overlap each other: every peer's block at byte 0.
    let send = vec![1i32; 4 * n];
    let sb: Vec<_> = (0..n).map(|j| TypedBlock::new(4, 16 * j, &int)).collect();
    let mut recv = vec![0i32; 4 * n];
    let overlapping: Vec<_> = (0..n).map(|_| TypedBlock::new(4, 0, &int)).collect();
    if n > 1 {
        let r = world.all_to_all_w_into(&send, &sb, &mut recv, &overlapping);
        invalid_argument("overlapping all_to_all_w receive blocks", r)?;
    }
    // A receive block that overlaps itself: 2 ints at a stride of 1 int.
    let pair = UserDatatype::contiguous(2, &int).expect("pair");
    let stutter = UserDatatype::resized(&pair, 0, 4).expect("stutter");
    let mut selfish: Vec<_> = (0..n).map(|i| TypedBlock::new(0, 16 * i, &int)).collect();
    selfish[0] = TypedBlock::new(2, 0, &stutter);
    let zero: Vec<_> = (0..n).map(|j| TypedBlock::new(0, 16 * j, &int)).collect();
    let r = world.all_to_all_w_into(&send, &zero, &mut recv, &selfish);
    invalid_argument("a self-overlapping all_to_all_w receive block", r)?;
    // A block past the end of the buffer.
    let mut past = zero.clone();
    past[0] = TypedBlock::new(4, 16 * n - 8, &int);
    let r = world.all_to_all_w_into(&send, &past, &mut recv, &zero);
    invalid_argument("an all_to_all_w send block past the buffer", r)?;
    // A view whose count does not cover the displacements.
    let lay = Shape::Vector.lay();
    let buf = vec![0i32; 10];
    let sv = view(&buf, 1, &lay)?;
    let mut out = vec![GAP; 10 * n];
    let mut rv = view_mut(&mut out, n, &lay)?;
    let counts = vec![1; n];
    let displs: Vec<usize> = (0..n).map(|i| i + 1).collect();
    let r = world.all_gather_varcount_into(&sv, &mut rv, &counts, &displs);
    invalid_argument("all_gatherv displacements past the view's count", r)?;
    // A view that does not pack into whole elements of the operation's type.
    let odd = UserDatatype::contiguous(3, &u8::equivalent_datatype()).expect("odd");
    let bytes = [1u8; 3];
    let sv = View::with_count_and_datatype(&bytes, 1, &odd).map_err(|e| e.to_string())?;
    let mut back = [0u8; 3];
    let mut rv = MutView::with_count_and_datatype(&mut back, 1, &odd).map_err(|e| e.to_string())?;
    let r = world.all_reduce_view_into::<u16, _>(&sv, &mut rv, SystemOperation::sum());
    invalid_argument("a 3-byte view reduced as u16", r)?;
    if out.iter().any(|&x| x != GAP) {
        return Err("a refused collective wrote to its receive buffer".into());
    }
    world.barrier().map_err(err("barrier after"))
}

#[test]
fn bad_layouts_and_counts_are_errors_before_anything_moves() {
    let _dog = watchdog(
        "bad_layouts_and_counts_are_errors_before_anything_moves",
        120,
    );
    for n in [1, 2, 4] {
        assert_all_ok(
            &run_job(n, "auto", bad_local_arguments),
            &format!("{n} ranks"),
        );
    }
}

/// Rank 1 contributes more ints than the others expect from it, through a view.
fn mismatched_view_all_to_all(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    let lay = Shape::Vector.lay();
    let per = if world.rank() == 1 { 2 } else { 1 };
    let send = vec![5i32; n * per * 10];
    let sv = view(&send, n * per, &lay)?;
    let mut recv = vec![0i32; n * 6 * per];
    world
        .all_to_all_into(&sv, &mut recv)
        .map_err(|e| format!("ERROR {e}"))
}

fn mismatched_view_gather(world: &World) -> Result<(), String> {
    let lay = Shape::Indexed.lay();
    let elems = if world.rank() == 1 { 8000 } else { 4000 };
    let send = vec![5i32; elems * 10];
    let sv = view(&send, elems, &lay)?;
    let root = world.process_at_rank(0);
    let r = if world.rank() == 0 {
        let mut recv = vec![0i32; 4000 * 10 * world.size() as usize];
        let mut rv = view_mut(&mut recv, 4000 * world.size() as usize, &lay)?;
        root.gather_into_root(&sv, &mut rv)
    } else {
        root.gather_into(&sv)
    };
    r.map_err(|e| format!("ERROR {e}"))
}

fn mismatched_view_broadcast(world: &World) -> Result<(), String> {
    let lay = Shape::Wide.lay();
    let elems = if world.rank() == 1 { 5000 } else { 3000 };
    let mut buf = vec![5i32; elems * 32];
    let mut v = view_mut(&mut buf, elems, &lay)?;
    world
        .process_at_rank(0)
        .broadcast_into(&mut v)
        .map_err(|e| format!("ERROR {e}"))
}

fn mismatched_all_to_all_w(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    let lay = Shape::Vector.lay();
    let ints = if world.rank() == 1 { 12 } else { 6 };
    let send = vec![5i32; n * 20];
    let sb: Vec<_> = (0..n)
        .map(|j| TypedBlock::new(ints / 6, 80 * j, &lay.dt))
        .collect();
    let mut recv = vec![0i32; n * 20];
    let rb: Vec<_> = (0..n)
        .map(|i| TypedBlock::new(1, 80 * i, &lay.dt))
        .collect();
    world
        .all_to_all_w_into(&send, &sb, &mut recv, &rb)
        .map_err(|e| format!("ERROR {e}"))
}

#[test]
fn mismatched_sizes_between_ranks_are_errors_not_hangs() {
    let _dog = watchdog("mismatched_sizes_between_ranks_are_errors_not_hangs", 300);
    let cases: [(&str, Body); 4] = [
        ("all_to_all", mismatched_view_all_to_all),
        ("gather", mismatched_view_gather),
        ("broadcast", mismatched_view_broadcast),
        ("all_to_all_w", mismatched_all_to_all_w),
    ];
    for (name, body) in cases {
        for n in [2, 3] {
            for transport in ["auto", "shm-copy"] {
                let errors = run_job(n, transport, body);
                let described = errors
                    .iter()
                    .flatten()
                    .any(|e| e.contains("differ between ranks") || e.contains("does not fit"));
                assert!(
                    described,
                    "{name}, {n} ranks, {transport}: no rank reported the mismatch: {errors:?}"
                );
            }
        }
    }
}
