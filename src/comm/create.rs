//! Making communicators: duplicate, split, create from a group, intercommunicators and their
//! merge. Each agrees on a new context id ([`super::context`]) with the ranks that take part,
//! using a few small exchanges of its own in the parent's collective context (a gather to a
//! leader and a broadcast back), so that communicators are made with nothing above this layer.

use std::rc::Rc;

use super::CommError;
use super::communicator::{
    Color, CommCore, InterCommunicator, Key, MergeOrder, Rank, SimpleCommunicator, Tag, UNDEFINED,
};
use super::context::{self, ContextIds, Mask};
use super::engine::{RecvBuf, SendBuf, Want, Watch};
use super::group::{Group, Members};
use super::tags::AGREE;

/// Sends `data` to `rank` of `core` in `context` with `tag`, and returns once it may be reused.
fn send_blob(
    core: &CommCore,
    rank: Rank,
    context: u32,
    tag: Tag,
    data: &[u8],
) -> Result<(), CommError> {
    let dest = core.world_of(rank)?;
    let mut engine = core.rt.engine();
    let id = engine.post_send(dest, context, tag, SendBuf::of(data), false)?;
    engine.wait(id).map(|_| ())
}

/// Receives a message of any length from `rank` of `core` in `context` with `tag`.
fn receive_blob(core: &CommCore, rank: Rank, context: u32, tag: Tag) -> Result<Vec<u8>, CommError> {
    let source = core.world_of(rank)?;
    let want = Want {
        context,
        source: Some(source),
        tag: Some(tag),
    };
    let mut engine = core.rt.engine();
    let mut len = 0;
    engine.wait_until(Watch::Rank(source), |e| match e.probe(&want) {
        Some(s) => {
            len = s.count_bytes();
            true
        }
        None => false,
    })?;
    let mut data = vec![0u8; len];
    let id = engine.post_receive(want, RecvBuf::plain(data.as_mut_ptr(), len))?;
    let status = engine.wait(id)?;
    data.truncate(status.count_bytes());
    Ok(data)
}

/// Every rank's `mine`, at `root` (in rank order); `None` elsewhere.
fn gather(core: &CommCore, root: Rank, mine: &[u8]) -> Result<Option<Vec<Vec<u8>>>, CommError> {
    let ctx = core.coll_context();
    if core.rank() != root {
        send_blob(core, root, ctx, AGREE, mine)?;
        return Ok(None);
    }
    (0..core.size())
        .map(|r| {
            if r == root {
                Ok(mine.to_vec())
            } else {
                receive_blob(core, r, ctx, AGREE)
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `root`'s `data` on every rank (a binomial tree).
fn broadcast(core: &CommCore, root: Rank, data: Vec<u8>) -> Result<Vec<u8>, CommError> {
    let (n, ctx) = (core.size(), core.coll_context());
    let vr = (core.rank() - root + n) % n;
    let abs = |v: Rank| (v + root) % n;
    let mut data = data;
    let mut mask = 1;
    while mask < n {
        if vr & mask != 0 {
            data = receive_blob(core, abs(vr - mask), ctx, AGREE)?;
            break;
        }
        mask <<= 1;
    }
    mask >>= 1;
    while mask > 0 {
        if vr + mask < n {
            send_blob(core, abs(vr + mask), ctx, AGREE, &data)?;
        }
        mask >>= 1;
    }
    Ok(data)
}

fn mask_bytes(mask: &Mask) -> &[u8] {
    bytemuck::cast_slice(mask)
}

fn mask_of(bytes: &[u8]) -> Result<Mask, CommError> {
    let words: &[u64] = bytemuck::try_cast_slice(bytes)
        .ok()
        .filter(|w: &&[u64]| w.len() == context::WORDS)
        .ok_or_else(|| CommError::Config("a communicator id mask of the wrong size".into()))?;
    let mut mask = [0u64; context::WORDS];
    mask.copy_from_slice(words);
    Ok(mask)
}

/// The bitwise AND of every rank's free ids, at `root` (`None` elsewhere).
fn and_at(core: &CommCore, root: Rank) -> Result<Option<Mask>, CommError> {
    let mine = core.rt.free_ids()?;
    let Some(all) = gather(core, root, mask_bytes(&mine))? else {
        return Ok(None);
    };
    let mut and = [u64::MAX; context::WORDS];
    for bytes in all {
        and = context::and(&and, &mask_of(&bytes)?);
    }
    Ok(Some(and))
}

/// The lowest id of `mask`, or the error every rank then reports.
fn lowest(mask: &Mask) -> Result<u32, CommError> {
    ContextIds::lowest(mask).ok_or(CommError::ContextsExhausted {
        limit: context::MAX_COMMUNICATORS,
    })
}

/// An id free on every rank of intracommunicator `core`, agreed by all and taken here.
fn agree_id(core: &CommCore) -> Result<u32, CommError> {
    let at_root = and_at(core, 0)?;
    let chosen = match at_root {
        Some(mask) => lowest(&mask).map_or(u32::MAX, |id| id),
        None => 0,
    };
    let id = u32::from_le_bytes(
        broadcast(core, 0, chosen.to_le_bytes().to_vec())?
            .try_into()
            .map_err(|_| CommError::Config("a malformed communicator id".into()))?,
    );
    if id == u32::MAX {
        return Err(CommError::ContextsExhausted {
            limit: context::MAX_COMMUNICATORS,
        });
    }
    core.rt.contexts.borrow_mut().take(id);
    Ok(id)
}

/// World ranks, as bytes.
fn ranks_bytes(world: &[usize]) -> Vec<u8> {
    world
        .iter()
        .flat_map(|&w| (w as u64).to_le_bytes())
        .collect()
}

fn ranks_of(bytes: &[u8], world_size: usize) -> Result<Vec<usize>, CommError> {
    let bad = || CommError::Config("a malformed group in the making of a communicator".into());
    if !bytes.len().is_multiple_of(8) {
        return Err(bad());
    }
    bytes
        .chunks(8)
        .map(|c| {
            let w = u64::from_le_bytes(c.try_into().map_err(|_| bad())?) as usize;
            if w < world_size { Ok(w) } else { Err(bad()) }
        })
        .collect()
}

/// A new communicator of `world` ranks with id `id`.
fn make(core: &CommCore, id: u32, world: Vec<usize>) -> Result<SimpleCommunicator, CommError> {
    let members = Members::new(world, core.rt.world_size, core.rt.world_rank);
    let made = CommCore::new(core.rt.clone(), id, members, None, "")?;
    Ok(SimpleCommunicator::from_core(made))
}

fn intra_only(core: &CommCore, what: &str) -> Result<(), CommError> {
    if core.is_inter() {
        return Err(CommError::InvalidArgument(format!(
            "{what} of an intercommunicator is not supported; merge it first"
        )));
    }
    Ok(())
}

/// `MPI_Comm_dup`.
pub(crate) fn duplicate(core: &Rc<CommCore>) -> Result<SimpleCommunicator, CommError> {
    if core.is_inter() {
        return duplicate_inter(core);
    }
    let id = agree_id(core)?;
    make(core, id, core.local.world_ranks().to_vec())
}

/// `MPI_Comm_split`: one exchange carries every rank's color, key and free ids.
pub(crate) fn split(
    core: &Rc<CommCore>,
    color: Color,
    key: Key,
) -> Result<Option<SimpleCommunicator>, CommError> {
    intra_only(core, "a split")?;
    if color.value() < 0 && color.value() != UNDEFINED {
        return Err(CommError::InvalidArgument(format!(
            "split: color {} is negative (use Color::undefined to stay out)",
            color.value()
        )));
    }
    let mut mine = Vec::with_capacity(8 + 8 * context::WORDS);
    mine.extend(color.value().to_le_bytes());
    mine.extend(key.to_le_bytes());
    mine.extend(mask_bytes(&core.rt.free_ids()?));
    let answer = match gather(core, 0, &mine)? {
        Some(all) => {
            let mut and = [u64::MAX; context::WORDS];
            let mut pairs: Vec<u8> = Vec::with_capacity(8 * all.len());
            for blob in &all {
                if blob.len() != mine.len() {
                    return Err(CommError::Config("a malformed split request".into()));
                }
                pairs.extend(&blob[..8]);
                and = context::and(&and, &mask_of(&blob[8..])?);
            }
            let id = lowest(&and).map_or(u32::MAX, |id| id);
            let mut answer = id.to_le_bytes().to_vec();
            answer.extend(pairs);
            answer
        }
        None => Vec::new(),
    };
    let answer = broadcast(core, 0, answer)?;
    let n = core.size() as usize;
    if answer.len() != 4 + 8 * n {
        return Err(CommError::Config("a malformed split answer".into()));
    }
    let id = u32::from_le_bytes([answer[0], answer[1], answer[2], answer[3]]);
    if id == u32::MAX {
        return Err(CommError::ContextsExhausted {
            limit: context::MAX_COMMUNICATORS,
        });
    }
    if color.value() == UNDEFINED {
        return Ok(None);
    }
    core.rt.contexts.borrow_mut().take(id);
    let word = |i: usize| i32::from_le_bytes(answer[i..i + 4].try_into().unwrap_or_default());
    let mut same: Vec<(Key, Rank)> = (0..n)
        .filter(|&r| word(4 + 8 * r) == color.value())
        .map(|r| (word(8 + 8 * r), r as Rank))
        .collect();
    same.sort();
    let world = same
        .iter()
        .map(|&(_, r)| core.world_of(r))
        .collect::<Result<Vec<_>, _>>()?;
    make(core, id, world).map(Some)
}

/// The members of `group` as world ranks, checked to be ranks of `core`'s group.
fn subgroup(core: &CommCore, group: &dyn Group, what: &str) -> Result<Vec<usize>, CommError> {
    let world = group.members().world_ranks().to_vec();
    if let Some(&w) = world
        .iter()
        .find(|&&w| core.local.rank_of_world(w).is_none())
    {
        return Err(CommError::InvalidArgument(format!(
            "{what}: world rank {w} of the group is not in the communicator"
        )));
    }
    Ok(world)
}

/// `MPI_Comm_create`: collective over `core`.
pub(crate) fn create(
    core: &Rc<CommCore>,
    group: &dyn Group,
) -> Result<Option<SimpleCommunicator>, CommError> {
    intra_only(core, "creating a communicator from a group")?;
    let world = subgroup(core, group, "split_by_subgroup_collective")?;
    let id = agree_id(core)?;
    if !world.contains(&core.rt.world_rank) {
        core.rt.release_context(id);
        return Ok(None);
    }
    make(core, id, world).map(Some)
}

/// `MPI_Comm_create_group`: only the members of `group` call it.
pub(crate) fn create_group(
    core: &Rc<CommCore>,
    group: &dyn Group,
    _tag: Tag,
) -> Result<Option<SimpleCommunicator>, CommError> {
    intra_only(core, "creating a communicator from a group")?;
    let world = subgroup(core, group, "split_by_subgroup")?;
    if !world.contains(&core.rt.world_rank) {
        return Ok(None);
    }
    // The members agree among themselves, in the parent's collective context; the temporary
    // core does not own that context.
    let members = Members::new(world.clone(), core.rt.world_size, core.rt.world_rank);
    let among = CommCore::borrowed(core, members)?;
    let id = agree_id(&among)?;
    make(core, id, world).map(Some)
}

/// The ids free on every rank of both groups of intercommunicator `core`, agreed and taken:
/// each group's AND at its leader (local rank 0, in the private local communicator), the
/// leaders' exchange with `extra` bytes each, then the answer back from each leader. Returns
/// the id and the other leader's extra bytes.
fn agree_across(core: &CommCore, extra: &[u8]) -> Result<(u32, Vec<u8>), CommError> {
    let local = core
        .local_comm
        .as_ref()
        .ok_or_else(|| CommError::Config("an intercommunicator without its local group".into()))?;
    let local = &local.core;
    let answer = match and_at(local, 0)? {
        Some(ours) => {
            let mut offer = mask_bytes(&ours).to_vec();
            offer.extend(extra);
            let ctx = core.coll_context();
            let dest = core.world_of(0)?;
            let sent = core
                .rt
                .engine()
                .post_send(dest, ctx, AGREE, SendBuf::of(&offer), false)?;
            let theirs = receive_blob(core, 0, ctx, AGREE);
            core.rt.wait(sent)?;
            let theirs = theirs?;
            let split = 8 * context::WORDS;
            if theirs.len() < split {
                return Err(CommError::Config(
                    "a malformed intercommunicator offer".into(),
                ));
            }
            let and = context::and(&ours, &mask_of(&theirs[..split])?);
            let id = lowest(&and).map_or(u32::MAX, |id| id);
            let mut answer = id.to_le_bytes().to_vec();
            answer.extend(&theirs[split..]);
            answer
        }
        None => Vec::new(),
    };
    let answer = broadcast(local, 0, answer)?;
    if answer.len() < 4 {
        return Err(CommError::Config(
            "a malformed intercommunicator answer".into(),
        ));
    }
    let id = u32::from_le_bytes([answer[0], answer[1], answer[2], answer[3]]);
    if id == u32::MAX {
        return Err(CommError::ContextsExhausted {
            limit: context::MAX_COMMUNICATORS,
        });
    }
    core.rt.contexts.borrow_mut().take(id);
    Ok((id, answer[4..].to_vec()))
}

/// An intercommunicator core of `local` and `remote` with id `id`, and a private communicator
/// of the local group.
fn make_inter(
    rt: &CommCore,
    id: u32,
    local: &Rc<Members>,
    remote: Vec<usize>,
    local_comm: SimpleCommunicator,
) -> Result<InterCommunicator, CommError> {
    let world_size = rt.rt.world_size;
    let local_members = Members::new(local.world_ranks().to_vec(), world_size, rt.rt.world_rank);
    let remote = Members::new(remote, world_size, rt.rt.world_rank);
    let mut made = CommCore::new(rt.rt.clone(), id, local_members, Some(remote), "")?;
    made.local_comm = Some(local_comm);
    SimpleCommunicator::from_core(made)
        .into_inter()
        .ok_or_else(|| CommError::Config("made an intercommunicator without a remote group".into()))
}

fn duplicate_inter(core: &Rc<CommCore>) -> Result<SimpleCommunicator, CommError> {
    let (id, _) = agree_across(core, &[])?;
    let local_comm = match &core.local_comm {
        Some(c) => duplicate(&c.core)?,
        None => {
            return Err(CommError::Config(
                "an intercommunicator without its local group".into(),
            ));
        }
    };
    let remote = core.target().world_ranks().to_vec();
    make_inter(core, id, &core.local, remote, local_comm).map(|i| i.as_simple().clone())
}

/// `MPI_Intercomm_create`.
pub(crate) fn intercomm(
    local: &Rc<CommCore>,
    local_leader: Rank,
    peer: &Rc<CommCore>,
    remote_leader: Rank,
    tag: Tag,
) -> Result<InterCommunicator, CommError> {
    intra_only(local, "the local side of a new intercommunicator")?;
    local.world_of(local_leader)?;
    let private = duplicate(local)?;
    let leads = local.rank() == local_leader;
    // The leaders trade their groups and the AND of their groups' free ids over `peer`.
    let ours = and_at(&private.core, local_leader)?;
    let answer = match ours {
        Some(ours) if leads => {
            let tag = super::communicator::send_tag(tag)?;
            peer.world_of(remote_leader)?;
            let mut offer = mask_bytes(&ours).to_vec();
            offer.extend(ranks_bytes(local.local.world_ranks()));
            let ctx = peer.p2p_context();
            let dest = peer.world_of(remote_leader)?;
            let sent = peer
                .rt
                .engine()
                .post_send(dest, ctx, tag, SendBuf::of(&offer), false)?;
            let theirs = receive_blob(peer, remote_leader, ctx, tag);
            peer.rt.wait(sent)?;
            let theirs = theirs?;
            let split = 8 * context::WORDS;
            if theirs.len() < split {
                return Err(CommError::Config(
                    "a malformed intercommunicator offer".into(),
                ));
            }
            let and = context::and(&ours, &mask_of(&theirs[..split])?);
            let id = lowest(&and).map_or(u32::MAX, |id| id);
            let mut answer = id.to_le_bytes().to_vec();
            answer.extend(&theirs[split..]);
            answer
        }
        _ => Vec::new(),
    };
    let answer = broadcast(&private.core, local_leader, answer)?;
    if answer.len() < 4 {
        return Err(CommError::Config(
            "a malformed intercommunicator answer".into(),
        ));
    }
    let id = u32::from_le_bytes([answer[0], answer[1], answer[2], answer[3]]);
    if id == u32::MAX {
        return Err(CommError::ContextsExhausted {
            limit: context::MAX_COMMUNICATORS,
        });
    }
    let remote = ranks_of(&answer[4..], local.rt.world_size)?;
    if remote.is_empty()
        || remote
            .iter()
            .any(|&w| local.local.rank_of_world(w).is_some())
    {
        return Err(CommError::InvalidArgument(
            "intercommunicator: the two groups must be disjoint and not empty".into(),
        ));
    }
    local.rt.contexts.borrow_mut().take(id);
    make_inter(local, id, &local.local, remote, private)
}

/// `MPI_Intercomm_merge`.
pub(crate) fn merge(
    core: &Rc<CommCore>,
    order: MergeOrder,
) -> Result<SimpleCommunicator, CommError> {
    let high = u8::from(order == MergeOrder::High);
    let leader = core.local.world_rank(0).unwrap_or(0) as u64;
    let mut extra = vec![high];
    extra.extend(leader.to_le_bytes());
    let (id, theirs) = agree_across(core, &extra)?;
    if theirs.len() != 9 {
        return Err(CommError::Config("a malformed merge offer".into()));
    }
    let their_high = theirs[0];
    let their_leader = u64::from_le_bytes(theirs[1..9].try_into().unwrap_or_default());
    let local_first = match (high, their_high) {
        (0, 1) => true,
        (1, 0) => false,
        // Both groups asked for the same side: the group whose leader has the lower world rank
        // goes first, which both compute alike.
        _ => leader < their_leader,
    };
    let (first, second) = if local_first {
        (core.local.world_ranks(), core.target().world_ranks())
    } else {
        (core.target().world_ranks(), core.local.world_ranks())
    };
    let world: Vec<usize> = first.iter().chain(second).copied().collect();
    make(core, id, world)
}

impl CommCore {
    /// A core over `members` (a subgroup of `parent`'s) that uses `parent`'s contexts without
    /// owning them, for exchanges among the subgroup alone.
    fn borrowed(parent: &CommCore, members: Members) -> Result<CommCore, CommError> {
        let mut core = CommCore::new(parent.rt.clone(), parent.id, members, None, "")?;
        core.owns_id = false;
        Ok(core)
    }
}
