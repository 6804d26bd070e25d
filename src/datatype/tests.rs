//! Every constructor against a naive model of MPI-3.1 §4.1: a typemap expanded into one entry
//! per primitive element and per bound marker, from which bounds, segments, signatures and
//! packing follow by definition.

use proptest::prelude::*;

use super::*;

/// A type to build, as data, so the model can expand it independently.
#[derive(Debug, Clone)]
enum Spec {
    Primitive(Primitive),
    Contiguous(usize, Box<Spec>),
    Vector(usize, usize, isize, Box<Spec>),
    HVector(usize, usize, isize, Box<Spec>),
    Indexed(Vec<(usize, isize)>, Box<Spec>),
    HIndexed(Vec<(usize, isize)>, Box<Spec>),
    IndexedBlock(usize, Vec<isize>, Box<Spec>),
    HIndexedBlock(usize, Vec<isize>, Box<Spec>),
    Struct(Vec<(usize, isize, Spec)>),
    Resized(isize, isize, Box<Spec>),
    /// (size, subsize, start) per dimension.
    Subarray(Vec<(usize, usize, usize)>, Order, Box<Spec>),
    Dup(Box<Spec>),
}

fn build(spec: &Spec) -> Result<Datatype, DatatypeError> {
    let made = match spec {
        Spec::Primitive(p) => return Ok(Datatype::primitive(*p)),
        Spec::Contiguous(count, old) => UserDatatype::contiguous(*count, &build(old)?)?,
        Spec::Vector(count, blocklength, stride, old) => {
            UserDatatype::vector(*count, *blocklength, *stride, &build(old)?)?
        }
        Spec::HVector(count, blocklength, stride, old) => {
            UserDatatype::heterogeneous_vector(*count, *blocklength, *stride, &build(old)?)?
        }
        Spec::Indexed(blocks, old) => {
            let (lengths, displacements): (Vec<_>, Vec<_>) = blocks.iter().copied().unzip();
            UserDatatype::indexed(&lengths, &displacements, &build(old)?)?
        }
        Spec::HIndexed(blocks, old) => {
            let (lengths, displacements): (Vec<_>, Vec<_>) = blocks.iter().copied().unzip();
            UserDatatype::heterogeneous_indexed(&lengths, &displacements, &build(old)?)?
        }
        Spec::IndexedBlock(blocklength, displacements, old) => {
            UserDatatype::indexed_block(*blocklength, displacements, &build(old)?)?
        }
        Spec::HIndexedBlock(blocklength, displacements, old) => {
            UserDatatype::heterogeneous_indexed_block(*blocklength, displacements, &build(old)?)?
        }
        Spec::Struct(fields) => {
            let lengths: Vec<usize> = fields.iter().map(|f| f.0).collect();
            let displacements: Vec<isize> = fields.iter().map(|f| f.1).collect();
            let types = fields
                .iter()
                .map(|f| build(&f.2))
                .collect::<Result<Vec<_>, _>>()?;
            UserDatatype::structured(&lengths, &displacements, &types)?
        }
        Spec::Resized(lb, extent, old) => UserDatatype::resized(&build(old)?, *lb, *extent)?,
        Spec::Subarray(dimensions, order, old) => {
            let sizes: Vec<usize> = dimensions.iter().map(|d| d.0).collect();
            let subsizes: Vec<usize> = dimensions.iter().map(|d| d.1).collect();
            let starts: Vec<usize> = dimensions.iter().map(|d| d.2).collect();
            UserDatatype::subarray(&sizes, &subsizes, &starts, *order, &build(old)?)?
        }
        Spec::Dup(old) => UserDatatype::dup(&build(old)?),
    };
    Ok(made.into())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    Data(isize, Primitive),
    Lb(isize),
    Ub(isize),
}

/// The typemap, in order.
#[derive(Debug, Clone, Default)]
struct Typemap(Vec<Entry>);

impl Typemap {
    fn shifted(&self, by: isize) -> impl Iterator<Item = Entry> + '_ {
        self.0.iter().map(move |e| match *e {
            Entry::Data(at, p) => Entry::Data(at + by, p),
            Entry::Lb(at) => Entry::Lb(at + by),
            Entry::Ub(at) => Entry::Ub(at + by),
        })
    }

    fn data(&self) -> impl Iterator<Item = (isize, Primitive)> + '_ {
        self.0.iter().filter_map(|e| match *e {
            Entry::Data(at, p) => Some((at, p)),
            _ => None,
        })
    }

    fn true_bounds(&self) -> Option<(isize, isize)> {
        let low = self.data().map(|(at, _)| at).min()?;
        let high = self.data().map(|(at, p)| at + p.size() as isize).max()?;
        Some((low, high))
    }

    fn lb_ub(&self) -> (isize, isize) {
        let lbs: Vec<isize> = self
            .0
            .iter()
            .filter_map(|e| {
                if let Entry::Lb(at) = e {
                    Some(*at)
                } else {
                    None
                }
            })
            .collect();
        let ubs: Vec<isize> = self
            .0
            .iter()
            .filter_map(|e| {
                if let Entry::Ub(at) = e {
                    Some(*at)
                } else {
                    None
                }
            })
            .collect();
        let (true_lb, true_ub) = self.true_bounds().unwrap_or((0, 0));
        let lb = lbs.iter().copied().min().unwrap_or(true_lb);
        let ub = ubs.iter().copied().max().unwrap_or(true_ub);
        (lb, ub)
    }

    fn extent(&self) -> isize {
        let (lb, ub) = self.lb_ub();
        ub - lb
    }

    fn size(&self) -> usize {
        self.data().map(|(_, p)| p.size()).sum()
    }

    fn without_markers(&self) -> Typemap {
        Typemap(
            self.0
                .iter()
                .copied()
                .filter(|e| matches!(e, Entry::Data(..)))
                .collect(),
        )
    }

    /// `count` elements, element `i` at `i * extent`.
    fn repeated(&self, count: usize) -> Typemap {
        let extent = self.extent();
        let mut out = Vec::new();
        for i in 0..count {
            out.extend(self.shifted(i as isize * extent));
        }
        Typemap(out)
    }

    fn merged_segments(&self) -> Vec<(isize, usize)> {
        let mut out: Vec<(isize, usize)> = Vec::new();
        for (at, p) in self.data() {
            match out.last_mut() {
                Some((start, len)) if *start + *len as isize == at => *len += p.size(),
                _ => out.push((at, p.size())),
            }
        }
        out
    }
}

fn model(spec: &Spec) -> Typemap {
    let mut out = Vec::new();
    match spec {
        Spec::Primitive(p) => out.push(Entry::Data(0, *p)),
        Spec::Contiguous(count, old) => out = model(old).repeated(*count).0,
        Spec::Vector(count, blocklength, stride, old) => {
            let old = model(old);
            let extent = old.extent();
            for i in 0..*count as isize {
                for j in 0..*blocklength as isize {
                    out.extend(old.shifted((i * stride + j) * extent));
                }
            }
        }
        Spec::HVector(count, blocklength, stride, old) => {
            let old = model(old);
            let extent = old.extent();
            for i in 0..*count as isize {
                for j in 0..*blocklength as isize {
                    out.extend(old.shifted(i * stride + j * extent));
                }
            }
        }
        Spec::Indexed(blocks, old) => {
            let old = model(old);
            let extent = old.extent();
            for &(blocklength, at) in blocks {
                for j in 0..blocklength as isize {
                    out.extend(old.shifted((at + j) * extent));
                }
            }
        }
        Spec::HIndexed(blocks, old) => {
            let old = model(old);
            let extent = old.extent();
            for &(blocklength, at) in blocks {
                for j in 0..blocklength as isize {
                    out.extend(old.shifted(at + j * extent));
                }
            }
        }
        Spec::IndexedBlock(blocklength, displacements, old) => {
            let blocks = displacements.iter().map(|&d| (*blocklength, d)).collect();
            return model(&Spec::Indexed(blocks, old.clone()));
        }
        Spec::HIndexedBlock(blocklength, displacements, old) => {
            let blocks = displacements.iter().map(|&d| (*blocklength, d)).collect();
            return model(&Spec::HIndexed(blocks, old.clone()));
        }
        Spec::Struct(fields) => {
            for (blocklength, at, old) in fields {
                let old = model(old);
                let extent = old.extent();
                for j in 0..*blocklength as isize {
                    out.extend(old.shifted(at + j * extent));
                }
            }
        }
        Spec::Resized(lb, extent, old) => {
            out.push(Entry::Lb(*lb));
            out.extend(model(old).without_markers().0);
            out.push(Entry::Ub(lb + extent));
        }
        Spec::Subarray(dimensions, order, old) => {
            let old = model(old);
            let extent = old.extent();
            let old = old.without_markers();
            let n = dimensions.len();
            // Dimensions from fastest to slowest, and each one's stride in elements.
            let fastest_first: Vec<usize> = match order {
                Order::C => (0..n).rev().collect(),
                Order::Fortran => (0..n).collect(),
            };
            let mut strides = vec![0isize; n];
            let mut stride = 1isize;
            for &k in &fastest_first {
                strides[k] = stride;
                stride *= dimensions[k].0 as isize;
            }
            // Walk the subarray's indices with the fastest dimension innermost.
            let mut index: Vec<usize> = dimensions.iter().map(|d| d.2).collect();
            'walk: loop {
                let linear: isize = (0..n).map(|k| index[k] as isize * strides[k]).sum();
                out.extend(old.shifted(linear * extent));
                for &k in &fastest_first {
                    index[k] += 1;
                    if index[k] < dimensions[k].2 + dimensions[k].1 {
                        continue 'walk;
                    }
                    index[k] = dimensions[k].2;
                }
                break;
            }
            out.insert(0, Entry::Lb(0));
            out.push(Entry::Ub(stride * extent));
        }
        Spec::Dup(old) => return model(old),
    }
    Typemap(out)
}

fn primitive() -> impl Strategy<Value = Primitive> {
    prop_oneof![
        Just(Primitive::U8),
        Just(Primitive::I16),
        Just(Primitive::I32),
        Just(Primitive::F32),
        Just(Primitive::F64),
        Just(Primitive::Byte),
    ]
}

/// Mostly 1 to 3, sometimes 0.
fn count() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![1 => Just(0usize), 7 => 1usize..4]
}

/// Mostly 1 or 2, sometimes 0.
fn block() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![1 => Just(0usize), 7 => 1usize..3]
}

/// Types nested up to `depth` constructors deep, mostly as deep as allowed.
fn spec_at(depth: u32) -> BoxedStrategy<Spec> {
    let leaf = primitive().prop_map(Spec::Primitive);
    if depth == 0 {
        return leaf.boxed();
    }
    let inner = spec_at(depth - 1);
    let boxed = inner.clone().prop_map(Box::new);
    let dimension = (1usize..4, 0usize..3, 0usize..3).prop_map(|(size, a, b)| {
        let subsize = 1 + a % size;
        (size, subsize, b % (size - subsize + 1))
    });
    prop_oneof![
        1 => leaf,
        1 => (count(), boxed.clone()).prop_map(|(c, o)| Spec::Contiguous(c, o)),
        1 => (count(), block(), -3isize..4, boxed.clone())
            .prop_map(|(c, b, s, o)| Spec::Vector(c, b, s, o)),
        1 => (count(), block(), -24isize..32, boxed.clone())
            .prop_map(|(c, b, s, o)| Spec::HVector(c, b, s, o)),
        1 => (prop::collection::vec((block(), -3isize..5), 1..4), boxed.clone())
            .prop_map(|(b, o)| Spec::Indexed(b, o)),
        1 => (prop::collection::vec((block(), -16isize..24), 0..4), boxed.clone())
            .prop_map(|(b, o)| Spec::HIndexed(b, o)),
        1 => (block(), prop::collection::vec(-3isize..5, 1..4), boxed.clone())
            .prop_map(|(b, d, o)| Spec::IndexedBlock(b, d, o)),
        1 => (block(), prop::collection::vec(-16isize..24, 0..4), boxed.clone())
            .prop_map(|(b, d, o)| Spec::HIndexedBlock(b, d, o)),
        1 => prop::collection::vec((block(), -16isize..24, inner), 1..4).prop_map(Spec::Struct),
        2 => (-8isize..8, -4isize..24, boxed.clone()).prop_map(|(l, e, o)| Spec::Resized(l, e, o)),
        1 => (
            prop::collection::vec(dimension, 1..3),
            prop_oneof![Just(Order::C), Just(Order::Fortran)],
            boxed.clone()
        )
            .prop_map(|(d, order, o)| Spec::Subarray(d, order, o)),
        1 => boxed.prop_map(Spec::Dup),
    ]
    .boxed()
}

fn spec() -> BoxedStrategy<Spec> {
    prop_oneof![1 => spec_at(1), 1 => spec_at(2), 4 => spec_at(4)].boxed()
}

/// Elements in the first `bytes` bytes of the packed stream, by walking the model's signature.
fn model_elements_in(typemap: &Typemap, bytes: usize) -> usize {
    let signature: Vec<usize> = typemap.data().map(|(_, p)| p.size()).collect();
    if signature.is_empty() {
        return 0;
    }
    let mut left = bytes;
    let mut elements = 0;
    for size in signature.iter().cycle() {
        if left < *size {
            break;
        }
        left -= size;
        elements += 1;
    }
    elements
}

fn model_overlaps(typemap: &Typemap) -> bool {
    let mut bytes: Vec<isize> = typemap
        .data()
        .flat_map(|(at, p)| at..at + p.size() as isize)
        .collect();
    let all = bytes.len();
    bytes.sort_unstable();
    bytes.dedup();
    bytes.len() != all
}

/// The datatype of `count` elements shifted so that the layout starts at or after byte 0, and
/// the model of the same, with the buffer length they need.
fn in_a_buffer(
    datatype: &Datatype,
    typemap: &Typemap,
    count: usize,
) -> (Datatype, usize, Typemap, usize) {
    let elements = typemap.repeated(count);
    let (low, high) = elements.true_bounds().unwrap_or((0, 0));
    if low >= 0 {
        return (datatype.clone(), count, elements, high as usize);
    }
    let shifted = UserDatatype::heterogeneous_indexed(&[count], &[-low], datatype)
        .expect("a small shift")
        .into();
    let moved = Typemap(elements.shifted(-low).collect());
    (shifted, 1, moved, (high - low) as usize)
}

fn check_against_model(spec: &Spec) -> Result<(), TestCaseError> {
    let datatype = build(spec).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let typemap = model(spec);
    let (lb, ub) = typemap.lb_ub();
    let (true_lb, true_ub) = typemap.true_bounds().unwrap_or((0, 0));
    prop_assert_eq!(datatype.size(), typemap.size());
    prop_assert_eq!(datatype.lower_bound(), lb);
    prop_assert_eq!(datatype.extent(), ub - lb);
    prop_assert_eq!(datatype.true_lower_bound(), true_lb);
    prop_assert_eq!(datatype.true_extent(), true_ub - true_lb);

    for count in 0..4 {
        let elements = typemap.repeated(count);
        let expected = elements.merged_segments();
        let segments: Vec<_> = datatype.segments(count).collect();
        prop_assert_eq!(&segments, &expected, "count {}", count);
        prop_assert_eq!(datatype.segment_count(count), expected.len());
        let run = datatype.contiguous_run(count);
        match expected.len() {
            0 => prop_assert_eq!(run, Some((0, 0))),
            1 => prop_assert_eq!(run, Some(expected[0])),
            _ => prop_assert_eq!(run, None),
        }
        prop_assert_eq!(datatype.overlaps(count), model_overlaps(&elements));
        prop_assert_eq!(datatype.pack_size(count), elements.size());
    }

    let primitives: Vec<Primitive> = typemap.data().map(|(_, p)| p).collect();
    let homogeneous = match primitives.first() {
        Some(&first) if primitives.iter().all(|&p| p == first) => Some(first),
        _ => None,
    };
    prop_assert_eq!(datatype.homogeneous(), homogeneous);
    let size = typemap.size();
    let probes = (0..=(2 * size + 3).min(64)).chain([
        size.saturating_sub(1),
        size,
        size + 1,
        2 * size - size / 3,
        2 * size + 3,
    ]);
    for bytes in probes {
        prop_assert_eq!(
            datatype.primitive_elements_in(bytes),
            model_elements_in(&typemap, bytes),
            "bytes {}",
            bytes
        );
        let count = if size == 0 {
            Some(0)
        } else if bytes % size == 0 {
            Some(bytes / size)
        } else {
            None
        };
        prop_assert_eq!(datatype.count_in(bytes), count);
    }

    for count in 1..3 {
        let (placed, placed_count, elements, len) = in_a_buffer(&datatype, &typemap, count);
        let buffer: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let mut packed = vec![0u8; elements.size()];
        let written = placed
            .pack_into(&buffer, placed_count, &mut packed)
            .map_err(|e| TestCaseError::fail(format!("pack: {e}")))?;
        prop_assert_eq!(written, elements.size());
        let expected: Vec<u8> = elements
            .data()
            .flat_map(|(at, p)| buffer[at as usize..at as usize + p.size()].to_vec())
            .collect();
        prop_assert_eq!(&packed, &expected);

        // Unpack all of it, then a short message of half.
        for take in [packed.len(), packed.len() / 2] {
            let mut received = vec![0u8; len];
            let consumed = placed
                .unpack_from(&packed[..take], &mut received, placed_count)
                .map_err(|e| TestCaseError::fail(format!("unpack: {e}")))?;
            prop_assert_eq!(consumed, take);
            let mut expected = vec![0u8; len];
            let mut read = 0;
            for (at, p) in elements.data() {
                for b in 0..p.size() {
                    if read < take {
                        expected[at as usize + b] = packed[read];
                        read += 1;
                    }
                }
            }
            prop_assert_eq!(&received, &expected);
        }
    }

    let decoded = Datatype::decode(&datatype.encode())
        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(&decoded, &datatype);
    prop_assert_eq!(decoded.size(), datatype.size());
    prop_assert_eq!(decoded.lower_bound(), datatype.lower_bound());
    prop_assert_eq!(decoded.extent(), datatype.extent());
    prop_assert_eq!(decoded.true_lower_bound(), datatype.true_lower_bound());
    prop_assert_eq!(decoded.true_extent(), datatype.true_extent());
    prop_assert_eq!(decoded.homogeneous(), datatype.homogeneous());
    prop_assert!(decoded.segments(3).eq(datatype.segments(3)));
    prop_assert_eq!(
        decoded.primitive_elements_in(size + 5),
        datatype.primitive_elements_in(size + 5)
    );
    prop_assert_eq!(decoded.encode(), datatype.encode());
    Ok(())
}

/// Whatever comes back from decoding must be usable without panicking.
fn exercise(datatype: &Datatype) {
    let _ = (datatype.size(), datatype.extent(), datatype.true_extent());
    let _ = (datatype.homogeneous(), datatype.primitive_elements_in(1000));
    if datatype.layout().pieces < 10_000 {
        let _ = datatype.segments(2).count();
        let _ = datatype.overlaps(2);
    }
    let _ = Datatype::decode(&datatype.encode());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn every_constructor_matches_the_typemap_model(spec in spec()) {
        check_against_model(&spec)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        with_magic in any::<bool>(),
    ) {
        let mut input = if with_magic { b"ODT1".to_vec() } else { Vec::new() };
        input.extend(bytes);
        if let Ok(datatype) = Datatype::decode(&input) {
            exercise(&datatype);
        }
    }

    #[test]
    fn decoding_damaged_encodings_never_panics(
        spec in spec(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let encoding = build(&spec).expect("small types build").encode();
        let mut mutated = encoding.clone();
        let i = at.index(mutated.len());
        mutated[i] = value;
        if let Ok(datatype) = Datatype::decode(&mutated) {
            exercise(&datatype);
        }
        let truncated = &encoding[..cut.index(encoding.len())];
        prop_assert!(Datatype::decode(truncated).is_err());
    }
}

fn i32_type() -> Datatype {
    Datatype::primitive(Primitive::I32)
}

#[test]
fn vector_of_pairs_has_mpi_size_and_extent() {
    let vector = UserDatatype::vector(3, 2, 4, &i32_type()).unwrap();
    assert_eq!(vector.size(), 24);
    assert_eq!(vector.extent(), 40);
    assert_eq!(vector.lower_bound(), 0);
    assert_eq!(
        vector.segments(1).collect::<Vec<_>>(),
        [(0, 8), (16, 8), (32, 8)]
    );
    // The second element starts one extent on, right after the last block.
    assert_eq!(vector.segment_count(2), 5);
    assert_eq!(vector.homogeneous(), Some(Primitive::I32));
}

#[test]
fn negative_stride_takes_the_lower_bound_from_the_lowest_block() {
    let vector = UserDatatype::vector(3, 1, -2, &i32_type()).unwrap();
    assert_eq!(vector.lower_bound(), -16);
    assert_eq!(vector.extent(), 20);
    assert_eq!(
        vector.segments(1).collect::<Vec<_>>(),
        [(0, 4), (-8, 4), (-16, 4)]
    );
}

#[test]
fn resized_changes_the_extent_only() {
    let pair = UserDatatype::contiguous(2, &i32_type()).unwrap();
    let resized = UserDatatype::resized(&pair, -4, 16).unwrap();
    assert_eq!(resized.size(), pair.size());
    assert_eq!((resized.lower_bound(), resized.extent()), (-4, 16));
    assert_eq!(resized.true_lower_bound(), pair.true_lower_bound());
    assert_eq!(resized.true_extent(), pair.true_extent());
    assert!(resized.segments(1).eq(pair.segments(1)));
    assert_eq!(resized.segments(2).collect::<Vec<_>>(), [(0, 8), (16, 8)]);
}

#[test]
fn struct_bounds_come_from_markers_when_a_member_was_resized() {
    let marked = UserDatatype::resized(&i32_type(), 0, 8).unwrap();
    let f64_type = Datatype::primitive(Primitive::F64);
    let mixed = UserDatatype::structured(&[1, 1], &[0, 100], &[marked.into(), f64_type]).unwrap();
    assert_eq!((mixed.lower_bound(), mixed.extent()), (0, 8));
    assert_eq!((mixed.true_lower_bound(), mixed.true_extent()), (0, 108));
    assert_eq!(mixed.homogeneous(), None);
    assert_eq!(mixed.primitive_elements_in(12), 2);
    assert_eq!(mixed.primitive_elements_in(11), 1);
}

#[test]
fn subarray_in_c_order() {
    // A 4×3×2 array of i32, the block [1..3, 0..2, 1..2].
    let sub =
        UserDatatype::subarray(&[4, 3, 2], &[2, 2, 1], &[1, 0, 1], Order::C, &i32_type()).unwrap();
    assert_eq!(sub.size(), 16);
    assert_eq!((sub.lower_bound(), sub.extent()), (0, 96));
    assert_eq!((sub.true_lower_bound(), sub.true_extent()), (28, 36));
    assert_eq!(
        sub.segments(1).collect::<Vec<_>>(),
        [(28, 4), (36, 4), (52, 4), (60, 4)]
    );
}

#[test]
fn subarray_in_fortran_order() {
    let sub = UserDatatype::subarray(
        &[4, 3, 2],
        &[2, 2, 1],
        &[1, 0, 1],
        Order::Fortran,
        &i32_type(),
    )
    .unwrap();
    assert_eq!((sub.lower_bound(), sub.extent()), (0, 96));
    assert_eq!(sub.segments(1).collect::<Vec<_>>(), [(52, 8), (68, 8)]);
    assert_eq!(
        sub.segments(2).collect::<Vec<_>>(),
        [(52, 8), (68, 8), (148, 8), (164, 8)]
    );
}

#[test]
fn subarray_rejects_blocks_outside_the_array() {
    let error = UserDatatype::subarray(&[4], &[3], &[2], Order::C, &i32_type()).unwrap_err();
    assert!(matches!(error, DatatypeError::InvalidArgument(_)));
}

#[test]
fn a_vector_of_eight_million_blocks_is_walked_lazily() {
    let f64_type = Datatype::primitive(Primitive::F64);
    let vector = UserDatatype::vector(8 << 20, 1, 2, &f64_type).unwrap();
    assert_eq!(vector.segment_count(1), 8 << 20);
    assert_eq!(vector.contiguous_run(1), None);
    let mut segments = vector.segments(1);
    assert_eq!(segments.next(), Some((0, 8)));
    assert_eq!(segments.nth(1000), Some((16 * 1001, 8)));
    assert!(!vector.overlaps(1));
    assert!(!vector.overlaps(3));
    // A stride of one block is one run.
    let dense = UserDatatype::vector(8 << 20, 1, 1, &f64_type).unwrap();
    assert_eq!(dense.contiguous_run(2), Some((0, 2 * 8 * (8 << 20))));
}

#[test]
fn constructors_refuse_overflow() {
    let f64_type = Datatype::primitive(Primitive::F64);
    assert_eq!(
        UserDatatype::contiguous(usize::MAX, &f64_type).unwrap_err(),
        DatatypeError::Overflow
    );
    assert_eq!(
        UserDatatype::vector(2, 1, isize::MAX, &f64_type).unwrap_err(),
        DatatypeError::Overflow
    );
    // Each bound fits, their difference does not.
    let far =
        UserDatatype::heterogeneous_indexed(&[1, 1], &[isize::MIN, isize::MAX - 8], &f64_type);
    assert_eq!(far.unwrap_err(), DatatypeError::Overflow);
    let nothing = UserDatatype::contiguous(0, &f64_type).unwrap();
    let markers_only = UserDatatype::resized(&nothing, 0, 8).unwrap();
    let wider =
        UserDatatype::heterogeneous_indexed(&[1, 1], &[isize::MIN, isize::MAX - 8], &markers_only);
    assert_eq!(wider.unwrap_err(), DatatypeError::Overflow);
    assert_eq!(
        UserDatatype::resized(&f64_type, isize::MAX, 1).unwrap_err(),
        DatatypeError::Overflow
    );
    assert_eq!(
        UserDatatype::heterogeneous_indexed(&[1, 1], &[isize::MIN, isize::MAX], &f64_type)
            .unwrap_err(),
        DatatypeError::Overflow
    );
}

#[test]
fn nesting_is_bounded_and_dups_never_fail() {
    let mut datatype = i32_type();
    for _ in 0..MAX_DEPTH {
        datatype = UserDatatype::contiguous(1, &datatype).unwrap().into();
    }
    assert!(matches!(
        UserDatatype::contiguous(1, &datatype),
        Err(DatatypeError::TooDeep { .. })
    ));
    for _ in 0..10 {
        datatype = UserDatatype::dup(&datatype).into();
    }
    assert!(datatype.depth() <= MAX_DEPTH + 1);
    assert_eq!(Datatype::decode(&datatype.encode()).unwrap(), datatype);
}

#[test]
fn encoding_shares_repeated_old_types() {
    let mut datatype = i32_type();
    for _ in 0..30 {
        datatype =
            UserDatatype::structured(&[1, 1], &[0, 8], &[datatype.clone(), datatype.clone()])
                .unwrap()
                .into();
        datatype = UserDatatype::resized(&datatype, 0, 4).unwrap().into();
    }
    let encoding = datatype.encode();
    assert!(encoding.len() < 4096, "{} bytes", encoding.len());
    assert_eq!(Datatype::decode(&encoding).unwrap(), datatype);
}

#[test]
fn decode_rejects_trailing_bytes_and_forward_references() {
    let mut encoding = UserDatatype::contiguous(2, &i32_type()).unwrap().encode();
    encoding.push(0);
    assert!(matches!(
        Datatype::decode(&encoding),
        Err(DatatypeError::BadEncoding(_))
    ));
    // One node, a contiguous referring to itself.
    let mut forward = b"ODT1".to_vec();
    forward.extend(1u32.to_le_bytes());
    forward.push(1);
    forward.extend(2u64.to_le_bytes());
    forward.extend(0u32.to_le_bytes());
    assert!(matches!(
        Datatype::decode(&forward),
        Err(DatatypeError::BadEncoding(_))
    ));
}

#[test]
fn views_reject_layouts_outside_the_buffer() {
    let buffer = [0u32; 10];
    let vector = UserDatatype::vector(3, 2, 4, &i32_type()).unwrap();
    // 40 bytes: exactly the buffer.
    assert!(View::with_count_and_datatype(&buffer, 1, &vector).is_ok());
    // A second element reaches 80 bytes.
    assert!(matches!(
        View::with_count_and_datatype(&buffer, 2, &vector),
        Err(DatatypeError::OutOfBounds {
            lower: 0,
            upper: 80,
            buffer_len: 40
        })
    ));
    // A negative displacement reaches before the buffer start.
    let before = UserDatatype::heterogeneous_indexed(&[1], &[-4], &i32_type()).unwrap();
    assert!(matches!(
        View::with_count_and_datatype(&buffer, 1, &before),
        Err(DatatypeError::OutOfBounds { lower: -4, .. })
    ));
    // Counting backwards from the start does too.
    let backwards = UserDatatype::resized(&i32_type(), 0, -4).unwrap();
    assert!(View::with_count_and_datatype(&buffer, 1, &backwards).is_ok());
    assert!(View::with_count_and_datatype(&buffer, 2, &backwards).is_err());
}

#[test]
fn only_receive_views_reject_overlap() {
    let mut buffer = [0u8; 16];
    let twice = UserDatatype::heterogeneous_indexed(&[1, 1], &[0, 2], &i32_type()).unwrap();
    assert!(twice.overlaps(1));
    assert!(View::with_count_and_datatype(&buffer, 1, &twice).is_ok());
    assert_eq!(
        MutView::with_count_and_datatype(&mut buffer, 1, &twice).unwrap_err(),
        DatatypeError::Overlap
    );
    // Elements closer than their true extent overlap each other, not themselves.
    let squeezed =
        UserDatatype::resized(&UserDatatype::contiguous(2, &i32_type()).unwrap(), 0, 4).unwrap();
    assert!(!squeezed.overlaps(1));
    assert!(squeezed.overlaps(2));
    assert!(MutView::with_count_and_datatype(&mut buffer, 1, &squeezed).is_ok());
    assert!(MutView::with_count_and_datatype(&mut buffer, 2, &squeezed).is_err());
    // Interleaved but disjoint.
    let gaps =
        UserDatatype::resized(&UserDatatype::vector(2, 1, 2, &i32_type()).unwrap(), 0, 4).unwrap();
    assert!(!gaps.overlaps(2));
    assert!(gaps.overlaps(3));
}

#[test]
fn views_pack_and_unpack() {
    let values: Vec<i32> = (0..10).collect();
    let vector = UserDatatype::vector(3, 2, 4, &i32_type()).unwrap();
    let view = View::with_count_and_datatype(&values, 1, &vector).unwrap();
    assert_eq!(
        (view.count(), view.buffer_len(), view.packed_len()),
        (1, 40, 24)
    );
    let mut packed = [0u8; 24];
    assert_eq!(view.pack_into(&mut packed).unwrap(), 24);
    let packed_values: Vec<i32> = packed
        .chunks(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(packed_values, [0, 1, 4, 5, 8, 9]);
    assert!(matches!(
        view.pack_into(&mut [0u8; 23]),
        Err(DatatypeError::LengthMismatch {
            expected: 24,
            actual: 23
        })
    ));

    let mut received = [-1i32; 10];
    let mut target = MutView::with_count_and_datatype(&mut received, 1, &vector).unwrap();
    assert_eq!(target.unpack_from(&packed[..12]).unwrap(), 12);
    assert!(target.unpack_from(&[0u8; 25]).is_err());
    assert_eq!(received, [0, 1, -1, -1, 4, -1, -1, -1, -1, -1]);
}

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Point {
    x: f64,
    y: i32,
    z: [u8; 3],
}
crate::equivalence!(Point {
    x: f64,
    y: i32,
    z: [u8; 3]
});

#[derive(Clone, Copy)]
#[repr(C)]
struct Padded {
    tag: u8,
    value: u64,
}
crate::equivalence!(Padded {
    tag: u8,
    value: u64
});

#[test]
fn equivalence_leaves_padding_out() {
    let point = Point::equivalent_datatype();
    assert_eq!(point.size(), 15);
    assert_eq!(point.extent(), std::mem::size_of::<Point>() as isize);
    assert_eq!(point.segments(2).collect::<Vec<_>>(), [(0, 15), (16, 15)]);
    assert_eq!(point.primitive_elements_in(15), 5);

    let padded = Padded::equivalent_datatype();
    assert_eq!(padded.size(), 9);
    assert_eq!(padded.extent(), 16);
    assert_eq!(padded.segments(1).collect::<Vec<_>>(), [(0, 1), (8, 8)]);
    // The datatype is built once.
    assert!(Arc::ptr_eq(&padded.0, &Padded::equivalent_datatype().0));
}

#[test]
fn equivalence_of_tuples_arrays_and_primitives() {
    assert_eq!(
        usize::equivalent_datatype().homogeneous(),
        Some(Primitive::U64)
    );
    assert_eq!(<[u16; 5]>::equivalent_datatype().size(), 10);
    let pair = <(u8, f64)>::equivalent_datatype();
    assert_eq!(pair.size(), 9);
    assert_eq!(pair.extent(), std::mem::size_of::<(u8, f64)>() as isize);
    let triple = <(u16, u16, u32)>::equivalent_datatype();
    assert_eq!((triple.size(), triple.extent()), (8, 8));
    let points = <[Point; 2]>::equivalent_datatype();
    assert_eq!((points.size(), points.extent()), (30, 32));
}

#[test]
fn equality_is_structural() {
    let a = UserDatatype::vector(3, 2, 4, &i32_type()).unwrap();
    let b = UserDatatype::vector(3, 2, 4, &i32_type()).unwrap();
    assert_eq!(a, b);
    assert_ne!(
        Datatype::from(UserDatatype::dup(&a)),
        Datatype::from(a.clone())
    );
    assert_ne!(a, UserDatatype::vector(3, 2, 5, &i32_type()).unwrap());
    assert_eq!(a.combiner().old_types(), [&i32_type()]);
}

#[test]
fn datatypes_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Datatype>();
    check::<UserDatatype>();
}
