//! The type signature: the sequence of primitive types in packing order, without displacements.
//!
//! It is kept apart from the layout because the layout merges runs across primitive types (a
//! struct of an `i32` and an `f64` side by side is one 12-byte run) while the signature must
//! still say what those bytes are, for [`Datatype::homogeneous`](super::Datatype::homogeneous)
//! and [`Datatype::primitive_elements_in`](super::Datatype::primitive_elements_in).

use std::sync::Arc;

use super::{DatatypeError, Primitive};

#[derive(Debug)]
pub(super) struct Signature {
    shape: Shape,
    /// Bytes of data.
    pub(super) size: usize,
    /// Primitive elements.
    pub(super) elements: usize,
    pub(super) uniform: Uniform,
}

#[derive(Debug)]
enum Shape {
    Empty,
    Primitive(Primitive),
    /// `count >= 2` copies.
    Repeat {
        count: usize,
        child: Arc<Signature>,
    },
    /// At least two, none empty.
    Sequence(Box<[Arc<Signature>]>),
}

/// Which primitives a signature holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Uniform {
    Empty,
    One(Primitive),
    Mixed,
}

impl Uniform {
    fn and(self, other: Uniform) -> Uniform {
        match (self, other) {
            (Uniform::Empty, x) | (x, Uniform::Empty) => x,
            (Uniform::One(a), Uniform::One(b)) if a == b => Uniform::One(a),
            _ => Uniform::Mixed,
        }
    }
}

impl Signature {
    pub(super) fn empty() -> Arc<Signature> {
        Arc::new(Signature {
            shape: Shape::Empty,
            size: 0,
            elements: 0,
            uniform: Uniform::Empty,
        })
    }

    pub(super) fn primitive(primitive: Primitive) -> Arc<Signature> {
        Arc::new(Signature {
            shape: Shape::Primitive(primitive),
            size: primitive.size(),
            elements: 1,
            uniform: Uniform::One(primitive),
        })
    }

    fn is_empty(&self) -> bool {
        self.elements == 0
    }

    pub(super) fn repeat(
        count: usize,
        child: &Arc<Signature>,
    ) -> Result<Arc<Signature>, DatatypeError> {
        if count == 0 || child.is_empty() {
            return Ok(Signature::empty());
        }
        if count == 1 {
            return Ok(child.clone());
        }
        if let Shape::Repeat {
            count: inner,
            child: grandchild,
        } = &child.shape
        {
            let count = count.checked_mul(*inner).ok_or(DatatypeError::Overflow)?;
            return Signature::repeat(count, grandchild);
        }
        Ok(Arc::new(Signature {
            shape: Shape::Repeat {
                count,
                child: child.clone(),
            },
            size: child
                .size
                .checked_mul(count)
                .ok_or(DatatypeError::Overflow)?,
            elements: child
                .elements
                .checked_mul(count)
                .ok_or(DatatypeError::Overflow)?,
            uniform: child.uniform,
        }))
    }

    pub(super) fn sequence(parts: Vec<Arc<Signature>>) -> Result<Arc<Signature>, DatatypeError> {
        let mut parts: Vec<Arc<Signature>> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        match parts.len() {
            0 => return Ok(Signature::empty()),
            1 => return Ok(parts.remove(0)),
            _ => {}
        }
        let mut size = 0usize;
        let mut elements = 0usize;
        let mut uniform = Uniform::Empty;
        for part in &parts {
            size = size.checked_add(part.size).ok_or(DatatypeError::Overflow)?;
            elements = elements
                .checked_add(part.elements)
                .ok_or(DatatypeError::Overflow)?;
            uniform = uniform.and(part.uniform);
        }
        Ok(Arc::new(Signature {
            shape: Shape::Sequence(parts.into_boxed_slice()),
            size,
            elements,
            uniform,
        }))
    }

    /// Whole primitive elements among the first `bytes` bytes of one instance (`bytes < size`),
    /// in O(depth × sequence width).
    pub(super) fn elements_in(&self, mut bytes: usize) -> usize {
        let mut total = 0;
        let mut node = self;
        loop {
            match &node.shape {
                Shape::Empty => return total,
                Shape::Primitive(p) => return total + usize::from(bytes >= p.size()),
                Shape::Repeat { count, child } => {
                    let whole = (bytes / child.size).min(*count);
                    total += whole * child.elements;
                    if whole == *count {
                        return total;
                    }
                    bytes -= whole * child.size;
                    node = child;
                }
                Shape::Sequence(parts) => {
                    let mut partial = None;
                    for part in parts.iter() {
                        if bytes >= part.size {
                            total += part.elements;
                            bytes -= part.size;
                        } else {
                            partial = Some(part);
                            break;
                        }
                    }
                    match partial {
                        Some(part) => node = part,
                        None => return total,
                    }
                }
            }
        }
    }
}
