//! Scans, reduce-scatter, the in-place forms, `reduce_local_into` and MINLOC/MAXLOC, end to
//! end on 1 to 8 forked ranks against serial references: integers exact, non-commutative
//! operations in rank order, floats bit for bit in the order each algorithm documents (and the
//! same on a second call), intercommunicator reduce-scatter, and bad arguments as errors.

mod common;

use onecopy::coll::reduce::{self, ReduceStep};
use onecopy::collective::{
    LocationOperation, LocationValue, SystemOperation, UserOperation, ValueIndex, reduce_local_into,
};
use onecopy::topology::{Color, InterCommunicator};
use onecopy::traits::*;
use onecopy::{CommError, World};

use common::{assert_all_ok, run_job};

type Body = fn(&World) -> Result<(), String>;

fn every_rank_count(body: Body, what: &str) {
    for n in 1..=8 {
        assert_all_ok(&run_job(n, "auto", body), &format!("{what}, {n} ranks"));
    }
}

fn err(what: &str, e: CommError) -> String {
    format!("{what}: {e}")
}

/// A wide value for element `i` of rank `rank`.
fn ival(rank: usize, i: usize) -> u64 {
    let x = (rank as u64 + 1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    x ^ (x >> 29)
}

/// A float that makes sums round: the order of additions shows in the bits.
fn fval(rank: usize, i: usize) -> f64 {
    ((ival(rank, i) % 100_000) as f64 / 7.0 - 5000.0) * 1.000_001_f64.powi((i % 50) as i32)
}

/// Affine maps x -> m·x + c (mod 2^32) packed as m << 32 | c, composed left then right.
fn compose(a: u64, b: u64) -> u64 {
    let (m1, c1) = ((a >> 32) as u32, a as u32);
    let (m2, c2) = ((b >> 32) as u32, b as u32);
    ((m1.wrapping_mul(m2) as u64) << 32) | m2.wrapping_mul(c1).wrapping_add(c2) as u64
}

fn affine() -> UserOperation<impl Fn(&[u64], &mut [u64]) + Copy> {
    UserOperation::non_commutative(|l: &[u64], r: &mut [u64]| {
        for (r, l) in r.iter_mut().zip(l) {
            *r = compose(*l, *r);
        }
    })
}

/// 2x2 integer matrices `[a, b, c, d]`, multiplied (wrapping): associative, not commutative.
type Matrix = [i64; 4];

fn mat_mul(l: Matrix, r: Matrix) -> Matrix {
    let m = |a: i64, b: i64, c: i64, d: i64| a.wrapping_mul(b).wrapping_add(c.wrapping_mul(d));
    [
        m(l[0], r[0], l[1], r[2]),
        m(l[0], r[1], l[1], r[3]),
        m(l[2], r[0], l[3], r[2]),
        m(l[2], r[1], l[3], r[3]),
    ]
}

fn matrix(rank: usize, i: usize) -> Matrix {
    let v = ival(rank, i);
    [
        1 + (v % 3) as i64,
        (v >> 8) as i64 % 5 - 2,
        (v >> 16) as i64 % 7 - 3,
        1 + (v >> 24) as i64 % 2,
    ]
}

fn mat_product() -> UserOperation<impl Fn(&[Matrix], &mut [Matrix]) + Copy> {
    UserOperation::non_commutative(|l: &[Matrix], r: &mut [Matrix]| {
        for (r, l) in r.iter_mut().zip(l) {
            *r = mat_mul(*l, *r);
        }
    })
}

const SENTINEL: i64 = 0x5A5A_5A5A;

/// Inclusive and exclusive scans of `make` with `op` on this rank, both forms, against the
/// serial left-to-right fold `apply` (exact: integer operations, any grouping).
fn check_scans<T, O>(
    world: &World,
    name: &str,
    op: O,
    apply: impl Fn(T, T) -> T,
    make: impl Fn(usize, usize) -> T,
    sentinel: T,
    sizes: &[usize],
) -> Result<(), String>
where
    T: bytemuck::Pod + PartialEq + std::fmt::Debug,
    O: onecopy::collective::Operation<T> + Copy,
{
    let r = world.rank() as usize;
    for &len in sizes {
        let send: Vec<T> = (0..len).map(|i| make(r, i)).collect();
        let inclusive: Vec<T> = (0..len)
            .map(|i| (1..=r).fold(make(0, i), |acc, k| apply(acc, make(k, i))))
            .collect();
        let exclusive: Vec<T> = if r == 0 {
            vec![sentinel; len]
        } else {
            (0..len)
                .map(|i| (1..r).fold(make(0, i), |acc, k| apply(acc, make(k, i))))
                .collect()
        };
        let mut got = vec![sentinel; len];
        world
            .scan_into(&send, &mut got, op)
            .map_err(|e| err(&format!("scan {name} {len}"), e))?;
        if got != inclusive {
            return Err(format!(
                "scan {name} of {len} differs from the serial prefix"
            ));
        }
        let mut buf = send.clone();
        world
            .scan_in_place(&mut buf, op)
            .map_err(|e| err(&format!("scan in place {name} {len}"), e))?;
        if buf != inclusive {
            return Err(format!("scan in place {name} of {len} differs"));
        }
        let mut got = vec![sentinel; len];
        world
            .exclusive_scan_into(&send, &mut got, op)
            .map_err(|e| err(&format!("exclusive scan {name} {len}"), e))?;
        if got != exclusive {
            return Err(format!(
                "exclusive scan {name} of {len} differs (rank 0's must be left as it was)"
            ));
        }
        let mut buf = send.clone();
        world
            .exclusive_scan_in_place(&mut buf, op)
            .map_err(|e| err(&format!("exclusive scan in place {name} {len}"), e))?;
        let want = if r == 0 { &send } else { &exclusive };
        if buf != *want {
            return Err(format!("exclusive scan in place {name} of {len} differs"));
        }
    }
    Ok(())
}

/// `P(s, m)` of the scan's documentation: the run `s .. s+m` of ranks, halves combined.
fn run_sum(x: &[f64], s: usize, m: usize) -> f64 {
    if m == 1 {
        x[s]
    } else {
        run_sum(x, s, m / 2) + run_sum(x, s + m / 2, m / 2)
    }
}

/// A float scan's result on rank `r` in the documented grouping; `None` for rank 0's
/// exclusive scan.
fn scan_sum(x: &[f64], r: usize, exclusive: bool) -> Option<f64> {
    let mut result = (!exclusive).then_some(x[r]);
    let mut m = 1;
    while m < x.len() {
        if r & m != 0 {
            let below = run_sum(x, r & !(2 * m - 1), m);
            result = Some(result.map_or(below, |v| below + v));
        }
        m <<= 1;
    }
    result
}

fn scans(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let sizes = [0, 1, 5, 1000, 40_001];
    let sum = SystemOperation::sum();
    check_scans(
        world,
        "i64 sum",
        sum,
        i64::wrapping_add,
        |r, i| ival(r, i) as i64,
        SENTINEL,
        &sizes,
    )?;
    check_scans(
        world,
        "matrix product",
        mat_product(),
        mat_mul,
        matrix,
        [SENTINEL; 4],
        &[1, 3, 700],
    )?;
    check_scans(
        world,
        "affine",
        affine(),
        compose,
        ival,
        SENTINEL as u64,
        &sizes,
    )?;
    // Float sums: the documented grouping, bit for bit, on two calls.
    for len in [1usize, 999, 30_000] {
        let send: Vec<f64> = (0..len).map(|i| fval(r, i)).collect();
        let want: Vec<u64> = (0..len)
            .map(|i| {
                let x: Vec<f64> = (0..n).map(|k| fval(k, i)).collect();
                scan_sum(&x, r, false).unwrap_or_default().to_bits()
            })
            .collect();
        let want_ex: Vec<u64> = (0..len)
            .map(|i| {
                let x: Vec<f64> = (0..n).map(|k| fval(k, i)).collect();
                scan_sum(&x, r, true).unwrap_or(-1.0).to_bits()
            })
            .collect();
        for call in 1..=2 {
            let mut got = vec![0.0f64; len];
            world
                .scan_into(&send, &mut got, sum)
                .map_err(|e| err("f64 scan", e))?;
            if got.iter().map(|x| x.to_bits()).collect::<Vec<_>>() != want {
                return Err(format!("f64 scan of {len}, call {call}: other bits"));
            }
            let mut got = vec![-1.0f64; len];
            world
                .exclusive_scan_into(&send, &mut got, sum)
                .map_err(|e| err("f64 exclusive scan", e))?;
            if got.iter().map(|x| x.to_bits()).collect::<Vec<_>>() != want_ex {
                return Err(format!(
                    "f64 exclusive scan of {len}, call {call}: other bits"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn scans_match_the_serial_prefix_on_1_to_8_ranks() {
    let _dog = common::watchdog("scans_match_the_serial_prefix_on_1_to_8_ranks", 300);
    every_rank_count(scans, "scans");
}

/// Rank `k`'s count for base `base`: zeros among them, uneven.
fn count(k: usize, base: usize) -> usize {
    if base == 0 {
        0
    } else {
        (k * 7 + base) % (base + 3)
    }
}

/// The element ranges of `counts`, packed.
fn ranges(counts: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut at = 0;
    counts
        .iter()
        .map(|&c| {
            at += c;
            at - c..at
        })
        .collect()
}

/// Reduce-scatter of `make` by `counts` with `op`, both forms, against the rank-order fold
/// `apply` (exact for the integer operations used here).
fn check_reduce_scatter<T, O>(
    world: &World,
    name: &str,
    op: O,
    apply: impl Fn(T, T) -> T,
    make: impl Fn(usize, usize) -> T,
    counts: &[usize],
) -> Result<(), String>
where
    T: bytemuck::Pod + PartialEq + std::fmt::Debug,
    O: onecopy::collective::Operation<T> + Copy,
{
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let total: usize = counts.iter().sum();
    let mine = ranges(counts)[r].clone();
    let send: Vec<T> = (0..total).map(|i| make(r, i)).collect();
    let want: Vec<T> = mine
        .clone()
        .map(|i| (1..n).fold(make(0, i), |acc, k| apply(acc, make(k, i))))
        .collect();
    let mut got = vec![T::zeroed(); counts[r]];
    world
        .reduce_scatter_into(&send, &mut got, counts, op)
        .map_err(|e| err(&format!("reduce_scatter {name} {counts:?}"), e))?;
    if got != want {
        return Err(format!("reduce_scatter {name} {counts:?} differs"));
    }
    let mut buf = send.clone();
    world
        .reduce_scatter_in_place(&mut buf, counts, op)
        .map_err(|e| err(&format!("reduce_scatter in place {name}"), e))?;
    if buf[..counts[r]] != want[..] {
        return Err(format!("reduce_scatter in place {name} {counts:?} differs"));
    }
    if counts.iter().all(|&c| c == counts[0]) {
        let mut got = vec![T::zeroed(); counts[r]];
        world
            .reduce_scatter_block_into(&send, &mut got, op)
            .map_err(|e| err(&format!("reduce_scatter_block {name}"), e))?;
        if got != want {
            return Err(format!("reduce_scatter_block {name} {} differs", counts[0]));
        }
        let mut buf = send;
        world
            .reduce_scatter_block_in_place(&mut buf, op)
            .map_err(|e| err(&format!("reduce_scatter_block in place {name}"), e))?;
        if buf[..counts[r]] != want[..] {
            return Err(format!("reduce_scatter_block in place {name} differs"));
        }
    }
    Ok(())
}

fn reduce_scatters(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    let mut all_counts: Vec<Vec<usize>> = [0usize, 1, 3, 1000, 20_000]
        .iter()
        .map(|&k| vec![k; n])
        .collect();
    for base in [0usize, 1, 5, 1001, 30_011] {
        all_counts.push((0..n).map(|k| count(k, base)).collect());
    }
    for counts in &all_counts {
        // A commutative operation goes round the ring, a non-commutative one through the tree.
        let sum = SystemOperation::sum();
        check_reduce_scatter(
            world,
            "i64 sum",
            sum,
            i64::wrapping_add,
            |r, i| ival(r, i) as i64,
            counts,
        )?;
        check_reduce_scatter(world, "affine", affine(), compose, ival, counts)?;
    }
    Ok(())
}

#[test]
fn reduce_scatter_matches_the_serial_fold_on_1_to_8_ranks() {
    let _dog = common::watchdog(
        "reduce_scatter_matches_the_serial_fold_on_1_to_8_ranks",
        300,
    );
    every_rank_count(reduce_scatters, "reduce-scatter");
}

/// Float sums by reduce-scatter: block j combined along the ring from rank j + 1, as
/// documented, bit for bit, the same on a second call.
fn float_reduce_scatter(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for base in [1usize, 700, 20_011] {
        let counts: Vec<usize> = (0..n).map(|k| count(k, base)).collect();
        let total: usize = counts.iter().sum();
        let send: Vec<f64> = (0..total).map(|i| fval(r, i)).collect();
        let want: Vec<u64> = ranges(&counts)[r]
            .clone()
            .map(|i| {
                let from = (r + 1) % n;
                (1..n)
                    .fold(fval(from, i), |acc, k| acc + fval((from + k) % n, i))
                    .to_bits()
            })
            .collect();
        for call in 1..=2 {
            let mut got = vec![0.0f64; counts[r]];
            world
                .reduce_scatter_into(&send, &mut got, &counts, SystemOperation::sum())
                .map_err(|e| err("f64 reduce_scatter", e))?;
            if got.iter().map(|x| x.to_bits()).collect::<Vec<_>>() != want {
                return Err(format!(
                    "f64 reduce_scatter {counts:?}, call {call}: other bits"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn float_reduce_scatter_has_the_documented_bits_on_1_to_8_ranks() {
    let _dog = common::watchdog(
        "float_reduce_scatter_has_the_documented_bits_on_1_to_8_ranks",
        240,
    );
    every_rank_count(float_reduce_scatter, "float reduce-scatter");
}

fn reduce_scatter_every_step(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    for step in [
        ReduceStep::ReadThenReduce,
        ReduceStep::Fused,
        ReduceStep::Copy,
    ] {
        reduce::set_step(Some(step));
        for base in [5usize, 9001] {
            let counts: Vec<usize> = (0..n).map(|k| count(k, base)).collect();
            check_reduce_scatter(world, "affine", affine(), compose, ival, &counts)
                .map_err(|e| format!("{step:?}: {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn reduce_scatter_through_the_tree_with_every_reduce_step() {
    let _dog = common::watchdog(
        "reduce_scatter_through_the_tree_with_every_reduce_step",
        240,
    );
    for n in [3, 6] {
        for transport in ["cma-read", "shm-copy"] {
            assert_all_ok(
                &run_job(n, transport, reduce_scatter_every_step),
                &format!("reduce-scatter steps, {n} ranks, {transport}"),
            );
        }
    }
}

fn elem(rank: usize, i: usize) -> u32 {
    ((rank as u32) << 24) | i as u32
}

fn in_place_forms(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for len in [0usize, 1, 100, 40_000] {
        let send: Vec<i64> = (0..len).map(|i| ival(r, i) as i64).collect();
        let want: Vec<i64> = (0..len)
            .map(|i| (0..n).fold(0i64, |acc, k| acc.wrapping_add(ival(k, i) as i64)))
            .collect();
        let mut buf = send.clone();
        world
            .all_reduce_in_place(&mut buf, SystemOperation::sum())
            .map_err(|e| err("all_reduce_in_place", e))?;
        if buf != want {
            return Err(format!("all_reduce_in_place of {len} differs"));
        }
        let mut buf = (0..len).map(|i| ival(r, i)).collect::<Vec<_>>();
        world
            .all_reduce_in_place(&mut buf, affine())
            .map_err(|e| err("all_reduce_in_place affine", e))?;
        let want_affine: Vec<u64> = (0..len)
            .map(|i| (1..n).fold(ival(0, i), |acc, k| compose(acc, ival(k, i))))
            .collect();
        if buf != want_affine {
            return Err(format!("all_reduce_in_place affine of {len} differs"));
        }
        for root in [0, n - 1] {
            let peer = world.process_at_rank(root as i32);
            if r == root {
                let mut buf = send.clone();
                peer.reduce_into_root_in_place(&mut buf, SystemOperation::sum())
                    .map_err(|e| err("reduce_into_root_in_place", e))?;
                if buf != want {
                    return Err(format!("reduce in place of {len} to {root} differs"));
                }
            } else {
                peer.reduce_into(&send, SystemOperation::sum())
                    .map_err(|e| err("reduce_into", e))?;
            }
        }
    }
    // Blocks small enough to go all at once, and large ones around the ring.
    for len in [0usize, 1, 3, 300, 20_000] {
        let all: Vec<u32> = (0..n)
            .flat_map(|k| (0..len).map(move |i| elem(k, i)))
            .collect();
        let mut buf = vec![u32::MAX; n * len];
        buf[r * len..][..len].copy_from_slice(&all[r * len..][..len]);
        world
            .all_gather_in_place(&mut buf)
            .map_err(|e| err("all_gather_in_place", e))?;
        if buf != all {
            return Err(format!("all_gather_in_place of {len} differs"));
        }
        let mut buf: Vec<u32> = (0..n * len).map(|i| elem(r, i)).collect();
        world
            .all_to_all_in_place(&mut buf)
            .map_err(|e| err("all_to_all_in_place", e))?;
        let want: Vec<u32> = (0..n)
            .flat_map(|k| (0..len).map(move |i| elem(k, r * len + i)))
            .collect();
        if buf != want {
            return Err(format!("all_to_all_in_place of {len} differs"));
        }
    }
    Ok(())
}

#[test]
fn in_place_forms_match_the_serial_reference_on_1_to_8_ranks() {
    let _dog = common::watchdog(
        "in_place_forms_match_the_serial_reference_on_1_to_8_ranks",
        300,
    );
    every_rank_count(in_place_forms, "in-place forms");
}

#[test]
fn reduce_local_puts_the_input_on_the_left() {
    let input: Vec<Matrix> = (0..5).map(|i| matrix(0, i)).collect();
    let mut inout: Vec<Matrix> = (0..5).map(|i| matrix(1, i)).collect();
    let want: Vec<Matrix> = (0..5).map(|i| mat_mul(input[i], inout[i])).collect();
    reduce_local_into(&input, &mut inout, mat_product()).expect("reduce_local_into");
    assert_eq!(inout, want);
    let mut short = [0i64; 2];
    match reduce_local_into(&[1i64, 2, 3], &mut short, SystemOperation::sum()) {
        Err(CommError::InvalidArgument(_)) => {}
        other => panic!("lengths 3 and 2 gave {other:?}"),
    }
    assert_eq!(short, [0, 0], "nothing is written on an error");
}

/// MINLOC and MAXLOC of values with many ties: the serial answer is the extreme value and the
/// smallest index among the ranks that hold it.
fn check_locations<T>(world: &World, make: fn(usize, usize) -> T) -> Result<(), String>
where
    T: LocationValue + std::fmt::Debug,
    ValueIndex<T>: bytemuck::Pod,
{
    let (n, r) = (world.size() as usize, world.rank() as usize);
    // Indices are not rank order: the smallest index among the ties is some other rank's.
    let index = |k: usize| ((k * 5 + 3) % 8) as i32;
    let len = 257;
    let send: Vec<ValueIndex<T>> = (0..len)
        .map(|i| ValueIndex::new(make(r, i), index(r)))
        .collect();
    for op in [LocationOperation::MinLoc, LocationOperation::MaxLoc] {
        let best = |ranks: std::ops::Range<usize>, i: usize| {
            let values: Vec<T> = ranks.clone().map(|k| make(k, i)).collect();
            let mut v = values[0];
            for &x in &values {
                let better = match op {
                    LocationOperation::MinLoc => x < v,
                    LocationOperation::MaxLoc => x > v,
                };
                if better {
                    v = x;
                }
            }
            let at = ranks.filter(|&k| make(k, i) == v).map(index).min();
            ValueIndex::new(v, at.unwrap_or(i32::MAX))
        };
        let want: Vec<ValueIndex<T>> = (0..len).map(|i| best(0..n, i)).collect();
        let mut got = vec![ValueIndex::new(make(0, 0), -1); len];
        world
            .all_reduce_into(&send, &mut got, op)
            .map_err(|e| err(&format!("{op:?} all_reduce"), e))?;
        if got != want {
            return Err(format!("{op:?} all_reduce differs: {:?}", &got[..4]));
        }
        let want: Vec<ValueIndex<T>> = (0..len).map(|i| best(0..r + 1, i)).collect();
        world
            .scan_into(&send, &mut got, op)
            .map_err(|e| err(&format!("{op:?} scan"), e))?;
        if got != want {
            return Err(format!("{op:?} scan differs"));
        }
    }
    Ok(())
}

fn locations(world: &World) -> Result<(), String> {
    // Three values among the ranks for every element: ties everywhere.
    check_locations::<f64>(world, |r, i| ((r * 7 + i * 3) % 3) as f64 * 0.5 - 0.25)?;
    check_locations::<f32>(world, |r, i| ((r * 7 + i * 3) % 3) as f32 - 1.0)?;
    check_locations::<i64>(world, |r, i| (((r * 7 + i * 3) % 3) as i64 - 1) << 40)?;
    check_locations::<i32>(world, |r, i| ((r * 7 + i * 3) % 3) as i32 * -3)?;
    check_locations::<i16>(world, |r, i| ((r * 7 + i * 3) % 3) as i16 - 1)
}

#[test]
fn minloc_and_maxloc_take_the_smallest_index_on_ties_on_1_to_8_ranks() {
    let _dog = common::watchdog(
        "minloc_and_maxloc_take_the_smallest_index_on_ties_on_1_to_8_ranks",
        240,
    );
    every_rank_count(locations, "MINLOC/MAXLOC");
}

/// The world cut into the even and the odd ranks, joined by an intercommunicator.
fn intercomm(world: &World) -> Result<(InterCommunicator, bool), String> {
    let r = world.rank();
    let even = r % 2 == 0;
    let mine = world
        .split_by_color(Color::with_value(r % 2))
        .map_err(|e| err("split", e))?
        .ok_or("split left a rank out")?;
    let remote_leader = if even { 1 } else { 0 };
    let inter = InterCommunicator::create(&mine, 0, world, remote_leader, 78)
        .map_err(|e| err("intercomm create", e))?;
    Ok((inter, even))
}

/// Uneven counts for a group of `g` ranks, a zero first, adding up to `total`.
fn group_counts(g: usize, total: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = [0, 10, 9, 5].iter().take(g - 1).copied().collect();
    counts.push(total - counts.iter().sum::<usize>());
    counts
}

fn inter_reduce_scatter(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let (inter, even) = intercomm(world)?;
    let me = inter.rank() as usize;
    let local = inter.size() as usize;
    let remote: Vec<usize> = (0..n).filter(|k| k % 2 != r % 2).collect();
    let total = 3001;
    let counts = group_counts(local, total);
    let mine = ranges(&counts)[me].clone();
    let send: Vec<i64> = (0..total).map(|i| ival(r, i) as i64).collect();
    let want: Vec<i64> = mine
        .clone()
        .map(|i| {
            remote
                .iter()
                .fold(0i64, |a, &k| a.wrapping_add(ival(k, i) as i64))
        })
        .collect();
    let mut got = vec![0i64; counts[me]];
    inter
        .reduce_scatter_into(&send, &mut got, &counts, SystemOperation::sum())
        .map_err(|e| err("intercomm reduce_scatter", e))?;
    if got != want {
        return Err(format!("intercomm reduce_scatter differs (even: {even})"));
    }
    // Rank order within the other group.
    let send: Vec<u64> = (0..total).map(|i| ival(r, i)).collect();
    let want: Vec<u64> = mine
        .map(|i| {
            remote[1..]
                .iter()
                .fold(ival(remote[0], i), |a, &k| compose(a, ival(k, i)))
        })
        .collect();
    let mut got = vec![0u64; counts[me]];
    inter
        .reduce_scatter_into(&send, &mut got, &counts, affine())
        .map_err(|e| err("intercomm reduce_scatter affine", e))?;
    if got != want {
        return Err("intercomm reduce_scatter affine differs".into());
    }
    // Equal blocks need equal groups: both groups' vectors must be as long.
    if n.is_multiple_of(2) {
        let k = 7;
        let send: Vec<i64> = (0..local * k).map(|i| ival(r, i) as i64).collect();
        let want: Vec<i64> = (me * k..(me + 1) * k)
            .map(|i| {
                remote
                    .iter()
                    .fold(0i64, |a, &q| a.wrapping_add(ival(q, i) as i64))
            })
            .collect();
        let mut got = vec![0i64; k];
        inter
            .reduce_scatter_block_into(&send, &mut got, SystemOperation::sum())
            .map_err(|e| err("intercomm reduce_scatter_block", e))?;
        if got != want {
            return Err("intercomm reduce_scatter_block differs".into());
        }
    }
    // What MPI defines on intracommunicators only is refused before anything is sent.
    let mut buf = vec![1i64; local * 2];
    let refusals = [
        (
            "scan",
            inter.scan_into(&[1i64], &mut [0], SystemOperation::sum()),
        ),
        (
            "exclusive scan",
            inter.exclusive_scan_in_place(&mut buf, SystemOperation::sum()),
        ),
        (
            "all_reduce_in_place",
            inter.all_reduce_in_place(&mut buf, SystemOperation::sum()),
        ),
        (
            "reduce_scatter_block_in_place",
            inter.reduce_scatter_block_in_place(&mut buf, SystemOperation::sum()),
        ),
        ("all_gather_in_place", inter.all_gather_in_place(&mut buf)),
        ("all_to_all_in_place", inter.all_to_all_in_place(&mut buf)),
        (
            "reduce_into_root_in_place",
            inter
                .process_at_rank(onecopy::topology::ROOT)
                .reduce_into_root_in_place(&mut buf, SystemOperation::sum()),
        ),
    ];
    for (name, outcome) in refusals {
        match outcome {
            Err(CommError::InvalidArgument(why)) if why.contains("intracommunicators only") => {}
            other => return Err(format!("{name} on an intercommunicator gave {other:?}")),
        }
    }
    inter.barrier().map_err(|e| err("barrier after", e))
}

#[test]
fn intercommunicator_reduce_scatter_on_2_to_8_ranks() {
    let _dog = common::watchdog("intercommunicator_reduce_scatter_on_2_to_8_ranks", 240);
    for n in 2..=8 {
        assert_all_ok(
            &run_job(n, "auto", inter_reduce_scatter),
            &format!("intercomm reduce-scatter, {n} ranks"),
        );
    }
}

/// Arguments unusable on every rank alike: each call is refused before anything is sent, so
/// the world still works afterwards.
fn locally_invalid(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let sum = SystemOperation::sum();
    let mut three = [0i64; 3];
    let counts = vec![2usize; n];
    let cases: Vec<(&str, Result<(), CommError>)> = vec![
        ("scan lengths", world.scan_into(&[1i64, 2], &mut three, sum)),
        (
            "exclusive scan lengths",
            world.exclusive_scan_into(&[1i64], &mut three, sum),
        ),
        (
            "reduce_scatter counts per rank",
            world.reduce_scatter_into(&vec![0i64; 2 * n + 2], &mut [0; 2], &vec![2; n + 1], sum),
        ),
        (
            "reduce_scatter send length",
            world.reduce_scatter_into(&vec![0i64; 2 * n + 1], &mut [0; 2], &counts, sum),
        ),
        (
            "reduce_scatter receive length",
            world.reduce_scatter_into(&vec![0i64; 2 * n], &mut three, &counts, sum),
        ),
        (
            "reduce_scatter_block send length",
            world.reduce_scatter_block_into(&vec![0i64; 2 * n + 1], &mut [0; 2], sum),
        ),
        (
            "reduce_scatter_block_in_place blocks",
            world.reduce_scatter_block_in_place(&mut vec![0i64; n + 1], sum),
        ),
        (
            "all_gather_in_place blocks",
            world.all_gather_in_place(&mut vec![0u8; n + 1]),
        ),
        (
            "all_to_all_in_place blocks",
            world.all_to_all_in_place(&mut vec![0u8; n + 1]),
        ),
    ];
    for (name, outcome) in cases {
        // One rank makes every length fit: n + 1 on one rank is a multiple of 1.
        if n == 1 && name.contains("blocks") {
            continue;
        }
        match outcome {
            Err(CommError::InvalidArgument(_)) => {}
            other => return Err(format!("{name}: {other:?}")),
        }
    }
    if n > 1 {
        let not_me = world.process_at_rank(((r + 1) % n) as i32);
        match not_me.reduce_into_root_in_place(&mut three, sum) {
            Err(CommError::InvalidArgument(_)) => {}
            other => return Err(format!("in-place reduce on a non-root: {other:?}")),
        }
    }
    world.barrier().map_err(|e| err("barrier after", e))
}

#[test]
fn locally_invalid_arguments_are_refused_before_anything_is_sent() {
    let _dog = common::watchdog(
        "locally_invalid_arguments_are_refused_before_anything_is_sent",
        120,
    );
    for n in [1, 2, 3] {
        assert_all_ok(
            &run_job(n, "auto", locally_invalid),
            &format!("invalid arguments, {n} ranks"),
        );
    }
}

/// Reports each rank's outcome through the error text.
fn outcome(r: Result<(), CommError>) -> Result<(), String> {
    r.map_err(|e| format!("ERROR {e}"))
}

fn mismatched_scan(world: &World) -> Result<(), String> {
    let len = if world.rank() == 1 { 70_000 } else { 70_001 };
    let send = vec![1i64; len];
    let mut recv = vec![0i64; len];
    outcome(world.scan_into(&send, &mut recv, SystemOperation::sum()))
}

fn mismatched_exclusive_scan(world: &World) -> Result<(), String> {
    let len = if world.rank() == 1 { 100 } else { 99 };
    let mut buf = vec![1i64; len];
    outcome(world.exclusive_scan_in_place(&mut buf, affine_i64()))
}

fn affine_i64() -> UserOperation<impl Fn(&[i64], &mut [i64]) + Copy> {
    UserOperation::non_commutative(|l: &[i64], r: &mut [i64]| {
        for (r, l) in r.iter_mut().zip(l) {
            *r = compose(*l as u64, *r as u64) as i64;
        }
    })
}

fn mismatched_reduce_scatter_ring(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    let k = if world.rank() == 1 { 3001 } else { 3000 };
    let send = vec![1i64; n * k];
    let mut recv = vec![0i64; k];
    outcome(world.reduce_scatter_block_into(&send, &mut recv, SystemOperation::sum()))
}

fn mismatched_reduce_scatter_tree(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    let r = world.rank() as usize;
    let counts: Vec<usize> = (0..n).map(|k| if r == 1 { k + 2 } else { k + 1 }).collect();
    let send = vec![1i64; counts.iter().sum()];
    let mut recv = vec![0i64; counts[r]];
    outcome(world.reduce_scatter_into(&send, &mut recv, &counts, affine_i64()))
}

#[test]
fn mismatched_counts_are_errors_not_hangs() {
    let _dog = common::watchdog("mismatched_counts_are_errors_not_hangs", 240);
    let cases: [(&str, Body); 4] = [
        ("scan", mismatched_scan),
        ("exclusive scan", mismatched_exclusive_scan),
        ("reduce_scatter ring", mismatched_reduce_scatter_ring),
        ("reduce_scatter tree", mismatched_reduce_scatter_tree),
    ];
    for (name, body) in cases {
        for n in [2, 4] {
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

fn scan_against_exclusive_scan(world: &World) -> Result<(), String> {
    let mut buf = [1u64; 4];
    if world.rank() == 1 {
        outcome(world.scan_in_place(&mut buf, SystemOperation::sum()))
    } else {
        outcome(world.exclusive_scan_in_place(&mut buf, SystemOperation::sum()))
    }
}

fn reduce_scatter_against_all_reduce(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    let send = vec![1u64; 4 * n];
    if world.rank() == 1 {
        let mut recv = [0u64; 4];
        outcome(world.reduce_scatter_block_into(&send, &mut recv, SystemOperation::sum()))
    } else {
        let mut recv = vec![0u64; 4 * n];
        outcome(world.all_reduce_into(&send, &mut recv, SystemOperation::sum()))
    }
}

#[test]
fn ranks_in_different_collectives_get_an_error_naming_them() {
    let _dog = common::watchdog(
        "ranks_in_different_collectives_get_an_error_naming_them",
        240,
    );
    let cases: [(&str, Body, &str); 2] = [
        ("scans", scan_against_exclusive_scan, "an exclusive scan"),
        (
            "reduce-scatter",
            reduce_scatter_against_all_reduce,
            "a reduce-scatter",
        ),
    ];
    for (name, body, names) in cases {
        for n in [2, 3, 4] {
            for transport in ["auto", "shm-copy"] {
                let errors = run_job(n, transport, body);
                let described = errors
                    .iter()
                    .flatten()
                    .any(|e| e.contains("differ between ranks") && e.contains(names));
                assert!(
                    described,
                    "{name}, {n} ranks, {transport}: no rank named the mismatch: {errors:?}"
                );
            }
        }
    }
}
