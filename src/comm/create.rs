//! Making communicators: duplicate, split, create from a group, intercommunicators and their
//! merge. Each agrees on a new context id and generation ([`super::context`]) with the ranks
//! that take part, using a few small exchanges of its own in the parent's collective context (a
//! gather to a leader and a broadcast back), so that communicators are made with nothing above
//! this layer.

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

/// Sends `offer` to the other leader (`rank` of `core`, in `context` with `tag`) while receiving
/// the other leader's; both leaders do the same, so neither may wait for its send first.
fn trade(
    core: &CommCore,
    rank: Rank,
    context: u32,
    tag: Tag,
    offer: &[u8],
) -> Result<Vec<u8>, CommError> {
    let dest = core.world_of(rank)?;
    let sent = core
        .rt
        .engine()
        .post_send(dest, context, tag, SendBuf::of(offer), false)?;
    let theirs = receive_blob(core, rank, context, tag);
    core.rt.wait(sent)?;
    theirs
}

/// A leader's half of joining two groups: trades its group's offer and `extra` with the
/// other leader (`rank` of `over`, in `context` with `tag`) and answers with the decision from
/// both offers and the other leader's extra bytes.
fn leaders_trade(
    ours: Offer,
    extra: &[u8],
    over: &CommCore,
    rank: Rank,
    context: u32,
    tag: Tag,
) -> Result<Vec<u8>, CommError> {
    let mut offer = ours.bytes();
    offer.extend(extra);
    let theirs = trade(over, rank, context, tag, &offer)?;
    if theirs.len() < OFFER_BYTES {
        return Err(CommError::Config(
            "a malformed intercommunicator offer".into(),
        ));
    }
    let both = ours.and(Offer::of(&theirs[..OFFER_BYTES])?);
    Ok(answer_bytes(both.decide(), &theirs[OFFER_BYTES..]))
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

/// What a rank brings to an agreement: the ids free here and how many communicators it has
/// helped make.
#[derive(Debug, Clone, Copy)]
struct Offer {
    free: Mask,
    clock: u32,
}

/// Bytes of an encoded [`Offer`].
const OFFER_BYTES: usize = 8 * context::WORDS + 4;

impl Offer {
    /// This rank's offer.
    fn mine(core: &CommCore) -> Result<Offer, CommError> {
        let free = core.rt.free_ids()?;
        let clock = core.rt.contexts.borrow().clock;
        Ok(Offer { free, clock })
    }

    /// The offer of a group: ids free in both, the higher clock.
    fn and(self, other: Offer) -> Offer {
        Offer {
            free: context::and(&self.free, &other.free),
            clock: self.clock.max(other.clock),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = bytemuck::cast_slice(&self.free).to_vec();
        out.extend(self.clock.to_le_bytes());
        out
    }

    fn of(bytes: &[u8]) -> Result<Offer, CommError> {
        let bad = || CommError::Config("a malformed offer in the making of a communicator".into());
        if bytes.len() != OFFER_BYTES {
            return Err(bad());
        }
        let mut free = [0u64; context::WORDS];
        for (w, chunk) in free.iter_mut().zip(bytes.chunks(8)) {
            *w = u64::from_le_bytes(chunk.try_into().map_err(|_| bad())?);
        }
        let clock = u32::from_le_bytes(bytes[OFFER_BYTES - 4..].try_into().map_err(|_| bad())?);
        Ok(Offer { free, clock })
    }

    /// What the makers take: the lowest id free everywhere, and a generation above every
    /// maker's clock; `None` when no id is free everywhere.
    fn decide(&self) -> Option<Agreed> {
        ContextIds::lowest(&self.free).map(|id| Agreed {
            id,
            generation: self.clock.wrapping_add(1),
        })
    }
}

/// The id and generation a new communicator takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    pub id: u32,
    pub generation: u32,
}

/// The id that says "none was free" in an answer.
const NONE_FREE: u32 = u32::MAX;

/// An answer as bytes: the decision (or [`NONE_FREE`]), then `extra`.
fn answer_bytes(decided: Option<Agreed>, extra: &[u8]) -> Vec<u8> {
    let (id, generation) = decided.map_or((NONE_FREE, 0), |a| (a.id, a.generation));
    let mut out = id.to_le_bytes().to_vec();
    out.extend(generation.to_le_bytes());
    out.extend(extra);
    out
}

/// An answer's decision and extra bytes; the error every rank reports when no id was free.
fn answer_of(bytes: &[u8]) -> Result<(Agreed, &[u8]), CommError> {
    if bytes.len() < 8 {
        return Err(CommError::Config(
            "a malformed answer in the making of a communicator".into(),
        ));
    }
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if word(0) == NONE_FREE {
        return Err(CommError::ContextsExhausted {
            limit: context::MAX_COMMUNICATORS,
        });
    }
    let agreed = Agreed {
        id: word(0),
        generation: word(4),
    };
    Ok((agreed, &bytes[8..]))
}

/// The offers of every rank of `core`, combined at `root` (`None` elsewhere).
fn offers_at(core: &CommCore, root: Rank) -> Result<Option<Offer>, CommError> {
    let Some(all) = gather(core, root, &Offer::mine(core)?.bytes())? else {
        return Ok(None);
    };
    all.iter()
        .map(|b| Offer::of(b))
        .try_fold(None, |acc: Option<Offer>, o| {
            let o = o?;
            Ok(Some(acc.map_or(o, |a| a.and(o))))
        })
}

/// Takes the agreed id and generation on this rank: no other communicator it makes uses the id
/// until this one is gone, and messages of older generations of it are dropped from now on.
fn take(core: &CommCore, agreed: Agreed) -> Result<(), CommError> {
    let mut ids = core.rt.contexts.borrow_mut();
    ids.take(agreed.id);
    ids.clock = agreed.generation;
    drop(ids);
    core.rt
        .engine()
        .set_generation(agreed.id, agreed.generation)
}

/// An id and generation agreed by every rank of intracommunicator `core`, taken here.
fn agree(core: &CommCore) -> Result<Agreed, CommError> {
    let decided = offers_at(core, 0)?.map(|o| o.decide());
    let answer = broadcast(core, 0, answer_bytes(decided.flatten(), &[]))?;
    let (agreed, _) = answer_of(&answer)?;
    take(core, agreed)?;
    Ok(agreed)
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

/// A new communicator of `world` ranks with `agreed` id and generation.
fn make(
    core: &CommCore,
    agreed: Agreed,
    world: Vec<usize>,
) -> Result<SimpleCommunicator, CommError> {
    let members = Members::new(world, core.rt.world_size, core.rt.world_rank);
    let made = CommCore::new(
        core.rt.clone(),
        agreed.id,
        agreed.generation,
        members,
        None,
        "",
    )?;
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
    let agreed = agree(core)?;
    make(core, agreed, core.local.world_ranks().to_vec())
}

/// `MPI_Comm_split`: one exchange carries every rank's color, key and offer.
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
    let mut mine = Vec::with_capacity(8 + OFFER_BYTES);
    mine.extend(color.value().to_le_bytes());
    mine.extend(key.to_le_bytes());
    mine.extend(Offer::mine(core)?.bytes());
    let answer = match gather(core, 0, &mine)? {
        Some(all) => {
            let mut offer: Option<Offer> = None;
            let mut pairs: Vec<u8> = Vec::with_capacity(8 * all.len());
            for blob in &all {
                if blob.len() != mine.len() {
                    return Err(CommError::Config("a malformed split request".into()));
                }
                pairs.extend(&blob[..8]);
                let o = Offer::of(&blob[8..])?;
                offer = Some(offer.map_or(o, |a| a.and(o)));
            }
            answer_bytes(offer.and_then(|o| o.decide()), &pairs)
        }
        None => Vec::new(),
    };
    let answer = broadcast(core, 0, answer)?;
    let (agreed, pairs) = answer_of(&answer)?;
    let n = core.size() as usize;
    if pairs.len() != 8 * n {
        return Err(CommError::Config("a malformed split answer".into()));
    }
    if color.value() == UNDEFINED {
        // Not a member: the id is not taken here, but the clock moves on with the others'.
        let mut ids = core.rt.contexts.borrow_mut();
        ids.clock = ids.clock.max(agreed.generation);
        return Ok(None);
    }
    take(core, agreed)?;
    let word = |i: usize| i32::from_le_bytes([pairs[i], pairs[i + 1], pairs[i + 2], pairs[i + 3]]);
    let mut same: Vec<(Key, Rank)> = (0..n)
        .filter(|&r| word(8 * r) == color.value())
        .map(|r| (word(8 * r + 4), r as Rank))
        .collect();
    same.sort();
    let world = same
        .iter()
        .map(|&(_, r)| core.world_of(r))
        .collect::<Result<Vec<_>, _>>()?;
    make(core, agreed, world).map(Some)
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
    let agreed = agree(core)?;
    if !world.contains(&core.rt.world_rank) {
        core.rt.release_context(agreed.id);
        return Ok(None);
    }
    make(core, agreed, world).map(Some)
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
    let agreed = agree(&among)?;
    make(core, agreed, world).map(Some)
}

/// An id and generation free on every rank of both groups of intercommunicator `core`, agreed
/// and taken: each group's offer at its leader (local rank 0, in the private local
/// communicator), the leaders' trade with `extra` bytes each, then each leader's answer to its
/// group. Returns the agreement and the other leader's extra bytes.
fn agree_across(core: &CommCore, extra: &[u8]) -> Result<(Agreed, Vec<u8>), CommError> {
    let local = core.local_group_core()?;
    let answer = match offers_at(local, 0)? {
        Some(ours) => leaders_trade(ours, extra, core, 0, core.coll_context(), AGREE)?,
        None => Vec::new(),
    };
    let answer = broadcast(local, 0, answer)?;
    let (agreed, theirs) = answer_of(&answer)?;
    let theirs = theirs.to_vec();
    take(core, agreed)?;
    Ok((agreed, theirs))
}

/// An intercommunicator of `local` and `remote` with `agreed` id and generation, and a private
/// communicator of the local group.
fn make_inter(
    core: &CommCore,
    agreed: Agreed,
    local: &Members,
    remote: Vec<usize>,
    local_comm: SimpleCommunicator,
) -> Result<InterCommunicator, CommError> {
    let (world_size, me) = (core.rt.world_size, core.rt.world_rank);
    let local_members = Members::new(local.world_ranks().to_vec(), world_size, me);
    let remote = Members::new(remote, world_size, me);
    let mut made = CommCore::new(
        core.rt.clone(),
        agreed.id,
        agreed.generation,
        local_members,
        Some(remote),
        "",
    )?;
    made.local_comm = Some(local_comm);
    SimpleCommunicator::from_core(made)
        .into_inter()
        .ok_or_else(|| CommError::Config("made an intercommunicator without a remote group".into()))
}

fn duplicate_inter(core: &Rc<CommCore>) -> Result<SimpleCommunicator, CommError> {
    let (agreed, _) = agree_across(core, &[])?;
    let local_comm = duplicate(core.local_group_core()?)?;
    let remote = core.target().world_ranks().to_vec();
    make_inter(core, agreed, &core.local, remote, local_comm).map(|i| i.as_simple().clone())
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
    // The leaders trade their groups and their groups' offers over `peer`.
    let answer = match offers_at(&private.core, local_leader)? {
        Some(ours) => {
            let tag = super::communicator::send_tag(tag)?;
            let extra = ranks_bytes(local.local.world_ranks());
            leaders_trade(ours, &extra, peer, remote_leader, peer.p2p_context(), tag)?
        }
        None => Vec::new(),
    };
    let answer = broadcast(&private.core, local_leader, answer)?;
    let (agreed, remote) = answer_of(&answer)?;
    let remote = ranks_of(remote, local.rt.world_size)?;
    if remote.is_empty()
        || remote
            .iter()
            .any(|&w| local.local.rank_of_world(w).is_some())
    {
        return Err(CommError::InvalidArgument(
            "intercommunicator: the two groups must be disjoint and not empty".into(),
        ));
    }
    take(local, agreed)?;
    make_inter(local, agreed, &local.local, remote, private)
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
    let (agreed, theirs) = agree_across(core, &extra)?;
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
    make(core, agreed, world)
}

impl CommCore {
    /// A core over `members` (a subgroup of `parent`'s) that uses `parent`'s contexts without
    /// owning them, for exchanges among the subgroup alone.
    fn borrowed(parent: &CommCore, members: Members) -> Result<CommCore, CommError> {
        let mut core = CommCore::new(
            parent.rt.clone(),
            parent.id,
            parent.generation,
            members,
            None,
            "",
        )?;
        core.owns_id = false;
        Ok(core)
    }
}
