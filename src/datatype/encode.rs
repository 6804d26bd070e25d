//! The wire form of a datatype, for a peer that reads it out of the sender's memory.
//!
//! The encoding is the constructor graph, not the layout: each distinct old type appears once,
//! as a node that refers to earlier nodes by index, and the last node is the type. Decoding
//! replays the constructors, so a peer's bytes get exactly the checks a local call gets (checked
//! arithmetic, [`MAX_DEPTH`](super::MAX_DEPTH), argument rules) and never a shortcut around them. References only
//! point backwards, so decoding needs no recursion; sizes are bounded by
//! [`MAX_ENCODING_BYTES`] and [`MAX_ENCODING_NODES`].
//!
//! Layout, all integers little endian: `b"ODT1"`, `u32` node count, then per node a tag byte and
//! its arguments (counts as `u64`, displacements as `i64`, lists as a `u32` length then items,
//! old types as `u32` node indices).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Combiner, Datatype, DatatypeError, Order, Primitive, UserDatatype};

const MAGIC: &[u8; 4] = b"ODT1";

/// The longest encoding [`Datatype::decode`] accepts.
pub const MAX_ENCODING_BYTES: usize = 16 << 20;

/// The most constructor nodes an encoding may hold.
pub const MAX_ENCODING_NODES: usize = 1 << 16;

const NAMED: u8 = 0;
const CONTIGUOUS: u8 = 1;
const VECTOR: u8 = 2;
const HVECTOR: u8 = 3;
const INDEXED: u8 = 4;
const HINDEXED: u8 = 5;
const INDEXED_BLOCK: u8 = 6;
const HINDEXED_BLOCK: u8 = 7;
const STRUCT: u8 = 8;
const RESIZED: u8 = 9;
const SUBARRAY: u8 = 10;
const DUP: u8 = 11;

struct Writer {
    out: Vec<u8>,
    /// Node index of each type already written, by identity.
    written: HashMap<*const (), u32>,
    nodes: u32,
}

impl Writer {
    fn u64(&mut self, n: u64) {
        self.out.extend_from_slice(&n.to_le_bytes());
    }

    fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    fn displacement(&mut self, d: isize) {
        self.out.extend_from_slice(&(d as i64).to_le_bytes());
    }

    fn counts(&mut self, list: &[usize]) {
        self.out
            .extend_from_slice(&(list.len() as u32).to_le_bytes());
        list.iter().for_each(|&n| self.count(n));
    }

    fn displacements(&mut self, list: &[isize]) {
        self.out
            .extend_from_slice(&(list.len() as u32).to_le_bytes());
        list.iter().for_each(|&d| self.displacement(d));
    }

    fn reference(&mut self, index: u32) {
        self.out.extend_from_slice(&index.to_le_bytes());
    }

    /// Writes `datatype` after everything it is made of; returns its node index. Recursion is
    /// bounded by [`MAX_DEPTH`].
    fn node(&mut self, datatype: &Datatype) -> u32 {
        let key = Arc::as_ptr(&datatype.0) as *const ();
        if let Some(&index) = self.written.get(&key) {
            return index;
        }
        let olds: Vec<u32> = datatype
            .combiner()
            .old_types()
            .into_iter()
            .map(|old| self.node(old))
            .collect();
        match datatype.combiner() {
            Combiner::Named(primitive) => {
                self.out.push(NAMED);
                self.out.push(*primitive as u8);
            }
            Combiner::Contiguous { count, .. } => {
                self.out.push(CONTIGUOUS);
                self.count(*count);
            }
            Combiner::Vector {
                count,
                blocklength,
                stride,
                ..
            }
            | Combiner::HVector {
                count,
                blocklength,
                stride_bytes: stride,
                ..
            } => {
                let tag = if matches!(datatype.combiner(), Combiner::Vector { .. }) {
                    VECTOR
                } else {
                    HVECTOR
                };
                self.out.push(tag);
                self.count(*count);
                self.count(*blocklength);
                self.displacement(*stride);
            }
            Combiner::Indexed {
                blocklengths,
                displacements,
                ..
            }
            | Combiner::HIndexed {
                blocklengths,
                displacements_bytes: displacements,
                ..
            } => {
                let tag = if matches!(datatype.combiner(), Combiner::Indexed { .. }) {
                    INDEXED
                } else {
                    HINDEXED
                };
                self.out.push(tag);
                self.counts(blocklengths);
                self.displacements(displacements);
            }
            Combiner::IndexedBlock {
                blocklength,
                displacements,
                ..
            }
            | Combiner::HIndexedBlock {
                blocklength,
                displacements_bytes: displacements,
                ..
            } => {
                let tag = if matches!(datatype.combiner(), Combiner::IndexedBlock { .. }) {
                    INDEXED_BLOCK
                } else {
                    HINDEXED_BLOCK
                };
                self.out.push(tag);
                self.count(*blocklength);
                self.displacements(displacements);
            }
            Combiner::Struct {
                blocklengths,
                displacements_bytes,
                ..
            } => {
                self.out.push(STRUCT);
                self.counts(blocklengths);
                self.displacements(displacements_bytes);
            }
            Combiner::Resized { lb, extent, .. } => {
                self.out.push(RESIZED);
                self.displacement(*lb);
                self.displacement(*extent);
            }
            Combiner::Subarray {
                sizes,
                subsizes,
                starts,
                order,
                ..
            } => {
                self.out.push(SUBARRAY);
                self.counts(sizes);
                self.counts(subsizes);
                self.counts(starts);
                self.out.push(match order {
                    Order::C => 0,
                    Order::Fortran => 1,
                });
            }
            Combiner::Dup(_) => self.out.push(DUP),
        }
        // A struct lists its types after its lists (their count is the blocklengths'); every
        // other constructor has exactly one old type, none for a named one.
        olds.iter().for_each(|&index| self.reference(index));
        let index = self.nodes;
        self.nodes += 1;
        self.written.insert(key, index);
        index
    }
}

pub(super) fn encode(datatype: &Datatype) -> Vec<u8> {
    let mut writer = Writer {
        out: Vec::new(),
        written: HashMap::new(),
        nodes: 0,
    };
    writer.out.extend_from_slice(MAGIC);
    writer.out.extend_from_slice(&[0; 4]);
    writer.node(datatype);
    let nodes = writer.nodes.to_le_bytes();
    writer.out[4..8].copy_from_slice(&nodes);
    writer.out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn bad(what: impl Into<String>) -> DatatypeError {
    DatatypeError::BadEncoding(what.into())
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DatatypeError> {
        let end = self
            .at
            .checked_add(N)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(bad(format!(
                "truncated at byte {} of {}",
                self.at,
                self.bytes.len()
            )));
        };
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DatatypeError> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DatatypeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn count(&mut self) -> Result<usize, DatatypeError> {
        usize::try_from(u64::from_le_bytes(self.take()?)).map_err(|_| DatatypeError::Overflow)
    }

    fn displacement(&mut self) -> Result<isize, DatatypeError> {
        isize::try_from(i64::from_le_bytes(self.take()?)).map_err(|_| DatatypeError::Overflow)
    }

    /// A list length, refused before allocating if the rest of the input cannot hold it.
    fn length(&mut self, item_bytes: usize) -> Result<usize, DatatypeError> {
        let len = self.u32()? as usize;
        if len.saturating_mul(item_bytes) > self.bytes.len() - self.at {
            return Err(bad(format!(
                "a list of {len} items at byte {} runs past the end",
                self.at
            )));
        }
        Ok(len)
    }

    fn counts(&mut self) -> Result<Vec<usize>, DatatypeError> {
        let len = self.length(8)?;
        (0..len).map(|_| self.count()).collect()
    }

    fn displacements(&mut self) -> Result<Vec<isize>, DatatypeError> {
        let len = self.length(8)?;
        (0..len).map(|_| self.displacement()).collect()
    }

    fn old<'t>(&mut self, decoded: &'t [Datatype]) -> Result<&'t Datatype, DatatypeError> {
        let index = self.u32()? as usize;
        decoded.get(index).ok_or_else(|| {
            bad(format!(
                "node {} refers to node {index}, not yet defined",
                decoded.len()
            ))
        })
    }

    fn node(&mut self, decoded: &[Datatype]) -> Result<Datatype, DatatypeError> {
        let tag = self.u8()?;
        let made = match tag {
            NAMED => {
                let code = self.u8()?;
                let primitive = Primitive::ALL
                    .get(code as usize)
                    .ok_or_else(|| bad(format!("unknown primitive {code}")))?;
                return Ok(Datatype::primitive(*primitive));
            }
            CONTIGUOUS => {
                let count = self.count()?;
                UserDatatype::contiguous(count, self.old(decoded)?)?
            }
            VECTOR | HVECTOR => {
                let (count, blocklength, stride) =
                    (self.count()?, self.count()?, self.displacement()?);
                let old = self.old(decoded)?;
                if tag == VECTOR {
                    UserDatatype::vector(count, blocklength, stride, old)?
                } else {
                    UserDatatype::heterogeneous_vector(count, blocklength, stride, old)?
                }
            }
            INDEXED | HINDEXED => {
                let (blocklengths, displacements) = (self.counts()?, self.displacements()?);
                let old = self.old(decoded)?;
                if tag == INDEXED {
                    UserDatatype::indexed(&blocklengths, &displacements, old)?
                } else {
                    UserDatatype::heterogeneous_indexed(&blocklengths, &displacements, old)?
                }
            }
            INDEXED_BLOCK | HINDEXED_BLOCK => {
                let (blocklength, displacements) = (self.count()?, self.displacements()?);
                let old = self.old(decoded)?;
                if tag == INDEXED_BLOCK {
                    UserDatatype::indexed_block(blocklength, &displacements, old)?
                } else {
                    UserDatatype::heterogeneous_indexed_block(blocklength, &displacements, old)?
                }
            }
            STRUCT => {
                let (blocklengths, displacements) = (self.counts()?, self.displacements()?);
                if blocklengths.len() != displacements.len() {
                    return Err(bad("struct lists of different lengths"));
                }
                let types = (0..blocklengths.len())
                    .map(|_| self.old(decoded).cloned())
                    .collect::<Result<Vec<_>, _>>()?;
                UserDatatype::structured(&blocklengths, &displacements, &types)?
            }
            RESIZED => {
                let (lb, extent) = (self.displacement()?, self.displacement()?);
                UserDatatype::resized(self.old(decoded)?, lb, extent)?
            }
            SUBARRAY => {
                let (sizes, subsizes, starts) = (self.counts()?, self.counts()?, self.counts()?);
                let order = match self.u8()? {
                    0 => Order::C,
                    1 => Order::Fortran,
                    other => return Err(bad(format!("unknown subarray order {other}"))),
                };
                UserDatatype::subarray(&sizes, &subsizes, &starts, order, self.old(decoded)?)?
            }
            DUP => UserDatatype::dup(self.old(decoded)?),
            other => return Err(bad(format!("unknown constructor tag {other}"))),
        };
        Ok(made.into())
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<Datatype, DatatypeError> {
    if bytes.len() > MAX_ENCODING_BYTES {
        return Err(bad(format!(
            "{} bytes, more than the limit of {MAX_ENCODING_BYTES}",
            bytes.len()
        )));
    }
    let mut reader = Reader { bytes, at: 0 };
    if &reader.take::<4>()? != MAGIC {
        return Err(bad("not a datatype encoding (wrong magic)"));
    }
    let nodes = reader.u32()? as usize;
    // Every node takes at least two bytes, which bounds a lying count before allocating.
    if nodes == 0 || nodes > MAX_ENCODING_NODES || nodes > bytes.len() / 2 {
        return Err(bad(format!("implausible node count {nodes}")));
    }
    let mut decoded = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        let datatype = reader.node(&decoded)?;
        decoded.push(datatype);
    }
    if reader.at != bytes.len() {
        return Err(bad(format!("{} trailing bytes", bytes.len() - reader.at)));
    }
    decoded.pop().ok_or_else(|| bad("no nodes"))
}
