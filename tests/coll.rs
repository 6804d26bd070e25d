//! Collectives end to end: every collective on 1 to 8 forked ranks against a serial
//! reference, every operation, variable counts, determinism of floats, and mismatched arguments.

mod common;

use onecopy::coll::reduce::{self, ReduceStep};
use onecopy::coll::{Integer, IntegerOperation, Number, SystemOperation, UserOperation};
use onecopy::{CommError, World};

use common::{assert_all_ok, run_job};
use onecopy::traits::*;

/// What each rank runs.
type Body = fn(&World) -> Result<(), String>;

/// Runs `body` on every rank count from 1 to 8.
fn every_rank_count(transport: &str, body: fn(&World) -> Result<(), String>, what: &str) {
    for n in 1..=8 {
        assert_all_ok(&run_job(n, transport, body), &format!("{what}, {n} ranks"));
    }
}

/// A value for element `i` of rank `rank`: wide, with zeros among them (for the logical ops).
fn ival(rank: usize, i: usize) -> u64 {
    let x = (rank as u64 + 1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let x = x ^ (x >> 29);
    if x.is_multiple_of(3) { 0 } else { x }
}

fn fval(rank: usize, i: usize) -> f64 {
    (ival(rank, i) % 10_000) as f64 / 7.0 - 500.0
}

fn err(what: &str, e: CommError) -> String {
    format!("{what}: {e}")
}

const SIZES: [usize; 7] = [0, 1, 5, 100, 3001, 40_000, 70_001];

fn barrier_and_broadcast(world: &World) -> Result<(), String> {
    let n = world.size();
    for _ in 0..3 {
        world.barrier().map_err(|e| err("barrier", e))?;
    }
    for &len in &[0usize, 1, 7, 1024, 5000, 70_000, (600 << 10) + 3] {
        for root in [0, n - 1, n / 2] {
            let want: Vec<u8> = (0..len)
                .map(|i| ((i * 7 + root as usize) % 251) as u8)
                .collect();
            let mut buf = if world.rank() == root {
                want.clone()
            } else {
                vec![0; len]
            };
            world
                .process_at_rank(root)
                .broadcast_into(&mut buf)
                .map_err(|e| err(&format!("broadcast {len} from {root}"), e))?;
            if buf != want {
                return Err(format!(
                    "broadcast of {len} bytes from {root} arrived wrong"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn barrier_and_broadcast_on_1_to_8_ranks() {
    let _dog = common::watchdog("barrier_and_broadcast_on_1_to_8_ranks", 240);
    every_rank_count("auto", barrier_and_broadcast, "barrier and broadcast");
    assert_all_ok(&run_job(5, "shm-copy", barrier_and_broadcast), "shm-copy");
}

/// Reduces with `op` to roots 0 and n-1 and all-reduces; compares with `apply` folded in rank
/// order.
fn check_reduce<T, O>(
    world: &World,
    name: &str,
    op: O,
    apply: impl Fn(T, T) -> T,
    make: impl Fn(usize, usize) -> T,
    sizes: &[usize],
) -> Result<(), String>
where
    T: bytemuck::Pod + PartialEq + std::fmt::Debug,
    O: onecopy::coll::Operation<T> + Copy,
{
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for &len in sizes {
        let send: Vec<T> = (0..len).map(|i| make(r, i)).collect();
        let want: Vec<T> = (0..len)
            .map(|i| (1..n).fold(make(0, i), |acc, k| apply(acc, make(k, i))))
            .collect();
        let mut got = vec![T::zeroed(); len];
        world
            .all_reduce_into(&send, &mut got, op)
            .map_err(|e| err(&format!("all_reduce {name} {len}"), e))?;
        if got != want {
            return Err(format!(
                "all_reduce {name} of {len} differs from the serial fold"
            ));
        }
        for root in [0, n - 1] {
            let peer = world.process_at_rank(root as i32);
            if r == root {
                let mut got = vec![T::zeroed(); len];
                peer.reduce_into_root(&send, &mut got, op)
                    .map_err(|e| err(&format!("reduce {name} {len} to {root}"), e))?;
                if got != want {
                    return Err(format!("reduce {name} of {len} to {root} differs"));
                }
            } else {
                peer.reduce_into(&send, op)
                    .map_err(|e| err(&format!("reduce {name} {len} to {root}"), e))?;
            }
        }
    }
    Ok(())
}

fn integer_ops<T: Integer + std::fmt::Debug>(
    world: &World,
    make: fn(usize, usize) -> T,
    sizes: &[usize],
) -> Result<(), String> {
    for (name, op) in [
        ("sum", SystemOperation::sum()),
        ("product", SystemOperation::product()),
        ("min", SystemOperation::min()),
        ("max", SystemOperation::max()),
    ] {
        check_reduce(world, name, op, |a, b| op.apply(a, b), make, sizes)?;
    }
    for (name, op) in [
        ("logical_and", SystemOperation::logical_and()),
        ("logical_or", SystemOperation::logical_or()),
        ("logical_xor", SystemOperation::logical_xor()),
        ("bitwise_and", SystemOperation::bitwise_and()),
        ("bitwise_or", SystemOperation::bitwise_or()),
        ("bitwise_xor", SystemOperation::bitwise_xor()),
    ] {
        check_reduce::<T, IntegerOperation>(world, name, op, |a, b| op.apply(a, b), make, sizes)?;
    }
    Ok(())
}

/// Affine maps x -> m·x + c (mod 2^32) packed as m << 32 | c, composed left then right: an
/// associative operation that is not commutative, so any rank-order slip shows.
fn compose(a: u64, b: u64) -> u64 {
    let (m1, c1) = ((a >> 32) as u32, a as u32);
    let (m2, c2) = ((b >> 32) as u32, b as u32);
    ((m1.wrapping_mul(m2) as u64) << 32) | m2.wrapping_mul(c1).wrapping_add(c2) as u64
}

fn reductions(world: &World) -> Result<(), String> {
    integer_ops::<i64>(world, |r, i| ival(r, i) as i64, &SIZES)?;
    integer_ops::<u8>(world, |r, i| ival(r, i) as u8, &SIZES[..5])?;
    integer_ops::<i32>(world, |r, i| ival(r, i) as i32, &[3, 1000])?;
    let affine = UserOperation::non_commutative(|l: &[u64], r: &mut [u64]| {
        for (r, l) in r.iter_mut().zip(l) {
            *r = compose(*l, *r);
        }
    });
    check_reduce(world, "affine", affine, compose, ival, &SIZES)?;
    let xor_commutative = UserOperation::commutative(|l: &[u64], r: &mut [u64]| {
        for (r, l) in r.iter_mut().zip(l) {
            *r ^= *l;
        }
    });
    check_reduce(
        world,
        "user xor",
        xor_commutative,
        |a, b| a ^ b,
        ival,
        &SIZES,
    )?;
    // Min and max of floats are exact whatever the order.
    for (name, op) in [
        ("min", SystemOperation::min()),
        ("max", SystemOperation::max()),
    ] {
        check_reduce(world, name, op, |a, b| op.apply(a, b), fval, &SIZES)?;
        check_reduce(
            world,
            name,
            op,
            |a, b| op.apply(a, b),
            |r, i| fval(r, i) as f32,
            &SIZES,
        )?;
    }
    Ok(())
}

#[test]
fn reductions_match_the_serial_fold_on_1_to_8_ranks() {
    let _dog = common::watchdog("reductions_match_the_serial_fold_on_1_to_8_ranks", 400);
    every_rank_count("auto", reductions, "reductions");
}

fn reductions_every_step(world: &World) -> Result<(), String> {
    for step in [
        ReduceStep::Copy,
        ReduceStep::ReadThenReduce,
        ReduceStep::Fused,
    ] {
        reduce::set_step(Some(step));
        let sizes = [0, 1, 9000, 70_001];
        check_reduce(
            world,
            "sum",
            SystemOperation::sum(),
            i64::wrapping_add,
            |r, i| ival(r, i) as i64,
            &sizes,
        )
        .map_err(|e| format!("{step:?}: {e}"))?;
        let affine = UserOperation::non_commutative(|l: &[u64], r: &mut [u64]| {
            for (r, l) in r.iter_mut().zip(l) {
                *r = compose(*l, *r);
            }
        });
        check_reduce(world, "affine", affine, compose, ival, &sizes)
            .map_err(|e| format!("{step:?}: {e}"))?;
    }
    Ok(())
}

/// Elements of 3 bytes (the runtime's 64 KiB pieces are not whole elements, so a reduction
/// receives, then folds) and float products (exact here: every factor is a power of two).
fn odd_elements_and_float_products(world: &World) -> Result<(), String> {
    fn add3(a: [u8; 3], b: [u8; 3]) -> [u8; 3] {
        [0, 1, 2].map(|k| a[k].wrapping_add(b[k]))
    }
    let op = UserOperation::commutative(|l: &[[u8; 3]], r: &mut [[u8; 3]]| {
        for (r, l) in r.iter_mut().zip(l) {
            *r = add3(*l, *r);
        }
    });
    let make = |r: usize, i: usize| [(r + i) as u8, (r * i) as u8, (i / 7) as u8];
    check_reduce(world, "3-byte add", op, add3, make, &[1, 30_000, 100_001])?;
    let factor = |r: usize, i: usize| if (r + i).is_multiple_of(3) { 2.0 } else { 0.5 };
    let product = SystemOperation::product();
    check_reduce(world, "f64 product", product, |a, b| a * b, factor, &SIZES)?;
    check_reduce(
        world,
        "f32 product",
        product,
        |a, b| a * b,
        |r, i| factor(r, i) as f32,
        &SIZES,
    )
}

#[test]
fn odd_element_sizes_and_float_products_match_the_serial_fold() {
    let _dog = common::watchdog(
        "odd_element_sizes_and_float_products_match_the_serial_fold",
        240,
    );
    for n in [2, 3, 5] {
        for transport in ["auto", "cma-read", "cma-split", "shm-copy"] {
            assert_all_ok(
                &run_job(n, transport, odd_elements_and_float_products),
                &format!("odd elements and products, {n} ranks, {transport}"),
            );
        }
    }
}

#[test]
fn every_reduce_step_gives_the_same_result() {
    let _dog = common::watchdog("every_reduce_step_gives_the_same_result", 240);
    for n in [2, 3, 6] {
        for transport in ["cma-read", "cma-split", "shm-copy"] {
            assert_all_ok(
                &run_job(n, transport, reductions_every_step),
                &format!("reduce steps, {n} ranks, {transport}"),
            );
        }
    }
}

/// Float sums: the same bits on every rank, on a second call, and with every reduce step.
fn float_determinism(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for len in [0usize, 3, 1000, 40_000, 100_003] {
        let send: Vec<f64> = (0..len)
            .map(|i| fval(r, i) * 1.000_001_f64.powi(i as i32 % 50))
            .collect();
        let mut first: Option<Vec<u64>> = None;
        for step in [ReduceStep::Copy, ReduceStep::Fused, ReduceStep::Copy] {
            reduce::set_step(Some(step));
            let mut got = vec![0.0f64; len];
            world
                .all_reduce_into(&send, &mut got, SystemOperation::sum())
                .map_err(|e| err("float all_reduce", e))?;
            let bits: Vec<u64> = got.iter().map(|x| x.to_bits()).collect();
            match &first {
                None => first = Some(bits),
                Some(f) if *f != bits => {
                    return Err(format!("float sum of {len} changed between calls"));
                }
                Some(_) => {}
            }
            let mut reduced = vec![0.0f64; len];
            let root = world.process_at_rank(0);
            if r == 0 {
                root.reduce_into_root(&send, &mut reduced, SystemOperation::sum())
                    .map_err(|e| err("float reduce", e))?;
                let serial: Vec<f64> = (0..len)
                    .map(|i| (0..n).map(|k| send_of(k, i)).sum::<f64>())
                    .collect();
                // The tree keeps rank order but groups differently from a serial loop.
                for (a, b) in reduced.iter().zip(&serial) {
                    if (a - b).abs() > 1e-9 * (1.0 + b.abs()) {
                        return Err(format!("float reduce {a} is far from {b}"));
                    }
                }
            } else {
                root.reduce_into(&send, SystemOperation::sum())
                    .map_err(|e| err("float reduce", e))?;
            }
        }
        // Every rank holds the same bits.
        let mine = first.unwrap_or_default();
        let digest = mine.iter().fold(0u64, |h, b| h.rotate_left(5) ^ b);
        let mut all = vec![0u64; n];
        world
            .all_gather_into(&[digest], &mut all)
            .map_err(|e| err("digest", e))?;
        if all.iter().any(|&d| d != digest) {
            return Err(format!(
                "ranks disagree on the float sum of {len}: {all:x?}"
            ));
        }
    }
    Ok(())
}

/// Rank 0 writes a digest of float all-reduce and reduce results to a file named after the test
/// process; a second job of the same size finds it and must produce the same bits.
fn float_digest_across_jobs(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let mut digest = 0u64;
    for len in [7usize, 5000, 100_003] {
        let send: Vec<f64> = (0..len).map(|i| send_of(r, i)).collect();
        let mut got = vec![0.0f64; len];
        world
            .all_reduce_into(&send, &mut got, SystemOperation::sum())
            .map_err(|e| err("float all_reduce", e))?;
        let root = world.process_at_rank(0);
        let mut reduced = vec![0.0f64; len];
        if r == 0 {
            root.reduce_into_root(&send, &mut reduced, SystemOperation::sum())
                .map_err(|e| err("float reduce", e))?;
        } else {
            root.reduce_into(&send, SystemOperation::sum())
                .map_err(|e| err("float reduce", e))?;
        }
        for x in got.iter().chain(&reduced) {
            digest = digest.rotate_left(7) ^ x.to_bits();
        }
    }
    if r != 0 {
        return Ok(());
    }
    let path = std::env::temp_dir().join(format!(
        "onecopy-coll-digest-{}-{n}",
        std::os::unix::process::parent_id()
    ));
    match std::fs::read_to_string(&path) {
        Ok(first) if first.trim() == digest.to_string() => Ok(()),
        Ok(first) => Err(format!(
            "float results differ between jobs: {first} then {digest}"
        )),
        Err(_) => std::fs::write(&path, digest.to_string()).map_err(|e| e.to_string()),
    }
}

#[test]
fn float_reductions_have_the_same_bits_in_two_jobs() {
    let _dog = common::watchdog("float_reductions_have_the_same_bits_in_two_jobs", 240);
    for n in [3, 4, 7] {
        let path =
            std::env::temp_dir().join(format!("onecopy-coll-digest-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        for job in 1..=2 {
            assert_all_ok(
                &run_job(n, "auto", float_digest_across_jobs),
                &format!("float digest, {n} ranks, job {job}"),
            );
        }
        assert!(path.exists(), "rank 0 wrote no digest");
        let _ = std::fs::remove_file(&path);
    }
}

fn send_of(rank: usize, i: usize) -> f64 {
    fval(rank, i) * 1.000_001_f64.powi(i as i32 % 50)
}

#[test]
fn float_reductions_are_deterministic() {
    let _dog = common::watchdog("float_reductions_are_deterministic", 240);
    for n in [2, 3, 5, 8] {
        let a = run_job(n, "auto", float_determinism);
        assert_all_ok(&a, &format!("float determinism, {n} ranks"));
    }
}

fn elem(rank: usize, i: usize) -> u32 {
    (rank as u32) << 24 | i as u32
}

fn gather_scatter(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for len in [0usize, 1, 3, 300, 20_000] {
        let send: Vec<u32> = (0..len).map(|i| elem(r, i)).collect();
        let all: Vec<u32> = (0..n)
            .flat_map(|k| (0..len).map(move |i| elem(k, i)))
            .collect();
        for root in [0, n - 1] {
            let peer = world.process_at_rank(root as i32);
            if r == root {
                let mut got = vec![0u32; n * len];
                peer.gather_into_root(&send, &mut got)
                    .map_err(|e| err("gather", e))?;
                if got != all {
                    return Err(format!("gather of {len} to {root} differs"));
                }
                let mut mine = vec![0u32; len];
                peer.scatter_into_root(&all, &mut mine)
                    .map_err(|e| err("scatter", e))?;
                if mine != send {
                    return Err(format!(
                        "scatter of {len} from {root}: root's block differs"
                    ));
                }
            } else {
                peer.gather_into(&send).map_err(|e| err("gather", e))?;
                let mut mine = vec![0u32; len];
                peer.scatter_into(&mut mine)
                    .map_err(|e| err("scatter", e))?;
                if mine != send {
                    return Err(format!("scatter of {len} from {root} differs"));
                }
            }
        }
        let mut got = vec![0u32; n * len];
        world
            .all_gather_into(&send, &mut got)
            .map_err(|e| err("all_gather", e))?;
        if got != all {
            return Err(format!("all_gather of {len} differs"));
        }
        all_to_all(world, len)?;
    }
    Ok(())
}

/// An all-to-all of `len` elements per block: block j of rank r is elem(r, j·len + i), and
/// rank j receives it as its block r.
fn all_to_all(world: &World, len: usize) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let out: Vec<u32> = (0..n * len).map(|i| elem(r, i)).collect();
    let want: Vec<u32> = (0..n)
        .flat_map(|k| (0..len).map(move |i| elem(k, r * len + i)))
        .collect();
    let mut got = vec![0u32; n * len];
    world
        .all_to_all_into(&out, &mut got)
        .map_err(|e| err("all_to_all", e))?;
    if got != want {
        return Err(format!("all_to_all of {len} differs"));
    }
    Ok(())
}

#[test]
fn gather_scatter_all_gather_all_to_all_on_1_to_8_ranks() {
    let _dog = common::watchdog("gather_scatter_all_gather_all_to_all_on_1_to_8_ranks", 240);
    every_rank_count(
        "auto",
        gather_scatter,
        "gather, scatter, all-gather, all-to-all",
    );
}

/// Rank k contributes count(k, base) elements: zeros among them, none divisible by the rank
/// count in general.
fn count(k: usize, base: usize) -> usize {
    if base == 0 {
        0
    } else {
        (k * 7 + base) % (base + 3)
    }
}

/// Displacements with a gap of 2 after each block, so blocks are not simply packed.
fn displs(counts: &[usize]) -> (Vec<usize>, usize) {
    let mut at = 0;
    let d = counts
        .iter()
        .map(|c| {
            let here = at;
            at += c + 2;
            here
        })
        .collect();
    (d, at)
}

fn varcounts(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for base in [0usize, 1, 5, 1001, 30_011] {
        let counts: Vec<usize> = (0..n).map(|k| count(k, base)).collect();
        let (d, total) = displs(&counts);
        let send: Vec<u32> = (0..counts[r]).map(|i| elem(r, i)).collect();
        let mut want = vec![u32::MAX; total];
        for k in 0..n {
            for i in 0..counts[k] {
                want[d[k] + i] = elem(k, i);
            }
        }
        let root = (base % n) as i32;
        let peer = world.process_at_rank(root);
        if r == root as usize {
            let mut got = vec![u32::MAX; total];
            peer.gather_varcount_into_root(&send, &mut got, &counts, &d)
                .map_err(|e| err("gatherv", e))?;
            if got != want {
                return Err(format!("gatherv base {base} differs"));
            }
            let mut mine = vec![0u32; counts[r]];
            peer.scatter_varcount_into_root(&want, &counts, &d, &mut mine)
                .map_err(|e| err("scatterv", e))?;
            if mine != send {
                return Err(format!("scatterv base {base}: root's block differs"));
            }
        } else {
            peer.gather_varcount_into(&send)
                .map_err(|e| err("gatherv", e))?;
            let mut mine = vec![0u32; counts[r]];
            peer.scatter_varcount_into(&mut mine)
                .map_err(|e| err("scatterv", e))?;
            if mine != send {
                return Err(format!("scatterv base {base} differs"));
            }
        }
        let mut got = vec![u32::MAX; total];
        world
            .all_gather_varcount_into(&send, &mut got, &counts, &d)
            .map_err(|e| err("allgatherv", e))?;
        if got != want {
            return Err(format!("allgatherv base {base} differs"));
        }
        // All to all with counts: rank r sends count(r + j, base) elements to rank j.
        let c = |from: usize, to: usize| count(from * 3 + to, base);
        let send_counts: Vec<usize> = (0..n).map(|j| c(r, j)).collect();
        let recv_counts: Vec<usize> = (0..n).map(|k| c(k, r)).collect();
        let (sd, stotal) = displs(&send_counts);
        let (rd, rtotal) = displs(&recv_counts);
        let mut out = vec![0u32; stotal];
        for j in 0..n {
            for i in 0..send_counts[j] {
                out[sd[j] + i] = elem(r, j << 16 | i);
            }
        }
        let mut want = vec![u32::MAX; rtotal];
        for k in 0..n {
            for i in 0..recv_counts[k] {
                want[rd[k] + i] = elem(k, r << 16 | i);
            }
        }
        let mut got = vec![u32::MAX; rtotal];
        world
            .all_to_all_varcount_into(&out, &send_counts, &sd, &mut got, &recv_counts, &rd)
            .map_err(|e| err("alltoallv", e))?;
        if got != want {
            return Err(format!("alltoallv base {base} differs"));
        }
    }
    Ok(())
}

#[test]
fn variable_counts_on_1_to_8_ranks() {
    let _dog = common::watchdog("variable_counts_on_1_to_8_ranks", 240);
    every_rank_count("auto", varcounts, "variable counts");
}

/// Calls a collective with arguments that differ on rank 1; passes (Ok) on ranks whose call
/// failed with an error or succeeded, and reports each rank's outcome through the error text.
fn outcome(r: Result<(), CommError>) -> Result<(), String> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(format!("ERROR {e}")),
    }
}

fn mismatched_broadcast(world: &World) -> Result<(), String> {
    let len = if world.rank() == 1 { 200 } else { 100 };
    let mut buf = vec![1u8; len];
    outcome(world.process_at_rank(0).broadcast_into(&mut buf))
}

fn mismatched_large_broadcast(world: &World) -> Result<(), String> {
    // The root's message goes eagerly; rank 1 expects one too large for that.
    let len = if world.rank() == 1 { 100_000 } else { 40_000 };
    let mut buf = vec![1u8; len];
    outcome(world.process_at_rank(0).broadcast_into(&mut buf))
}

fn mismatched_all_reduce(world: &World) -> Result<(), String> {
    let len = if world.rank() == 1 { 70_000 } else { 70_001 };
    let send = vec![1i64; len];
    let mut recv = vec![0i64; len];
    outcome(world.all_reduce_into(&send, &mut recv, SystemOperation::sum()))
}

fn mismatched_reduce(world: &World) -> Result<(), String> {
    let len = if world.rank() == 1 { 9000 } else { 9001 };
    let send = vec![1i64; len];
    let root = world.process_at_rank(0);
    if world.rank() == 0 {
        let mut recv = vec![0i64; len];
        outcome(root.reduce_into_root(&send, &mut recv, SystemOperation::sum()))
    } else {
        outcome(root.reduce_into(&send, SystemOperation::sum()))
    }
}

fn mismatched_all_to_all(world: &World) -> Result<(), String> {
    let per = if world.rank() == 1 { 3 } else { 2 };
    let n = world.size() as usize;
    let send = vec![7u16; per * n];
    let mut recv = vec![0u16; per * n];
    outcome(world.all_to_all_into(&send, &mut recv))
}

fn mismatched_gather(world: &World) -> Result<(), String> {
    let len = if world.rank() == 1 { 5000 } else { 4000 };
    let send = vec![7u8; len];
    let root = world.process_at_rank(0);
    if world.rank() == 0 {
        let mut recv = vec![0u8; len * world.size() as usize];
        outcome(root.gather_into_root(&send, &mut recv))
    } else {
        outcome(root.gather_into(&send))
    }
}

fn mismatched_scatter(world: &World) -> Result<(), String> {
    let len = if world.rank() == 1 { 30 } else { 20 };
    let root = world.process_at_rank(0);
    let mut recv = vec![0u32; len];
    if world.rank() == 0 {
        let send = vec![3u32; len * world.size() as usize];
        outcome(root.scatter_into_root(&send, &mut recv))
    } else {
        outcome(root.scatter_into(&mut recv))
    }
}

fn mismatched_all_gather(world: &World) -> Result<(), String> {
    let len = if world.rank() == 1 { 70_000 } else { 60_000 };
    let send = vec![1u8; len];
    let mut recv = vec![0u8; len * world.size() as usize];
    outcome(world.all_gather_into(&send, &mut recv))
}

fn root_out_of_range(world: &World) -> Result<(), String> {
    let mut buf = [0u8; 4];
    match world.process_at_rank(world.size()).broadcast_into(&mut buf) {
        Err(CommError::InvalidRank { .. }) => {}
        other => return Err(format!("broadcast from a root past the end gave {other:?}")),
    }
    match world
        .process_at_rank(-1)
        .reduce_into(&[1u8], SystemOperation::sum())
    {
        Err(CommError::InvalidRank { .. }) => {}
        other => return Err(format!("reduce to root -1 gave {other:?}")),
    }
    // The world still works afterwards: nothing was sent.
    world.barrier().map_err(|e| err("barrier after", e))
}

#[test]
fn mismatched_arguments_are_errors_not_hangs() {
    let _dog = common::watchdog("mismatched_arguments_are_errors_not_hangs", 300);
    let cases: [(&str, Body); 8] = [
        ("scatter", mismatched_scatter),
        ("large broadcast", mismatched_large_broadcast),
        ("all_gather", mismatched_all_gather),
        ("broadcast", mismatched_broadcast),
        ("all_reduce", mismatched_all_reduce),
        ("reduce", mismatched_reduce),
        ("all_to_all", mismatched_all_to_all),
        ("gather", mismatched_gather),
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
    for n in [1, 3] {
        assert_all_ok(&run_job(n, "auto", root_out_of_range), "root out of range");
    }
}

fn every_rank_its_own_root(world: &World) -> Result<(), String> {
    // Every rank broadcasts as the root: all send, none receives, and the messages cross. The
    // next collective meets them.
    let mut buf = [world.rank() as u8; 16];
    let me = world.process_at_rank(world.rank());
    outcome(me.broadcast_into(&mut buf).and_then(|()| world.barrier()))
}

fn reduce_to_different_roots(world: &World) -> Result<(), String> {
    let n = world.size();
    let root = if world.rank() == n - 1 { n - 1 } else { 0 };
    let peer = world.process_at_rank(root);
    let send = [1u64; 8];
    if world.rank() == root {
        let mut got = [0u64; 8];
        outcome(peer.reduce_into_root(&send, &mut got, SystemOperation::sum()))
    } else {
        outcome(peer.reduce_into(&send, SystemOperation::sum()))
    }
}

fn different_collectives(world: &World) -> Result<(), String> {
    // Rank 1 all-reduces while the others broadcast from rank 0.
    let mut buf = [0u64; 4];
    if world.rank() == 1 {
        outcome(world.all_reduce_into(&[1u64; 4], &mut buf, SystemOperation::sum()))
    } else {
        outcome(world.process_at_rank(0).broadcast_into(&mut buf))
    }
}

#[test]
fn ranks_that_disagree_on_the_root_or_the_collective_get_an_error() {
    let _dog = common::watchdog(
        "ranks_that_disagree_on_the_root_or_the_collective_get_an_error",
        300,
    );
    let cases: [(&str, Body, &str); 3] = [
        (
            "own roots",
            every_rank_its_own_root,
            "a broadcast to or from root",
        ),
        (
            "reduce roots",
            reduce_to_different_roots,
            "a reduce to or from root",
        ),
        ("collectives", different_collectives, "an all-reduce"),
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

/// A generic check that every numeric type has the arithmetic operations.
fn _types_compile<T: Number>(world: &World, x: &[T], y: &mut [T]) -> Result<(), CommError> {
    world.all_reduce_into(x, y, SystemOperation::sum())
}

#[test]
fn bench_coll_reports_every_collective_as_json() {
    let _dog = common::watchdog("bench_coll_reports_every_collective_as_json", 120);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onecopy"))
        .args([
            "bench",
            "coll",
            "-n",
            "3",
            "--sizes",
            "8,5000",
            "--budget-ms",
            "2",
        ])
        .args(["--format", "json"])
        .output()
        .expect("run onecopy bench coll");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("JSON records");
    // Two sizes for each sized collective, one barrier.
    assert_eq!(records.len(), 5 * 2 + 1, "{records:?}");
    for r in &records {
        assert_eq!(r["ranks"], 3);
        assert_eq!(r["transport"], "auto");
        assert_eq!(r["unit"], "us");
        assert!(r["value"].as_f64().is_some_and(|v| v > 0.0), "{r}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_onecopy"))
        .args(["bench", "coll", "--collectives", "allsum"])
        .output()
        .expect("run onecopy bench coll");
    assert!(!bad.status.success());
}

#[test]
fn collectives_example_through_onecopy_run() {
    let _dog = common::watchdog("collectives_example_through_onecopy_run", 120);
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_onecopy"));
    let example = bin
        .parent()
        .expect("target dir")
        .join("examples")
        .join("collectives");
    if !example.exists() {
        common::skip(&format!(
            "{} is not built (run `cargo build --examples`)",
            example.display()
        ));
        return;
    }
    for n in [1, 3, 5] {
        let out = std::process::Command::new(&bin)
            .args(["run", "-n", &n.to_string(), "--"])
            .arg(&example)
            .output()
            .expect("start onecopy run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{n} ranks: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sum = (0..n).sum::<i32>();
        // The operation is applied only between contributions: one rank gets its own value.
        let widest = (1..n).fold(-2i32, |acc, r| acc.abs().max((r - 2).abs()));
        let want = format!(
            "collectives on {n} ranks: sum {sum} (expected {sum}), parameters [7, 8, 9, 10], largest |rank - 2| {widest}"
        );
        assert!(stdout.contains(&want), "{n} ranks: {stdout}");
    }
}

/// A user's receive for any source and any tag, posted before a broadcast, must not take the
/// broadcast's message: it gets the user message sent afterwards.
fn any_tag_receive_skips_collectives(world: &World) -> Result<(), String> {
    let n = world.size();
    let mut got = [0u32; 4];
    let mut data = [0u8; 100];
    if world.rank() == 0 {
        data = [9; 100];
    }
    let status = onecopy::request::scope(|scope| -> Result<Option<onecopy::Status>, String> {
        let pending = if world.rank() == n - 1 {
            Some(
                world
                    .any_process()
                    .immediate_receive_into(scope, &mut got)
                    .map_err(|e| err("post", e))?,
            )
        } else {
            None
        };
        world
            .process_at_rank(0)
            .broadcast_into(&mut data)
            .map_err(|e| err("broadcast", e))?;
        if world.rank() == 0 {
            world
                .process_at_rank(n - 1)
                .send_with_tag(&[1u32, 2, 3, 4], 5)
                .map_err(|e| err("send", e))?;
        }
        pending
            .map(|r| r.wait().map_err(|e| err("receive", e)))
            .transpose()
    })?;
    if data != [9; 100] {
        return Err("the broadcast did not arrive".into());
    }
    if let Some(st) = status
        && (st.tag() != 5 || got != [1, 2, 3, 4])
    {
        return Err(format!(
            "the any-tag receive got {got:?} with tag {}",
            st.tag()
        ));
    }
    Ok(())
}

#[test]
fn user_receives_for_any_tag_never_take_collective_messages() {
    let _dog = common::watchdog(
        "user_receives_for_any_tag_never_take_collective_messages",
        60,
    );
    for n in [2, 3] {
        assert_all_ok(
            &run_job(n, "auto", any_tag_receive_skips_collectives),
            &format!("any-tag receive, {n} ranks"),
        );
    }
}

/// Blocks of 1 MiB and more: each rank copies its own block in pieces while its messages move
/// (pairwise on 2 ranks, all at once on 3 and 4), for the fixed and variable-count forms.
#[test]
fn large_all_to_all_blocks_copy_their_own_block_while_moving() {
    let _dog = common::watchdog(
        "large_all_to_all_blocks_copy_their_own_block_while_moving",
        240,
    );
    fn body(world: &World) -> Result<(), String> {
        let (n, r) = (world.size() as usize, world.rank() as usize);
        all_to_all(world, (1 << 18) + 3)?; // u32s: 1 MiB and 12 bytes
        // Variable counts: rank k sends (1 MiB + 4k) bytes to everyone, packed.
        let each = |k: usize| (1 << 18) + k;
        let send_counts = vec![each(r); n];
        let send_displs: Vec<usize> = (0..n).map(|j| j * each(r)).collect();
        let out: Vec<u32> = (0..n * each(r)).map(|i| elem(r, i)).collect();
        let recv_counts: Vec<usize> = (0..n).map(each).collect();
        let recv_displs: Vec<usize> = (0..n).map(|k| (0..k).map(each).sum()).collect();
        let mut got = vec![0u32; (0..n).map(each).sum()];
        world
            .all_to_all_varcount_into(
                &out,
                &send_counts,
                &send_displs,
                &mut got,
                &recv_counts,
                &recv_displs,
            )
            .map_err(|e| err("all_to_all_varcount", e))?;
        for k in 0..n {
            let block = &got[recv_displs[k]..][..each(k)];
            if (0..each(k)).any(|i| block[i] != elem(k, r * each(k) + i)) {
                return Err(format!("all_to_all_varcount block from {k} differs"));
            }
        }
        Ok(())
    }
    for (n, t) in [(2, "auto"), (2, "cma-read"), (3, "shm-copy"), (4, "auto")] {
        assert_all_ok(&run_job(n, t, body), &format!("{n} ranks, {t}"));
    }
}
