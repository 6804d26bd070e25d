//! Communicator context ids. Every record carries the context of the communicator it belongs to,
//! and receives match on it, so two communicators never mix their messages. A communicator with
//! id `c` has two contexts: `2c` for point to point and `2c + 1` for its collectives, so a user's
//! any-tag receive never takes a collective's message.
//!
//! Ids are agreed by the ranks that create a communicator, with no server: each rank keeps a
//! mask of the ids it has free, the creating ranks combine their masks with a bitwise AND, and all
//! take the lowest id free everywhere (so ranks that share no communicator may use the same id).
//! A freed id comes back once nothing of this rank still refers to it: no receive posted on it,
//! no probed message kept; messages that arrived for it unreceived are dropped then (and a large
//! one's sender told). At most [`MAX_COMMUNICATORS`] communicators exist at once in a process;
//! past that, creating one is [`CommError::ContextsExhausted`](super::CommError) on every rank.
//!
//! A context also carries a generation, so that a message still on its way for a freed
//! communicator never reaches a later one with the same id. Each rank counts the communicators it
//! has helped make; a new one takes the highest count of its makers plus one, so every
//! communicator a rank belongs to has a higher generation than the ones it belonged to before
//! with that id. A message whose generation is older than the rank's latest for its id is
//! dropped on arrival. On the wire a context is `generation << 13 | id << 1 | collective`.

/// The most communicators (world and self included) alive at once in a process.
pub const MAX_COMMUNICATORS: usize = 4096;

/// Words of an id mask.
pub(crate) const WORDS: usize = MAX_COMMUNICATORS / 64;

/// One bit per id: set = free.
pub(crate) type Mask = [u64; WORDS];

/// The id of the world communicator.
pub(crate) const WORLD: u32 = 0;
/// The id of the communicator of this process alone.
pub(crate) const SELF: u32 = 1;

/// Generations wrap at this many (they fill the context's bits above the id).
pub(crate) const GENERATIONS: u32 = 1 << 19;

/// The point-to-point context of communicator `id` of generation `generation`.
pub(crate) fn p2p(id: u32, generation: u32) -> u32 {
    (generation % GENERATIONS) << 13 | id << 1
}

/// The collective context of communicator `id` of generation `generation`.
pub(crate) fn coll(id: u32, generation: u32) -> u32 {
    p2p(id, generation) | 1
}

/// Whether `context` is a communicator's collective context.
pub(crate) fn is_collective(context: u32) -> bool {
    context & 1 == 1
}

/// The communicator id of `context`.
pub(crate) fn id_of(context: u32) -> u32 {
    (context >> 1) & (MAX_COMMUNICATORS as u32 - 1)
}

/// The generation of `context`.
pub(crate) fn generation_of(context: u32) -> u32 {
    context >> 13
}

/// Whether generation `g` came before `latest` (counting round the wrap: the half of the
/// circle ahead of `latest` is taken as newer).
pub(crate) fn older(g: u32, latest: u32) -> bool {
    let behind = latest.wrapping_sub(g) % GENERATIONS;
    behind != 0 && behind < GENERATIONS / 2
}

/// This process's ids.
#[derive(Debug)]
pub(crate) struct ContextIds {
    free: Mask,
    /// Freed by their communicators, not yet free: something may still refer to them.
    draining: Vec<u32>,
    /// How many communicators this rank has helped make (the generation of the latest).
    pub clock: u32,
}

impl Default for ContextIds {
    fn default() -> ContextIds {
        let mut ids = ContextIds {
            free: [u64::MAX; WORDS],
            draining: Vec::new(),
            clock: 0,
        };
        ids.take(WORLD);
        ids.take(SELF);
        ids
    }
}

impl ContextIds {
    /// The ids free here.
    pub fn free_mask(&self) -> Mask {
        self.free
    }

    /// Marks `id` as in use.
    pub fn take(&mut self, id: u32) {
        self.free[id as usize / 64] &= !(1u64 << (id % 64));
    }

    /// The lowest id set in `mask`, if any.
    pub fn lowest(mask: &Mask) -> Option<u32> {
        mask.iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| (i * 64) as u32 + w.trailing_zeros())
    }

    /// `id` is no longer used by a communicator; it becomes free once [`ContextIds::reclaim`]
    /// finds nothing referring to it.
    pub fn release(&mut self, id: u32) {
        if id != WORLD && id != SELF && !self.draining.contains(&id) {
            self.draining.push(id);
        }
    }

    /// Frees the draining ids that `in_use` says nothing refers to any more; returns them.
    pub fn reclaim(&mut self, in_use: impl Fn(u32) -> bool) -> Vec<u32> {
        let (done, still): (Vec<u32>, Vec<u32>) =
            self.draining.iter().partition(|&&id| !in_use(id));
        self.draining = still;
        for &id in &done {
            self.free[id as usize / 64] |= 1u64 << (id % 64);
        }
        done
    }
}

/// The bitwise AND of two masks.
pub(crate) fn and(a: &Mask, b: &Mask) -> Mask {
    std::array::from_fn(|i| a[i] & b[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_agreed_as_the_lowest_free_everywhere_and_come_back() {
        let (mut a, mut b) = (ContextIds::default(), ContextIds::default());
        let both = and(&a.free_mask(), &b.free_mask());
        assert_eq!(ContextIds::lowest(&both), Some(2));
        a.take(2);
        b.take(2);
        a.take(3); // a communicator of `a` alone with others
        let both = and(&a.free_mask(), &b.free_mask());
        assert_eq!(ContextIds::lowest(&both), Some(4));
        a.release(2);
        assert_eq!(a.reclaim(|_| true), Vec::<u32>::new(), "still referred to");
        assert_eq!(a.reclaim(|_| false), vec![2]);
        b.release(2);
        b.reclaim(|_| false);
        assert_eq!(
            ContextIds::lowest(&and(&a.free_mask(), &b.free_mask())),
            Some(2)
        );
        a.release(WORLD);
        assert!(
            a.reclaim(|_| false).is_empty(),
            "the world's id is never freed"
        );
        // Contexts keep their id, generation and kind apart.
        for (id, g) in [
            (0, 0),
            (5, 1),
            (4095, GENERATIONS - 1),
            (17, GENERATIONS + 3),
        ] {
            let (p, c) = (p2p(id, g), coll(id, g));
            assert_eq!((id_of(p), id_of(c)), (id, id));
            assert_eq!(generation_of(p), g % GENERATIONS);
            assert!(!is_collective(p) && is_collective(c));
        }
        assert!(older(3, 4) && older(GENERATIONS - 1, 2) && !older(4, 4) && !older(5, 4));
        let mut full = ContextIds::default();
        for id in 0..MAX_COMMUNICATORS as u32 {
            full.take(id);
        }
        assert_eq!(ContextIds::lowest(&full.free_mask()), None);
    }
}
