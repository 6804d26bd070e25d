//! Groups: ordered sets of processes, named by their world ranks, with MPI's set operations
//! (union, intersection, difference, include, exclude, ranges) and rank translation. Groups are
//! local objects: making one sends nothing.

use std::rc::Rc;

use super::CommError;
use super::communicator::Rank;

/// How two groups relate (`MPI_Group_compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRelation {
    /// The same processes in the same order.
    Identical,
    /// The same processes in another order.
    Similar,
    /// Other processes.
    Unequal,
}

/// The members of a group, as world ranks in group order, and the way back. Not nameable
/// outside this crate.
#[derive(Debug, PartialEq, Eq)]
pub struct Members {
    /// World rank of each group rank.
    world: Vec<usize>,
    /// Group rank of each world rank (or -1), as long as the world.
    of_world: Vec<i32>,
    /// This process's world rank.
    me: usize,
}

impl Members {
    /// The group of world ranks `world` (distinct, each below `world_size`), seen from world
    /// rank `me`.
    pub fn new(world: Vec<usize>, world_size: usize, me: usize) -> Members {
        let mut of_world = vec![-1; world_size];
        for (g, &w) in world.iter().enumerate() {
            of_world[w] = g as i32;
        }
        Members {
            world,
            of_world,
            me,
        }
    }

    /// The group's size.
    pub fn len(&self) -> usize {
        self.world.len()
    }

    /// The world rank of group rank `r`, if there is one.
    pub fn world_rank(&self, r: usize) -> Option<usize> {
        self.world.get(r).copied()
    }

    /// The group rank of world rank `w`, if it is a member.
    pub fn rank_of_world(&self, w: usize) -> Option<i32> {
        self.of_world.get(w).copied().filter(|&g| g >= 0)
    }

    /// Every member's world rank, in group order.
    pub fn world_ranks(&self) -> &[usize] {
        &self.world
    }

    /// This process's rank in the group, if it is a member.
    pub fn my_rank(&self) -> Option<i32> {
        self.rank_of_world(self.me)
    }

    /// The world's size.
    pub fn world_size(&self) -> usize {
        self.of_world.len()
    }

    /// This process's world rank.
    pub fn me(&self) -> usize {
        self.me
    }
}

/// A group of processes (rsmpi's `UserGroup`); cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGroup {
    pub(crate) members: Rc<Members>,
}

/// What every group offers (rsmpi's `Group` trait; `use onecopy::traits::*`).
pub trait Group: sealed::AsMembers {
    /// The number of processes in the group.
    fn size(&self) -> Rank {
        self.members().len() as Rank
    }

    /// This process's rank in the group, `None` if it is not a member.
    fn rank(&self) -> Option<Rank> {
        self.members().my_rank()
    }

    /// The processes of `self`, then those of `other` not in `self` (`MPI_Group_union`).
    fn union(&self, other: &dyn Group) -> UserGroup {
        let (a, b) = (self.members(), other.members());
        let mut world = a.world.clone();
        world.extend(b.world.iter().filter(|&&w| a.rank_of_world(w).is_none()));
        UserGroup::of(world, a)
    }

    /// The processes of `self` that are also in `other`, in `self`'s order
    /// (`MPI_Group_intersection`).
    fn intersection(&self, other: &dyn Group) -> UserGroup {
        let (a, b) = (self.members(), other.members());
        let world = a
            .world
            .iter()
            .copied()
            .filter(|&w| b.rank_of_world(w).is_some())
            .collect();
        UserGroup::of(world, a)
    }

    /// The processes of `self` that are not in `other`, in `self`'s order
    /// (`MPI_Group_difference`).
    fn difference(&self, other: &dyn Group) -> UserGroup {
        let (a, b) = (self.members(), other.members());
        let world = a
            .world
            .iter()
            .copied()
            .filter(|&w| b.rank_of_world(w).is_none())
            .collect();
        UserGroup::of(world, a)
    }

    /// The processes at `ranks` of this group, in that order (`MPI_Group_incl`); each rank must
    /// be in the group and appear once.
    fn include(&self, ranks: &[Rank]) -> Result<UserGroup, CommError> {
        let a = self.members();
        let picked = distinct_ranks(ranks, a.len(), "include")?;
        let world = picked.iter().map(|&r| a.world[r]).collect();
        Ok(UserGroup::of(world, a))
    }

    /// The group without the processes at `ranks` (`MPI_Group_excl`); each rank must be in the
    /// group and appear once.
    fn exclude(&self, ranks: &[Rank]) -> Result<UserGroup, CommError> {
        let a = self.members();
        let dropped = distinct_ranks(ranks, a.len(), "exclude")?;
        let world = (0..a.len())
            .filter(|r| !dropped.contains(r))
            .map(|r| a.world[r])
            .collect();
        Ok(UserGroup::of(world, a))
    }

    /// The processes of the ranges `(first, last, stride)`, in order (`MPI_Group_range_incl`).
    fn range_include(&self, ranges: &[(Rank, Rank, Rank)]) -> Result<UserGroup, CommError> {
        let ranks = expand_ranges(ranges, self.members().len(), "range_include")?;
        self.include(&ranks)
    }

    /// The group without the processes of the ranges `(first, last, stride)`
    /// (`MPI_Group_range_excl`).
    fn range_exclude(&self, ranges: &[(Rank, Rank, Rank)]) -> Result<UserGroup, CommError> {
        let ranks = expand_ranges(ranges, self.members().len(), "range_exclude")?;
        self.exclude(&ranks)
    }

    /// Each of `ranks` (of this group) as a rank of `other`: `None` where that process is not
    /// in `other` or the rank is not in this group (`MPI_Group_translate_ranks`).
    fn translate_ranks(&self, ranks: &[Rank], other: &dyn Group) -> Vec<Option<Rank>> {
        let (a, b) = (self.members(), other.members());
        ranks
            .iter()
            .map(|&r| {
                usize::try_from(r)
                    .ok()
                    .and_then(|r| a.world_rank(r))
                    .and_then(|w| b.rank_of_world(w))
            })
            .collect()
    }

    /// [`Group::translate_ranks`] for one rank.
    fn translate_rank(&self, rank: Rank, other: &dyn Group) -> Option<Rank> {
        self.translate_ranks(&[rank], other)[0]
    }

    /// How this group relates to `other` (`MPI_Group_compare`).
    fn compare(&self, other: &dyn Group) -> GroupRelation {
        let (a, b) = (self.members(), other.members());
        if a.world == b.world {
            GroupRelation::Identical
        } else if a.len() == b.len() && a.world.iter().all(|&w| b.rank_of_world(w).is_some()) {
            GroupRelation::Similar
        } else {
            GroupRelation::Unequal
        }
    }
}

pub(crate) mod sealed {
    /// Access to a group's members; implemented by this crate's groups only.
    pub trait AsMembers {
        /// The members.
        fn members(&self) -> &super::Members;
    }
}

impl sealed::AsMembers for UserGroup {
    fn members(&self) -> &Members {
        &self.members
    }
}

impl Group for UserGroup {}

impl UserGroup {
    /// The group of `world` ranks, in the world of `like`.
    fn of(world: Vec<usize>, like: &Members) -> UserGroup {
        UserGroup {
            members: Rc::new(Members::new(world, like.world_size(), like.me())),
        }
    }

    /// The empty group of the world `like` lives in (`MPI_GROUP_EMPTY`).
    pub fn empty_like(like: &dyn Group) -> UserGroup {
        UserGroup::of(Vec::new(), like.members())
    }

    /// The world rank of each member, in group order.
    pub fn world_ranks(&self) -> &[usize] {
        self.members.world_ranks()
    }
}

/// `ranks` checked to be distinct ranks below `size`.
fn distinct_ranks(ranks: &[Rank], size: usize, what: &str) -> Result<Vec<usize>, CommError> {
    let mut seen = vec![false; size];
    ranks
        .iter()
        .map(|&r| match usize::try_from(r).ok().filter(|&r| r < size) {
            Some(r) if !seen[r] => {
                seen[r] = true;
                Ok(r)
            }
            Some(r) => Err(CommError::InvalidArgument(format!(
                "group {what}: rank {r} is given twice"
            ))),
            None => Err(CommError::InvalidRank {
                rank: r,
                size: size as i32,
            }),
        })
        .collect()
}

/// The ranks of `(first, last, stride)` triples, in order, each checked to lie in the group.
fn expand_ranges(
    ranges: &[(Rank, Rank, Rank)],
    size: usize,
    what: &str,
) -> Result<Vec<Rank>, CommError> {
    let mut out = Vec::new();
    for &(first, last, stride) in ranges {
        let bad = |why: &str| {
            Err(CommError::InvalidArgument(format!(
                "group {what}: range ({first}, {last}, {stride}) {why}"
            )))
        };
        if stride == 0 {
            return bad("has a stride of 0");
        }
        let inside = |r: Rank| r >= 0 && (r as usize) < size;
        if !inside(first) || !inside(last) {
            return bad(&format!("reaches outside the group of {size}"));
        }
        if (stride > 0 && first > last) || (stride < 0 && first < last) {
            return bad("runs the wrong way for its stride");
        }
        let mut r = first as i64;
        while (stride > 0 && r <= last as i64) || (stride < 0 && r >= last as i64) {
            out.push(r as Rank);
            r += stride as i64;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn group(world: &[usize], me: usize) -> UserGroup {
        UserGroup {
            members: Rc::new(Members::new(world.to_vec(), 16, me)),
        }
    }

    /// The operations as MPI defines them, written out naively over lists of world ranks.
    mod reference {
        pub fn union(a: &[usize], b: &[usize]) -> Vec<usize> {
            let mut out = a.to_vec();
            for &x in b {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
            out
        }
        pub fn intersection(a: &[usize], b: &[usize]) -> Vec<usize> {
            a.iter().copied().filter(|x| b.contains(x)).collect()
        }
        pub fn difference(a: &[usize], b: &[usize]) -> Vec<usize> {
            a.iter().copied().filter(|x| !b.contains(x)).collect()
        }
    }

    fn distinct_world() -> impl Strategy<Value = Vec<usize>> {
        proptest::sample::subsequence((0..16).collect::<Vec<usize>>(), 0..16).prop_shuffle()
    }

    proptest! {
        #[test]
        fn set_operations_match_the_reference(a in distinct_world(), b in distinct_world(), me in 0usize..16) {
            let (ga, gb) = (group(&a, me), group(&b, me));
            prop_assert_eq!(ga.union(&gb).world_ranks().to_vec(), reference::union(&a, &b)[..].to_vec());
            prop_assert_eq!(ga.intersection(&gb).world_ranks().to_vec(), reference::intersection(&a, &b)[..].to_vec());
            prop_assert_eq!(ga.difference(&gb).world_ranks().to_vec(), reference::difference(&a, &b)[..].to_vec());
            prop_assert_eq!(ga.rank(), a.iter().position(|&w| w == me).map(|p| p as i32));
            // Translation: every rank of `a` lands where that process is in `b`.
            let ranks: Vec<i32> = (0..a.len() as i32).chain([-1, a.len() as i32]).collect();
            let want: Vec<Option<i32>> = ranks
                .iter()
                .map(|&r| {
                    usize::try_from(r).ok().and_then(|r| a.get(r)).and_then(|w| {
                        b.iter().position(|x| x == w).map(|p| p as i32)
                    })
                })
                .collect();
            prop_assert_eq!(ga.translate_ranks(&ranks, &gb), want);
            let relation = if a == b {
                GroupRelation::Identical
            } else if a.len() == b.len() && a.iter().all(|x| b.contains(x)) {
                GroupRelation::Similar
            } else {
                GroupRelation::Unequal
            };
            prop_assert_eq!(Group::compare(&ga, &gb), relation);
        }

        #[test]
        fn include_and_exclude_match_the_reference(a in distinct_world(), pick in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
            let ga = group(&a, 0);
            let mut ranks: Vec<i32> = Vec::new();
            if !a.is_empty() {
                for p in pick {
                    let r = p.index(a.len()) as i32;
                    if !ranks.contains(&r) {
                        ranks.push(r);
                    }
                }
            }
            let incl: Vec<usize> = ranks.iter().map(|&r| a[r as usize]).collect();
            prop_assert_eq!(ga.include(&ranks).unwrap().world_ranks().to_vec(), incl[..].to_vec());
            let excl: Vec<usize> = (0..a.len())
                .filter(|r| !ranks.contains(&(*r as i32)))
                .map(|r| a[r])
                .collect();
            prop_assert_eq!(ga.exclude(&ranks).unwrap().world_ranks().to_vec(), excl[..].to_vec());
        }
    }

    #[test]
    fn ranges_expand_both_ways_and_bad_input_is_refused() {
        let g = group(&[10, 11, 12, 13, 14, 15, 3, 4], 3);
        let r = g.range_include(&[(0, 6, 3), (7, 5, -2)]).unwrap();
        assert_eq!(r.world_ranks(), &[10, 13, 3, 4, 15]);
        let r = g.range_exclude(&[(1, 7, 2)]).unwrap();
        assert_eq!(r.world_ranks(), &[10, 12, 14, 3]);
        assert!(g.range_include(&[(0, 8, 1)]).is_err());
        assert!(g.range_include(&[(0, 3, 0)]).is_err());
        assert!(g.range_include(&[(3, 0, 1)]).is_err());
        assert!(
            g.range_include(&[(0, 2, 1), (2, 3, 1)]).is_err(),
            "rank 2 twice"
        );
        assert!(g.include(&[0, 0]).is_err());
        assert!(g.include(&[-1]).is_err());
        assert!(g.exclude(&[8]).is_err());
        assert_eq!(g.include(&[]).unwrap().size(), 0);
        assert_eq!(g.rank(), Some(6));
        assert_eq!(g.include(&[0, 1]).unwrap().rank(), None);
    }
}
