//! Communicators and groups on 1 to 8 ranks: splits (several colors, undefined, keys that
//! reverse the order, nested), dup of dup, compare, groups against the world's ranks, creation
//! from groups, isolation (a duplicate's messages never reach its parent, collectives on
//! overlapping communicators interleaved), intercommunicators (point to point, every
//! collective, merge), and context ids: running out is a clear error, and freed ids come back
//! without a freed communicator's messages reaching a new one.

mod common;

use common::{assert_all_ok, run_job, watchdog};

use onecopy::World;
use onecopy::collective::SystemOperation;
use onecopy::comm::CommError;
use onecopy::topology::{
    Color, CommunicatorRelation, GroupRelation, InterCommunicator, MergeOrder, PROC_NULL, ROOT,
    SimpleCommunicator,
};
use onecopy::traits::*;

fn err(what: &str) -> impl Fn(CommError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Every rank's `x`, summed over `comm`.
fn sum(comm: &SimpleCommunicator, x: i64) -> Result<i64, String> {
    let mut out = [0i64];
    comm.all_reduce_into(&[x], &mut out, SystemOperation::sum())
        .map_err(err("all-reduce"))?;
    Ok(out[0])
}

/// The world ranks of `comm`'s members in its rank order, as every member sees them.
fn members(comm: &SimpleCommunicator, world_rank: i32) -> Result<Vec<i32>, String> {
    let mut all = vec![0i32; comm.size() as usize];
    comm.all_gather_into(&[world_rank], &mut all)
        .map_err(err("all-gather"))?;
    Ok(all)
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn every_rank_count(body: fn(&World) -> Result<(), String>, what: &str) {
    for n in 1..=8 {
        assert_all_ok(&run_job(n, "auto", body), &format!("{what}, {n} ranks"));
    }
}

/// Splits by rank % 3 with rank 5 left out and keys that reverse the order; then a nested split
/// of each part, a dup of a dup, and compare.
fn splits(world: &World) -> Result<(), String> {
    let r = world.rank();
    let color = if r == 5 {
        Color::undefined()
    } else {
        Color::with_value(r % 3)
    };
    let part = world
        .split_by_color_with_key(color, -r)
        .map_err(err("split"))?;
    match &part {
        None => check(r == 5, || format!("rank {r} got no communicator"))?,
        Some(part) => {
            check(r != 5, || "rank 5 (undefined) got a communicator".into())?;
            check_part(world, part)?;
        }
    }
    world_splits(world)
}

/// The checks of one part of [`splits`].
fn check_part(world: &World, part: &SimpleCommunicator) -> Result<(), String> {
    let (n, r) = (world.size(), world.rank());
    // The members: same color, highest rank first (the keys reverse the order).
    let mut expect: Vec<i32> = (0..n).filter(|&x| x != 5 && x % 3 == r % 3).collect();
    expect.reverse();
    check(part.size() as usize == expect.len(), || {
        format!("size {} for {expect:?}", part.size())
    })?;
    check(expect.get(part.rank() as usize) == Some(&r), || {
        format!("rank {} in {expect:?}", part.rank())
    })?;
    check(members(part, r)? == expect, || "members differ".into())?;
    check(
        sum(part, r as i64)? == expect.iter().map(|&x| x as i64).sum::<i64>(),
        || "part sum".into(),
    )?;
    // Its group, translated back to the world.
    let ranks: Vec<i32> = (0..part.size()).collect();
    let in_world = part.group().translate_ranks(&ranks, &world.group());
    check(
        in_world == expect.iter().map(|&x| Some(x)).collect::<Vec<_>>(),
        || format!("translated {in_world:?}"),
    )?;
    // A nested split: every part splits again by its own rank's parity.
    let nested = part
        .split_by_color(Color::with_value(part.rank() % 2))
        .map_err(err("nested split"))?
        .ok_or("nested split left a rank out")?;
    let nested_expect: Vec<i32> = expect
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == part.rank() as usize % 2)
        .map(|(_, &x)| x)
        .collect();
    check(members(&nested, r)? == nested_expect, || {
        "nested members".into()
    })?;
    // Dup of dup: same group, new contexts.
    let dup = part.duplicate().map_err(err("dup"))?;
    let dup2 = dup.duplicate().map_err(err("dup of dup"))?;
    check(members(&dup2, r)? == expect, || "dup of dup members".into())?;
    check(
        dup2.compare(&part) == CommunicatorRelation::Congruent,
        || format!("dup compares {:?}", dup2.compare(&part)),
    )?;
    check(
        part.compare(&part) == CommunicatorRelation::Identical,
        || "not identical to itself".into(),
    )?;
    check(
        part.compare(&part.clone()) == CommunicatorRelation::Identical,
        || "a clone is another communicator".into(),
    )?;
    if n > 3 {
        check(part.compare(world) == CommunicatorRelation::Unequal, || {
            "a part compares equal to the world".into()
        })?;
    }
    // Names: a new one's is empty until set.
    check(dup.get_name().is_empty(), || dup.get_name())?;
    dup.set_name("halo");
    check(dup.get_name() == "halo", || dup.get_name())
}

/// The world-wide checks of [`splits`], on every rank.
fn world_splits(world: &World) -> Result<(), String> {
    let (n, r) = (world.size(), world.rank());
    // The world split with one color and reversed keys: the same ranks in another order.
    let reversed = world
        .split_by_color_with_key(Color::with_value(0), -r)
        .map_err(err("reversed split"))?
        .ok_or("reversed split left a rank out")?;
    let relation = reversed.compare(world);
    let want = if n == 1 {
        CommunicatorRelation::Congruent
    } else {
        CommunicatorRelation::Similar
    };
    check(relation == want, || {
        format!("reversed world compares {relation:?}")
    })?;
    check(
        reversed.group().compare(&world.group())
            == if n == 1 {
                GroupRelation::Identical
            } else {
                GroupRelation::Similar
            },
        || "reversed group".into(),
    )?;
    // split_shared: one node, so every rank, ordered by key.
    let shared = world.split_shared(n - r).map_err(err("split_shared"))?;
    check(shared.size() == n && shared.rank() == n - 1 - r, || {
        format!("shared split {}/{}", shared.rank(), shared.size())
    })?;
    check(world.get_name() == "MPI_COMM_WORLD", || world.get_name())?;
    world.barrier().map_err(err("barrier"))
}

#[test]
fn splits_dups_and_compare_on_1_to_8_ranks() {
    let _dog = watchdog("splits_dups_and_compare_on_1_to_8_ranks", 300);
    every_rank_count(splits, "splits");
}

/// Groups from the world: include, exclude, ranges, set operations, and communicators made from
/// them, collectively and by the members alone.
fn groups(world: &World) -> Result<(), String> {
    let (n, r) = (world.size(), world.rank());
    let all = world.group();
    check(all.size() == n && all.rank() == Some(r), || {
        "world group".into()
    })?;
    let evens: Vec<i32> = (0..n).step_by(2).collect();
    let even = all.include(&evens).map_err(err("include"))?;
    let odd = all.exclude(&evens).map_err(err("exclude"))?;
    check(
        even.union(&odd).compare(&all) == GroupRelation::Similar || n <= 2,
        || "evens then odds".into(),
    )?;
    check(even.intersection(&odd).size() == 0, || {
        "evens and odds overlap".into()
    })?;
    check(
        all.difference(&odd).compare(&even) == GroupRelation::Identical,
        || "difference".into(),
    )?;
    let ranged = all
        .range_include(&[(0, n - 1, 2)])
        .map_err(err("range include"))?;
    check(ranged.compare(&even) == GroupRelation::Identical, || {
        "range include".into()
    })?;
    check(
        even.rank() == if r % 2 == 0 { Some(r / 2) } else { None },
        || "rank in the even group".into(),
    )?;
    // A communicator of the evens, made by everyone.
    let made = world
        .split_by_subgroup_collective(&even)
        .map_err(err("create"))?;
    match (&made, r % 2) {
        (Some(c), 0) => check(
            sum(c, r as i64)? == evens.iter().map(|&x| x as i64).sum::<i64>(),
            || "evens sum".into(),
        )?,
        (None, 1) => {}
        _ => return Err(format!("rank {r}: the evens' communicator is wrong")),
    }
    // A communicator of the odds, made by the odds alone.
    if r % 2 == 1 {
        let by_odds = world
            .split_by_subgroup(&odd)
            .map_err(err("create_group"))?
            .ok_or("create_group left a member out")?;
        let odds: Vec<i32> = (0..n).filter(|x| x % 2 == 1).collect();
        check(members(&by_odds, r)? == odds, || "odds members".into())?;
    }
    // Bad input.
    check(
        all.include(&[n]).is_err() && all.include(&[0, 0]).is_err(),
        || "bad include accepted".into(),
    )?;
    check(world.split_by_color(Color::with_value(-4)).is_err(), || {
        "a negative color accepted".into()
    })?;
    world.barrier().map_err(err("barrier"))
}

#[test]
fn groups_and_communicators_made_from_them_on_1_to_8_ranks() {
    let _dog = watchdog(
        "groups_and_communicators_made_from_them_on_1_to_8_ranks",
        300,
    );
    every_rank_count(groups, "groups");
}

/// A message on a duplicate is never received on its parent, any tag and any source
/// included; collectives on two overlapping communicators, interleaved, never mix.
fn isolation(world: &World) -> Result<(), String> {
    let (n, r) = (world.size(), world.rank());
    let dup = world.duplicate().map_err(err("dup"))?;
    if n >= 2 {
        if r == 0 {
            dup.process_at_rank(1)
                .send_with_tag(&[111u32], 5)
                .map_err(err("send on dup"))?;
            world
                .process_at_rank(1)
                .send_with_tag(&[222u32], 5)
                .map_err(err("send on world"))?;
        } else if r == 1 {
            let mut x = [0u32];
            world
                .any_process()
                .receive_into(&mut x)
                .map_err(err("any receive on world"))?;
            check(x[0] == 222, || format!("the world's receive got {}", x[0]))?;
            check(
                world
                    .any_process()
                    .immediate_probe()
                    .map_err(err("probe"))?
                    .is_none(),
                || "the dup's message is visible on the world".into(),
            )?;
            dup.any_process()
                .receive_into(&mut x)
                .map_err(err("receive on dup"))?;
            check(x[0] == 111, || format!("the dup's receive got {}", x[0]))?;
        }
    }
    // Two overlapping communicators: the world, and the lower half (or all, for 1 rank).
    let low = world
        .split_by_color(if r < (n + 1) / 2 {
            Color::with_value(0)
        } else {
            Color::undefined()
        })
        .map_err(err("split"))?;
    for round in 0..50i64 {
        let w = sum(world, r as i64 + round)?;
        check(w == (0..n as i64).map(|x| x + round).sum::<i64>(), || {
            format!("world sum in round {round}")
        })?;
        if let Some(low) = &low {
            let mut b = [if low.rank() == 0 { round * 7 } else { -1 }];
            low.process_at_rank(0)
                .broadcast_into(&mut b)
                .map_err(err("low broadcast"))?;
            check(b[0] == round * 7, || format!("low broadcast got {}", b[0]))?;
            let l = sum(low, 1)?;
            check(l == low.size() as i64, || "low sum".into())?;
        }
        dup.barrier().map_err(err("dup barrier"))?;
    }
    Ok(())
}

#[test]
fn communicators_never_mix_messages_or_collectives() {
    let _dog = watchdog("communicators_never_mix_messages_or_collectives", 300);
    every_rank_count(isolation, "isolation");
}

/// The world cut into the even and the odd ranks, joined by an intercommunicator.
fn intercomm(world: &World) -> Result<(InterCommunicator, bool), String> {
    let r = world.rank();
    let even = r % 2 == 0;
    let mine = world
        .split_by_color(Color::with_value(r % 2))
        .map_err(err("split"))?
        .ok_or("split left a rank out")?;
    // Leaders: world rank 0 for the evens, world rank 1 for the odds.
    let remote_leader = if even { 1 } else { 0 };
    let inter = InterCommunicator::create(&mine, 0, world, remote_leader, 77)
        .map_err(err("intercomm create"))?;
    Ok((inter, even))
}

fn intercommunicators(world: &World) -> Result<(), String> {
    let (n, r) = (world.size(), world.rank());
    let (inter, even) = intercomm(world)?;
    let evens = (n + 1) / 2;
    let odds = n / 2;
    let (local, remote) = if even { (evens, odds) } else { (odds, evens) };
    check(
        inter.size() == local && inter.remote_size() == remote && inter.test_inter(),
        || format!("sizes {} {}", inter.size(), inter.remote_size()),
    )?;
    check(inter.rank() == r / 2, || {
        format!("local rank {}", inter.rank())
    })?;
    let other: Vec<i32> = (0..n).filter(|x| x % 2 != r % 2).collect();
    let in_world = inter
        .remote_group()
        .translate_ranks(&(0..remote).collect::<Vec<_>>(), &world.group());
    check(
        in_world == other.iter().map(|&x| Some(x)).collect::<Vec<_>>(),
        || format!("remote group {in_world:?}"),
    )?;

    // Point to point: local rank i sends to remote rank i % remote; everyone receives from
    // any remote rank what the other side sends it.
    let me = inter.rank();
    let dest = me % remote;
    inter
        .process_at_rank(dest)
        .send_with_tag(&[r], 3)
        .map_err(err("send across"))?;
    let senders: Vec<i32> = (0..local.max(remote))
        .filter(|&i| i < remote && i % local == me)
        .collect();
    for _ in &senders {
        let mut x = [-1i32];
        let s = inter
            .any_process()
            .receive_into_with_tag(&mut x, 3)
            .map_err(err("receive across"))?;
        check(other[s.source_rank() as usize] == x[0], || {
            format!(
                "from remote rank {} came world rank {}",
                s.source_rank(),
                x[0]
            )
        })?;
    }

    // Barrier across both groups.
    inter.barrier().map_err(err("barrier"))?;

    // Broadcast from world rank 0 (local rank 0 of the evens) to the odds.
    let mut b = [0i64; 3];
    if even {
        let root = if me == 0 { ROOT } else { PROC_NULL };
        if me == 0 {
            b = [5, 6, 7];
        }
        inter
            .process_at_rank(root)
            .broadcast_into(&mut b)
            .map_err(err("broadcast at the root's side"))?;
    } else {
        inter
            .process_at_rank(0)
            .broadcast_into(&mut b)
            .map_err(err("broadcast"))?;
        check(b == [5, 6, 7], || format!("broadcast got {b:?}"))?;
    }

    // Reduce: the odds' world ranks summed at the evens' rank 0.
    let odd_sum: i64 = (0..n as i64).filter(|x| x % 2 == 1).sum();
    let even_sum: i64 = (0..n as i64).filter(|x| x % 2 == 0).sum();
    if even {
        let root = if me == 0 { ROOT } else { PROC_NULL };
        let mut out = [0i64];
        inter
            .process_at_rank(root)
            .reduce_into_root(&[], &mut out, SystemOperation::sum())
            .map_err(err("reduce at the root"))?;
        if me == 0 {
            check(out[0] == odd_sum, || format!("reduce got {}", out[0]))?;
        }
    } else {
        inter
            .process_at_rank(0)
            .reduce_into(&[r as i64], SystemOperation::sum())
            .map_err(err("reduce"))?;
    }

    // All-reduce: each side gets the other's sum.
    let mut all = [0i64];
    inter
        .all_reduce_into(&[r as i64], &mut all, SystemOperation::sum())
        .map_err(err("all-reduce"))?;
    let want = if even { odd_sum } else { even_sum };
    check(all[0] == want, || {
        format!("all-reduce got {}, not {want}", all[0])
    })?;

    // All-gather and all-to-all: the other side's values in its rank order.
    let mut gathered = vec![0i32; remote as usize];
    inter
        .all_gather_into(&[r], &mut gathered)
        .map_err(err("all-gather"))?;
    check(gathered == other, || format!("all-gather got {gathered:?}"))?;
    let out: Vec<i32> = (0..remote).map(|j| r * 100 + j).collect();
    let mut inn = vec![0i32; remote as usize];
    inter
        .all_to_all_into(&out, &mut inn)
        .map_err(err("all-to-all"))?;
    let expect: Vec<i32> = other.iter().map(|&w| w * 100 + me).collect();
    check(inn == expect, || {
        format!("all-to-all got {inn:?}, not {expect:?}")
    })?;

    // Gather to and scatter from the odds' rank 0 (world rank 1).
    if even {
        inter
            .process_at_rank(0)
            .gather_into(&[r * 2])
            .map_err(err("gather"))?;
        let mut got = [0i32];
        inter
            .process_at_rank(0)
            .scatter_into(&mut got)
            .map_err(err("scatter"))?;
        check(got[0] == 1000 + me, || format!("scatter got {}", got[0]))?;
    } else {
        let root = if me == 0 { ROOT } else { PROC_NULL };
        let mut got = vec![0i32; if me == 0 { remote as usize } else { 0 }];
        inter
            .process_at_rank(root)
            .gather_into_root(&[0i32; 0], &mut got)
            .map_err(err("gather at the root"))?;
        if me == 0 {
            let expect: Vec<i32> = other.iter().map(|&w| w * 2).collect();
            check(got == expect, || format!("gather got {got:?}"))?;
        }
        let send: Vec<i32> = (0..remote).map(|j| 1000 + j).collect();
        inter
            .process_at_rank(root)
            .scatter_into_root(if me == 0 { &send[..] } else { &[] }, &mut [0i32; 0])
            .map_err(err("scatter at the root"))?;
    }

    // A duplicate of the intercommunicator works alike.
    let dup = inter.duplicate().map_err(err("intercomm dup"))?;
    check(dup.test_inter() && dup.target_size() == remote, || {
        "dup".into()
    })?;
    let dup = dup
        .into_inter()
        .ok_or("the dup is not an intercommunicator")?;
    let mut again = [0i64];
    dup.all_reduce_into(&[1], &mut again, SystemOperation::sum())
        .map_err(err("dup all-reduce"))?;
    check(again[0] == remote as i64, || "dup all-reduce".into())?;

    // Merge: the odds first (the evens say High).
    let order = if even {
        MergeOrder::High
    } else {
        MergeOrder::Low
    };
    let merged = inter.merge(order).map_err(err("merge"))?;
    let expect: Vec<i32> = (0..n)
        .filter(|x| x % 2 == 1)
        .chain((0..n).filter(|x| x % 2 == 0))
        .collect();
    check(members(&merged, r)? == expect, || "merged order".into())?;
    check(!merged.test_inter() && merged.size() == n, || {
        "merged size".into()
    })?;
    check(
        sum(&merged, r as i64)? == (0..n as i64).sum::<i64>(),
        || "merged sum".into(),
    )
}

#[test]
fn intercommunicators_point_to_point_collectives_and_merge_on_2_to_8_ranks() {
    let _dog = watchdog(
        "intercommunicators_point_to_point_collectives_and_merge_on_2_to_8_ranks",
        300,
    );
    for n in 2..=8 {
        assert_all_ok(
            &run_job(n, "auto", intercommunicators),
            &format!("intercommunicators, {n} ranks"),
        );
    }
}

/// Duplicates kept alive until the ids run out: every rank gets the same clear error at the
/// same count; freed, the ids come back.
fn exhaustion(world: &World) -> Result<(), String> {
    let mut kept = Vec::new();
    let limit = onecopy::topology::MAX_COMMUNICATORS;
    loop {
        match world.duplicate() {
            Ok(c) => kept.push(c),
            Err(CommError::ContextsExhausted { limit: l }) => {
                check(l == limit, || format!("limit {l}"))?;
                break;
            }
            Err(e) => return Err(format!("after {} duplicates: {e}", kept.len())),
        }
        check(kept.len() < limit, || "more communicators than ids".into())?;
    }
    // The world and this rank's own communicator hold two ids.
    check(kept.len() == limit - 2, || {
        format!("ran out after {}", kept.len())
    })?;
    let e = world.duplicate().expect_err("still exhausted");
    check(e.to_string().contains(&limit.to_string()), || e.to_string())?;
    // Freed, they come back.
    kept.clear();
    for _ in 0..3 * limit {
        let c = world.duplicate().map_err(err("dup after freeing"))?;
        drop(c);
    }
    let again = world.duplicate().map_err(err("dup"))?;
    check(sum(&again, 1)? == world.size() as i64, || {
        "sum on a reused id".into()
    })
}

#[test]
fn running_out_of_context_ids_is_a_clear_error_and_freed_ids_come_back() {
    let _dog = watchdog(
        "running_out_of_context_ids_is_a_clear_error_and_freed_ids_come_back",
        300,
    );
    for n in [1, 2, 3] {
        assert_all_ok(&run_job(n, "auto", exhaustion), &format!("{n} ranks"));
    }
}

/// Rank 0 sends on a duplicate that the last rank frees without receiving, then all make new
/// communicators (which reuse the id): the old message never reaches them. (With 4 ranks the
/// last one learns the new id from rank 2, not from rank 0, so rank 0's stale message may still
/// be on its way: it is dropped by its generation.)
fn freed_messages_stay_away(world: &World) -> Result<(), String> {
    let (n, r) = (world.size(), world.rank());
    let last = n - 1;
    for round in 0..20u64 {
        let dup = world.duplicate().map_err(err("dup"))?;
        if r == 0 {
            // Small and large, so that the eager and the rendezvous paths both go stale.
            dup.process_at_rank(last)
                .send_with_tag(&[round; 4], 9)
                .map_err(err("stale send"))?;
            let big = vec![round; 20_000];
            onecopy::request::scope(|scope| -> Result<(), String> {
                let sent = dup
                    .process_at_rank(last)
                    .immediate_send_with_tag(scope, &big, 9)
                    .map_err(err("stale large send"))?;
                drop(dup);
                world.barrier().map_err(err("barrier"))?;
                // Refused: the receiver freed the communicator without taking it.
                match sent.wait() {
                    Err(CommError::ReceiverRefused { .. }) => Ok(()),
                    other => Err(format!("the stale large send ended {other:?}")),
                }
            })?;
        } else {
            drop(dup);
            world.barrier().map_err(err("barrier"))?;
        }
        let fresh = world.duplicate().map_err(err("fresh dup"))?;
        if r == last {
            check(
                fresh
                    .any_process()
                    .immediate_probe()
                    .map_err(err("probe"))?
                    .is_none(),
                || format!("round {round}: a freed communicator's message reached a new one"),
            )?;
        }
        // Nobody sends on the new one before the last rank has looked.
        world.barrier().map_err(err("barrier"))?;
        // The new one works.
        let mut x = [0u64];
        if r == 0 {
            fresh
                .process_at_rank(last)
                .send_with_tag(&[round + 1000], 9)
                .map_err(err("fresh send"))?;
        } else if r == last {
            fresh
                .process_at_rank(0)
                .receive_into_with_tag(&mut x, 9)
                .map_err(err("fresh receive"))?;
            check(x[0] == round + 1000, || {
                format!("round {round}: got {}", x[0])
            })?;
        }
        world.barrier().map_err(err("barrier"))?;
    }
    Ok(())
}

#[test]
fn a_freed_communicators_messages_never_reach_a_new_one() {
    let _dog = watchdog("a_freed_communicators_messages_never_reach_a_new_one", 120);
    for t in ["auto", "shm-copy", "cma-read"] {
        for n in [2, 4] {
            assert_all_ok(
                &run_job(n, t, freed_messages_stay_away),
                &format!("{t}, {n} ranks"),
            );
        }
    }
}

/// `this_process`, `null_process`, and a rank outside the communicator.
fn processes(world: &World) -> Result<(), String> {
    check(world.this_process().rank() == world.rank(), || {
        "this_process".into()
    })?;
    check(world.null_process().is_null(), || "null_process".into())?;
    let bad = world.process_at_rank(world.size());
    check(
        matches!(bad.send(&[1u8]), Err(CommError::InvalidRank { .. })),
        || "a send outside the communicator".into(),
    )
}

#[test]
fn processes_of_a_communicator() {
    let _dog = watchdog("processes_of_a_communicator", 60);
    assert_all_ok(&run_job(2, "auto", processes), "processes");
}
