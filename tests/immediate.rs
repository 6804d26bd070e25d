//! Nonblocking collectives end to end: each one on 1 to 8 forked ranks against a serial
//! reference, several in flight at once among point-to-point messages and blocking collectives,
//! two communicators at once, freed requests, completion of mixed requests, and failures (a
//! peer that exits, lengths and collectives that do not agree) ending requests with errors.

mod common;

use std::time::Duration;

use onecopy::coll::{SystemOperation, UserOperation};
use onecopy::request::{self, StaticScope};
use onecopy::topology::{Color, InterCommunicator};
use onecopy::traits::*;
use onecopy::{CommError, World};

use common::{assert_all_ok, run_job};

fn every_rank_count(body: fn(&World) -> Result<(), String>, what: &str) {
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

/// Affine maps x -> m·x + c (mod 2^32) packed as m << 32 | c, composed left then right:
/// associative, not commutative, so any slip in rank order shows.
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

/// The fold of ranks `ranks` of element `i`, in rank order.
fn fold(ranks: std::ops::Range<usize>, i: usize, at: impl Fn(usize, usize) -> u64) -> u64 {
    let mut it = ranks.map(|k| at(k, i));
    let first = it.next().expect("a non-empty range");
    it.fold(first, compose)
}

const SIZES: [usize; 5] = [0, 1, 7, 1000, 20_001];

fn reductions(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for &len in &SIZES {
        let send: Vec<u64> = (0..len).map(|i| ival(r, i)).collect();
        let all: Vec<u64> = (0..len).map(|i| fold(0..n, i, ival)).collect();
        // All-reduce, non-commutative and sum.
        let mut got = vec![0u64; len];
        let mut sum = vec![0u64; len];
        request::scope(|s| -> Result<(), CommError> {
            let a = world.immediate_all_reduce_into(s, &send, &mut got, affine())?;
            let b = world.immediate_all_reduce_into(s, &send, &mut sum, SystemOperation::sum())?;
            a.wait()?;
            b.wait()?;
            Ok(())
        })
        .map_err(|e| err(&format!("iallreduce {len}"), e))?;
        if got != all {
            return Err(format!("iallreduce affine of {len} differs"));
        }
        let want_sum: Vec<u64> = (0..len)
            .map(|i| (0..n).fold(0u64, |a, k| a.wrapping_add(ival(k, i))))
            .collect();
        if sum != want_sum {
            return Err(format!("iallreduce sum of {len} differs"));
        }
        // Reduce to three roots.
        for root in [0, n - 1, n / 2] {
            let p = world.process_at_rank(root as i32);
            let mut got = vec![0u64; len];
            request::scope(|s| -> Result<(), CommError> {
                if r == root {
                    p.immediate_reduce_into_root(s, &send, &mut got, affine())?
                        .wait()?;
                } else {
                    p.immediate_reduce_into(s, &send, affine())?.wait()?;
                }
                Ok(())
            })
            .map_err(|e| err(&format!("ireduce {len} to {root}"), e))?;
            if r == root && got != all {
                return Err(format!("ireduce of {len} to {root} differs"));
            }
        }
        // Inclusive and exclusive scans.
        let mut inclusive = vec![0u64; len];
        let mut exclusive = vec![7u64; len];
        request::scope(|s| -> Result<(), CommError> {
            let a = world.immediate_scan_into(s, &send, &mut inclusive, affine())?;
            let b = world.immediate_exclusive_scan_into(s, &send, &mut exclusive, affine())?;
            b.wait()?;
            a.wait()?;
            Ok(())
        })
        .map_err(|e| err(&format!("iscan {len}"), e))?;
        let want: Vec<u64> = (0..len).map(|i| fold(0..r + 1, i, ival)).collect();
        if inclusive != want {
            return Err(format!("iscan of {len} differs"));
        }
        let want: Vec<u64> = if r == 0 {
            vec![7; len]
        } else {
            (0..len).map(|i| fold(0..r, i, ival)).collect()
        };
        if exclusive != want {
            return Err(format!("iexscan of {len} differs"));
        }
        // Reduce-scatter of blocks of `len / 4 + 1` elements.
        let each = len / 4 + 1;
        let blocks: Vec<u64> = (0..n * each).map(|i| ival(r, i)).collect();
        let mut mine = vec![0u64; each];
        request::scope(|s| -> Result<(), CommError> {
            world
                .immediate_reduce_scatter_block_into(s, &blocks, &mut mine, affine())?
                .wait()?;
            Ok(())
        })
        .map_err(|e| err(&format!("ireduce_scatter_block {each}"), e))?;
        let want: Vec<u64> = (0..each).map(|i| fold(0..n, r * each + i, ival)).collect();
        if mine != want {
            return Err(format!("ireduce_scatter_block of {each} differs"));
        }
    }
    // Float sums: every rank gets the same bits.
    let send: Vec<f64> = (0..999)
        .map(|i| (ival(r, i) % 10_000) as f64 / 7.0)
        .collect();
    let mut got = vec![0.0f64; 999];
    request::scope(|s| {
        world
            .immediate_all_reduce_into(s, &send, &mut got, SystemOperation::sum())?
            .wait()
    })
    .map_err(|e| err("iallreduce f64", e))?;
    let digest = got.iter().fold(0u64, |h, x| h.rotate_left(5) ^ x.to_bits());
    let mut digests = vec![0u64; n];
    world
        .all_gather_into(&[digest], &mut digests)
        .map_err(|e| err("all_gather", e))?;
    if digests.iter().any(|&d| d != digest) {
        return Err("float iallreduce differs between ranks".into());
    }
    Ok(())
}

fn leak(v: Vec<u64>) -> &'static [u64] {
    Box::leak(v.into_boxed_slice())
}

#[test]
fn immediate_reductions_match_the_serial_fold_on_1_to_8_ranks() {
    let _dog = common::watchdog(
        "immediate_reductions_match_the_serial_fold_on_1_to_8_ranks",
        300,
    );
    every_rank_count(reductions, "immediate reductions");
}

fn elem(rank: usize, i: usize) -> u32 {
    (rank as u32) << 24 | i as u32
}

/// Rank k's count for `base` elements.
fn count(k: usize, base: usize) -> usize {
    if base == 0 {
        0
    } else {
        (k * 7 + base) % (base + 3)
    }
}

/// Displacements with a gap of 2 after each block.
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

fn barrier_broadcast_gather_scatter(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for _ in 0..3 {
        world
            .immediate_barrier()
            .and_then(|b| b.wait())
            .map_err(|e| err("ibarrier", e))?;
    }
    for &len in &SIZES {
        let send: Vec<u32> = (0..len).map(|i| elem(r, i)).collect();
        let all: Vec<u32> = (0..n)
            .flat_map(|k| (0..len).map(move |i| elem(k, i)))
            .collect();
        for root in [0, n - 1, n / 2] {
            let p = world.process_at_rank(root as i32);
            let want: Vec<u32> = (0..len).map(|i| elem(root, i)).collect();
            let mut buf = if r == root {
                want.clone()
            } else {
                vec![0; len]
            };
            let mut gathered = vec![0u32; n * len];
            let mut mine = vec![0u32; len];
            request::scope(|s| -> Result<(), CommError> {
                let b = p.immediate_broadcast_into(s, &mut buf)?;
                if r == root {
                    let g = p.immediate_gather_into_root(s, &send, &mut gathered)?;
                    let sc = p.immediate_scatter_into_root(s, &all, &mut mine)?;
                    sc.wait()?;
                    g.wait()?;
                } else {
                    let g = p.immediate_gather_into(s, &send)?;
                    let sc = p.immediate_scatter_into(s, &mut mine)?;
                    sc.wait()?;
                    g.wait()?;
                }
                b.wait()?;
                Ok(())
            })
            .map_err(|e| err(&format!("ibcast/igather/iscatter {len} root {root}"), e))?;
            if buf != want {
                return Err(format!("ibcast of {len} from {root} differs"));
            }
            if r == root && gathered != all {
                return Err(format!("igather of {len} to {root} differs"));
            }
            if mine != send {
                return Err(format!("iscatter of {len} from {root} differs"));
            }
        }
        let mut gathered = vec![0u32; n * len];
        let out: Vec<u32> = (0..n * len).map(|i| elem(r, i)).collect();
        let mut inn = vec![0u32; n * len];
        request::scope(|s| -> Result<(), CommError> {
            let a = world.immediate_all_gather_into(s, &send, &mut gathered)?;
            let b = world.immediate_all_to_all_into(s, &out, &mut inn)?;
            b.wait()?;
            a.wait()?;
            Ok(())
        })
        .map_err(|e| err(&format!("iallgather/ialltoall {len}"), e))?;
        if gathered != all {
            return Err(format!("iallgather of {len} differs"));
        }
        let want: Vec<u32> = (0..n)
            .flat_map(|k| (0..len).map(move |i| elem(k, r * len + i)))
            .collect();
        if inn != want {
            return Err(format!("ialltoall of {len} differs"));
        }
    }
    Ok(())
}

#[test]
fn immediate_barrier_broadcast_gather_scatter_on_1_to_8_ranks() {
    let _dog = common::watchdog(
        "immediate_barrier_broadcast_gather_scatter_on_1_to_8_ranks",
        300,
    );
    every_rank_count(
        barrier_broadcast_gather_scatter,
        "immediate barrier, broadcast, gather, scatter",
    );
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
        let root = base % n;
        let p = world.process_at_rank(root as i32);
        let mut gathered = vec![u32::MAX; total];
        let mut mine = vec![0u32; counts[r]];
        let mut all = vec![u32::MAX; total];
        request::scope(|s| -> Result<(), CommError> {
            let (g, sc) = if r == root {
                (
                    p.immediate_gather_varcount_into_root(s, &send, &mut gathered, &counts, &d)?,
                    p.immediate_scatter_varcount_into_root(s, &want, &counts, &d, &mut mine)?,
                )
            } else {
                (
                    p.immediate_gather_varcount_into(s, &send)?,
                    p.immediate_scatter_varcount_into(s, &mut mine)?,
                )
            };
            let a = world.immediate_all_gather_varcount_into(s, &send, &mut all, &counts, &d)?;
            let mut reqs = [Some(g), Some(sc), Some(a)];
            for res in request::wait_all(&mut reqs) {
                res?;
            }
            Ok(())
        })
        .map_err(|e| err(&format!("varcount base {base}"), e))?;
        if r == root && gathered != want {
            return Err(format!("igatherv base {base} differs"));
        }
        if mine != send {
            return Err(format!("iscatterv base {base} differs"));
        }
        if all != want {
            return Err(format!("iallgatherv base {base} differs"));
        }
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
        request::scope(|s| {
            world
                .immediate_all_to_all_varcount_into(
                    s,
                    &out,
                    &send_counts,
                    &sd,
                    &mut got,
                    &recv_counts,
                    &rd,
                )?
                .wait()
        })
        .map_err(|e| err(&format!("ialltoallv base {base}"), e))?;
        if got != want {
            return Err(format!("ialltoallv base {base} differs"));
        }
    }
    Ok(())
}

#[test]
fn immediate_variable_counts_on_1_to_8_ranks() {
    let _dog = common::watchdog("immediate_variable_counts_on_1_to_8_ranks", 300);
    every_rank_count(varcounts, "immediate variable counts");
}

/// An ibarrier, two iallreduces and an ibcast started in that order, with point-to-point
/// messages around a ring and a blocking all-reduce between them, waited for in reverse order.
fn in_flight_together(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for round in 0..20usize {
        let len = [3usize, 700, 40_000][round % 3];
        let a: Vec<u64> = (0..len).map(|i| ival(r, i + round)).collect();
        let b: Vec<u64> = (0..len).map(|i| ival(r + 17, i)).collect();
        let want_a: Vec<u64> = (0..len)
            .map(|i| fold(0..n, i, |k, i| ival(k, i + round)))
            .collect();
        let want_b: Vec<u64> = (0..len)
            .map(|i| (0..n).fold(0u64, |s, k| s.wrapping_add(ival(k + 17, i))))
            .collect();
        let root = round % n;
        let want_bcast: Vec<u8> = (0..len).map(|i| (i + root + round) as u8).collect();
        let mut bcast = if r == root {
            want_bcast.clone()
        } else {
            vec![0u8; len]
        };
        let (mut ga, mut gb) = (vec![0u64; len], vec![0u64; len]);
        let ring_out: Vec<u32> = (0..len).map(|i| elem(r, i)).collect();
        let mut ring_in = vec![0u32; len];
        let mut blocking = [0u64];
        request::scope(|s| -> Result<(), CommError> {
            let barrier = world.immediate_barrier()?;
            let next = world.process_at_rank(((r + 1) % n) as i32);
            let prev = world.process_at_rank(((r + n - 1) % n) as i32);
            let sent = next.immediate_send_with_tag(s, &ring_out[..], 5)?;
            let ra = world.immediate_all_reduce_into(s, &a, &mut ga, affine())?;
            world.all_reduce_into(&[r as u64], &mut blocking, SystemOperation::sum())?;
            let rb = world.immediate_all_reduce_into(s, &b, &mut gb, SystemOperation::sum())?;
            let received = prev.immediate_receive_into_with_tag(s, &mut ring_in[..], 5)?;
            let rc = world
                .process_at_rank(root as i32)
                .immediate_broadcast_into(s, &mut bcast)?;
            rc.wait()?;
            received.wait()?;
            rb.wait()?;
            ra.wait()?;
            sent.wait()?;
            barrier.wait()?;
            Ok(())
        })
        .map_err(|e| err(&format!("round {round}"), e))?;
        if ga != want_a || gb != want_b {
            return Err(format!("round {round}: an iallreduce of {len} differs"));
        }
        if bcast != want_bcast {
            return Err(format!("round {round}: the ibcast of {len} differs"));
        }
        let from = (r + n - 1) % n;
        if ring_in.iter().enumerate().any(|(i, &x)| x != elem(from, i)) {
            return Err(format!("round {round}: the ring message differs"));
        }
        if blocking[0] != (n * (n - 1) / 2) as u64 {
            return Err(format!("round {round}: the blocking all-reduce differs"));
        }
    }
    Ok(())
}

#[test]
fn several_in_flight_with_point_to_point_and_blocking_collectives_between() {
    let _dog = common::watchdog(
        "several_in_flight_with_point_to_point_and_blocking_collectives_between",
        300,
    );
    every_rank_count(in_flight_together, "in flight together");
    assert_all_ok(&run_job(5, "shm-copy", in_flight_together), "shm-copy");
}

/// Nonblocking collectives on the world, a duplicate of it and a split of it, interleaved.
fn two_communicators(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let dup = world.duplicate().map_err(|e| err("duplicate", e))?;
    let half = world
        .split_by_color(Color::with_value((r % 2) as i32))
        .map_err(|e| err("split", e))?
        .ok_or("no half")?;
    let (hn, hr) = (half.size() as usize, half.rank() as usize);
    for len in [1usize, 5000] {
        let mine: Vec<u64> = (0..len).map(|i| ival(r, i)).collect();
        let mut on_world = vec![0u64; len];
        let mut on_dup = vec![0u64; len];
        let mut on_half = vec![0u64; len];
        let mut scanned = vec![0u64; len];
        request::scope(|s| -> Result<(), CommError> {
            let w = world.immediate_all_reduce_into(s, &mine, &mut on_world, affine())?;
            let d = dup.immediate_all_reduce_into(s, &mine, &mut on_dup, SystemOperation::max())?;
            let h = half.immediate_all_reduce_into(s, &mine, &mut on_half, affine())?;
            let sc = dup.immediate_scan_into(s, &mine, &mut scanned, affine())?;
            h.wait()?;
            d.wait()?;
            sc.wait()?;
            w.wait()?;
            Ok(())
        })
        .map_err(|e| err(&format!("two communicators, {len}"), e))?;
        let members: Vec<usize> = (0..n).filter(|k| k % 2 == r % 2).collect();
        for i in 0..len {
            let max = (0..n).map(|k| ival(k, i)).max().unwrap_or(0);
            let half_fold = members[1..]
                .iter()
                .fold(ival(members[0], i), |a, &k| compose(a, ival(k, i)));
            if on_world[i] != fold(0..n, i, ival)
                || on_dup[i] != max
                || on_half[i] != half_fold
                || scanned[i] != fold(0..r + 1, i, ival)
            {
                return Err(format!("two communicators, {len}: element {i} differs"));
            }
        }
        if members.len() != hn || members[hr] != r {
            return Err("the split is not the one expected".into());
        }
    }
    Ok(())
}

#[test]
fn two_communicators_at_once() {
    let _dog = common::watchdog("two_communicators_at_once", 200);
    for n in [1, 2, 3, 6] {
        assert_all_ok(
            &run_job(n, "auto", two_communicators),
            &format!("{n} ranks"),
        );
    }
}

/// A freed all-reduce still completes: in a scope (which waits for it at its end), and in the
/// static scope, where only later calls into the runtime move it on.
fn freed(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    for len in [4usize, 30_000] {
        let mine: Vec<u64> = (0..len).map(|i| ival(r, i)).collect();
        let want: Vec<u64> = (0..len).map(|i| fold(0..n, i, ival)).collect();
        let mut got = vec![0u64; len];
        request::scope(|s| -> Result<(), CommError> {
            world
                .immediate_all_reduce_into(s, &mine, &mut got, affine())?
                .free();
            world.barrier()
        })
        .map_err(|e| err("freed in a scope", e))?;
        if got != want {
            return Err(format!("a freed iallreduce of {len} in a scope differs"));
        }
        let target: &'static mut [u64] = Box::leak(vec![0u64; len].into_boxed_slice());
        let at = target.as_ptr();
        world
            .immediate_all_reduce_into(StaticScope, leak(mine), target, affine())
            .map_err(|e| err("freed", e))?
            .free();
        // Blocking collectives move it on until it is done everywhere.
        let mut done = false;
        for _ in 0..10_000 {
            // SAFETY: the runtime writes the buffer only inside calls into it; this read is
            // between them, and the buffer is leaked, so it stays valid.
            let now: Vec<u64> = (0..len)
                .map(|i| unsafe { std::ptr::read_volatile(at.add(i)) })
                .collect();
            let mut everywhere = [0u8];
            world
                .all_reduce_into(
                    &[(now == want) as u8],
                    &mut everywhere,
                    SystemOperation::min(),
                )
                .map_err(|e| err("all_reduce", e))?;
            if everywhere[0] == 1 {
                done = true;
                break;
            }
        }
        if !done {
            return Err(format!("a freed iallreduce of {len} never completed"));
        }
    }
    Ok(())
}

#[test]
fn a_freed_request_still_completes() {
    let _dog = common::watchdog("a_freed_request_still_completes", 200);
    for n in [1, 2, 3, 5] {
        assert_all_ok(&run_job(n, "auto", freed), &format!("{n} ranks"));
    }
}

/// wait_all, wait_any and test_all over point-to-point and collective requests together.
fn mixed_completion(world: &World) -> Result<(), String> {
    let (n, r) = (world.size() as usize, world.rank() as usize);
    let next = world.process_at_rank(((r + 1) % n) as i32);
    let prev = world.process_at_rank(((r + n - 1) % n) as i32);
    let len = 50_000;
    let out: Vec<u32> = (0..len).map(|i| elem(r, i)).collect();
    let mut inn = vec![0u32; len];
    let mine: Vec<u64> = (0..len).map(|i| ival(r, i)).collect();
    let mut reduced = vec![0u64; len];
    let mut bcast = vec![r as u32; 9];
    request::scope(|s| -> Result<(), CommError> {
        let mut reqs = [
            Some(prev.immediate_receive_into(s, &mut inn[..])?),
            Some(world.immediate_all_reduce_into(s, &mine, &mut reduced, affine())?),
            Some(next.immediate_send(s, &out[..])?),
            Some(
                world
                    .process_at_rank(0)
                    .immediate_broadcast_into(s, &mut bcast)?,
            ),
        ];
        for res in request::wait_all(&mut reqs) {
            res?;
        }
        Ok(())
    })
    .map_err(|e| err("wait_all", e))?;
    let from = (r + n - 1) % n;
    if inn.iter().enumerate().any(|(i, &x)| x != elem(from, i)) {
        return Err("the point-to-point message differs".into());
    }
    if reduced
        .iter()
        .enumerate()
        .any(|(i, &x)| x != fold(0..n, i, ival))
    {
        return Err("the iallreduce under wait_all differs".into());
    }
    if bcast != [0; 9] {
        return Err("the ibcast under wait_all differs".into());
    }
    // Barriers and sends of static buffers, completed by wait_any, then test_all.
    let data: &'static [u32] = Box::leak(vec![r as u32; 8].into_boxed_slice());
    let mut reqs = vec![
        Some(world.immediate_barrier().map_err(|e| err("ibarrier", e))?),
        Some(
            next.immediate_send(StaticScope, data)
                .map_err(|e| err("send", e))?,
        ),
        Some(world.immediate_barrier().map_err(|e| err("ibarrier", e))?),
    ];
    let mut finished = 0;
    while let Some((_, res)) = request::wait_any(&mut reqs) {
        res.map_err(|e| err("wait_any", e))?;
        finished += 1;
    }
    let mut got = [0u32; 8];
    prev.receive_into(&mut got[..])
        .map_err(|e| err("receive", e))?;
    if finished != 3 || got != [from as u32; 8] {
        return Err(format!("wait_any finished {finished} of 3"));
    }
    let mut reqs = vec![Some(
        world.immediate_barrier().map_err(|e| err("ibarrier", e))?,
    )];
    loop {
        if let Some(results) = request::test_all(&mut reqs) {
            for res in results {
                res.map_err(|e| err("test_all", e))?;
            }
            break;
        }
    }
    Ok(())
}

#[test]
fn wait_all_completes_point_to_point_and_collective_requests_together() {
    let _dog = common::watchdog(
        "wait_all_completes_point_to_point_and_collective_requests_together",
        200,
    );
    for n in [1, 2, 3, 4, 7] {
        assert_all_ok(&run_job(n, "auto", mixed_completion), &format!("{n} ranks"));
    }
}

/// Rank 2 leaves at once; the others' all-reduce must end with an error, on rank 0 completed
/// by `test`, on rank 1 by `wait`. (Rank 1 fails first, for want of rank 2, and exits; rank 0
/// then fails for want of rank 1.)
fn peer_leaves(world: &World) -> Result<(), String> {
    let r = world.rank();
    // Every rank has joined once this returns.
    world.barrier().map_err(|e| err("barrier", e))?;
    if r == 2 {
        return Ok(());
    }
    let mine = vec![1u64; 1000];
    let mut got = vec![0u64; 1000];
    let result = request::scope(|s| {
        let mut req =
            world.immediate_all_reduce_into(s, &mine, &mut got, SystemOperation::sum())?;
        if r == 1 {
            return req.wait();
        }
        loop {
            match req.test() {
                Ok(result) => return result,
                Err(again) => req = again,
            }
        }
    });
    match result {
        Err(e) => Err(format!("failed as expected: {e}")),
        other => Err(format!("UNEXPECTED: {other:?}")),
    }
}

/// Three ranks in an endless loop of nonblocking collectives, small and large, completed by
/// wait, test and wait_all; one is killed.
fn endless(world: &World) -> Result<(), String> {
    let n = world.size() as usize;
    for round in 0usize.. {
        let len = if round % 2 == 0 { 16 } else { 300_000 };
        let mine = vec![world.rank() as f64; len];
        let mut sum = vec![0.0f64; len];
        let mut b = vec![round as u8; len];
        request::scope(|s| -> Result<(), CommError> {
            let bar = world.immediate_barrier()?;
            let red =
                world.immediate_all_reduce_into(s, &mine, &mut sum, SystemOperation::sum())?;
            let bc = world
                .process_at_rank(0)
                .immediate_broadcast_into(s, &mut b)?;
            let mut reqs = [Some(red), Some(bc)];
            for res in request::wait_all(&mut reqs) {
                res?;
            }
            let mut bar = bar;
            loop {
                match bar.test() {
                    Ok(res) => return res.map(|_| ()),
                    Err(again) => bar = again,
                }
            }
        })
        .map_err(|e| e.to_string())?;
        let expected: f64 = (0..n).map(|r| r as f64).sum();
        if sum.iter().any(|&x| x != expected) {
            return Err("WRONG BYTES in an iallreduce".into());
        }
    }
    Ok(())
}

#[test]
fn a_peer_that_exits_mid_collective_ends_the_request_with_an_error() {
    let _dog = common::watchdog(
        "a_peer_that_exits_mid_collective_ends_the_request_with_an_error",
        120,
    );
    let outcomes = run_job(3, "auto", peer_leaves);
    assert!(outcomes[2].is_none(), "rank 2: {:?}", outcomes[2]);
    for (rank, o) in outcomes.iter().enumerate().take(2) {
        let e = o.as_deref().unwrap_or("ended well");
        assert!(
            e.starts_with("failed as expected") && e.contains("has exited"),
            "rank {rank}: {e}"
        );
    }
    kills(&[(1, 40), (0, 90)]);
}

/// A rank killed while the others run nonblocking collectives in a loop: theirs end with an
/// error within seconds.
fn kills(cases: &[(usize, u64)]) {
    for transport in ["auto", "cma-read"] {
        for &(victim, after) in cases {
            let what = format!("{transport}, rank {victim} killed after {after} ms");
            let start = std::time::Instant::now();
            let job = common::start_job(3, transport, |_| true, endless);
            std::thread::sleep(Duration::from_millis(after));
            // SAFETY: kill with a pid we forked and have not reaped yet.
            unsafe { libc::kill(job.pid(victim), libc::SIGKILL) };
            let outcomes = job.wait(Duration::from_secs(20));
            for (rank, (exit, text)) in outcomes.iter().enumerate() {
                if rank == victim {
                    assert!(
                        matches!(exit, Some(onecopy::child::Exit::Signal(9))),
                        "{what}: victim {exit:?}"
                    );
                    continue;
                }
                let text = text.as_deref().unwrap_or("");
                assert!(
                    matches!(exit, Some(onecopy::child::Exit::Code(1))) && !text.contains("WRONG"),
                    "{what}: rank {rank} ended {exit:?}: {text}"
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{what}: took {:?}",
                start.elapsed()
            );
        }
    }
}

/// Rank 1's all-reduce is one element longer, or rank 1 issues a barrier where rank 0 issues
/// a broadcast: errors, not hangs.
fn mismatched(world: &World) -> Result<(), String> {
    let r = world.rank();
    let len = 4 + r as usize;
    let mine = vec![1u64; len];
    let mut got = vec![0u64; len];
    let lengths = request::scope(|s| {
        world
            .immediate_all_reduce_into(s, &mine, &mut got, SystemOperation::sum())?
            .wait()
    });
    let kinds = if r == 0 {
        let mut b = [1u8; 8];
        request::scope(|s| {
            world
                .process_at_rank(0)
                .immediate_broadcast_into(s, &mut b)?
                .wait()
        })
    } else {
        world.immediate_barrier().and_then(|b| b.wait())
    };
    Err(format!("lengths: {lengths:?}; kinds: {kinds:?}"))
}

#[test]
fn mismatched_lengths_and_collectives_are_errors_not_hangs() {
    let _dog = common::watchdog(
        "mismatched_lengths_and_collectives_are_errors_not_hangs",
        60,
    );
    let outcomes = run_job(2, "auto", mismatched);
    for (rank, o) in outcomes.iter().enumerate() {
        let text = o.as_deref().unwrap_or("");
        assert!(text.starts_with("lengths: Err("), "rank {rank}: {text}");
    }
    let rank1 = outcomes[1].as_deref().unwrap_or("");
    assert!(
        rank1.contains("kinds: Err(Mismatch") && rank1.contains("a nonblocking broadcast"),
        "rank 1: {rank1}"
    );
}

fn on_an_intercommunicator(world: &World) -> Result<(), String> {
    let r = world.rank();
    let mine = world
        .split_by_color(Color::with_value(r % 2))
        .map_err(|e| err("split", e))?
        .ok_or("no half")?;
    let inter = InterCommunicator::create(&mine, 0, world, 1 - r % 2, 77)
        .map_err(|e| err("intercomm", e))?;
    match inter.immediate_barrier() {
        Err(CommError::InvalidArgument(what)) if what.contains("not supported yet") => Ok(()),
        other => Err(format!(
            "immediate_barrier on an intercommunicator: {other:?}"
        )),
    }
}

#[test]
fn intercommunicators_are_refused_for_now() {
    let _dog = common::watchdog("intercommunicators_are_refused_for_now", 60);
    assert_all_ok(&run_job(2, "auto", on_an_intercommunicator), "2 ranks");
}

#[test]
fn bench_iallreduce_reports_four_numbers_per_size() {
    let _dog = common::watchdog("bench_iallreduce_reports_four_numbers_per_size", 120);
    use onecopy::bench::{Progress, overlap};
    let options = overlap::Options {
        ranks: 2,
        sizes: vec![8, 4096],
        budget: Duration::from_millis(2),
        probes: 3,
        ..Default::default()
    };
    let records = overlap::run(&options, &Progress::new(2, "test")).expect("bench iallreduce");
    assert_eq!(records.len(), 8, "{records:?}");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.bench, overlap::NAMES[i % 4], "{r:?}");
        assert!(r.value.is_finite() && r.value >= 0.0, "{r:?}");
    }
    let overlap = &records[3];
    assert!(overlap.unit == "%" && overlap.value <= 100.0, "{overlap:?}");
}

/// The last rank of three killed 150 ms into the loop. A known defect, not fixed yet: rank 0's
/// broadcast fails (its send to rank 2 cannot finish) and abandons its streamed send to rank
/// 1, which then waits for those bytes from a live rank 0 while rank 0 waits for rank 1's
/// all-reduce. Without a launcher nothing ends them (`onecopy run` stops every rank at the
/// first death). With 64 eager slots a pair it did not happen in 20 runs; with 4
/// (`ONECOPY_EAGER_SLOTS=4 ONECOPY_CMA_THRESHOLD=1073741824`) in 6 of 16.
#[test]
#[ignore = "known defect: a collective failed on one rank can leave a live peer waiting for its abandoned send"]
fn killing_the_last_rank_mid_collective_ends_the_others() {
    let _dog = common::watchdog("killing_the_last_rank_mid_collective_ends_the_others", 120);
    kills(&[(2, 150)]);
}
