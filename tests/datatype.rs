//! Derived datatypes through point to point: different but matching layouts on the two sides,
//! at every protocol size, by every transport, moved between the layouts by single copy and
//! packed; truncation; element counts; every send mode, probes and persistent requests with
//! views; layouts a receive may not have.

mod common;

use common::{assert_all_ok, run_job, run_job_config, watchdog};

use onecopy::World;
use onecopy::comm::CommError;
use onecopy::config::Config;
use onecopy::datatype::{Datatype, Equivalence, MutView, UserDatatype, View};
use onecopy::request;
use onecopy::traits::*;

fn err(what: &str) -> impl Fn(CommError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

const GAP: i32 = 0x7F7F_7F7F;

/// The layouts, over `i32`: `units` ints of data need this many elements of each, in a buffer
/// of this many ints.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Plain ints.
    Contiguous,
    /// Blocks of 3 ints at a stride of 5.
    Vector,
    /// Blocks of 2, 1 and 3 ints at 0, 3 and 6, extent 10 ints.
    Indexed,
    /// Blocks of 16 ints (64 bytes) at a stride of 32: pieces large enough to move in place.
    Wide,
}

const SHAPES: [Shape; 4] = [
    Shape::Contiguous,
    Shape::Vector,
    Shape::Indexed,
    Shape::Wide,
];

impl Shape {
    /// The datatype and count for `units` ints (a multiple of 48), and the buffer's length.
    fn layout(self, units: usize) -> (Datatype, usize, usize) {
        let int = i32::equivalent_datatype();
        match self {
            Shape::Contiguous => (int, units, units),
            Shape::Vector => {
                let blocks = units / 3;
                let t = UserDatatype::vector(blocks, 3, 5, &int).expect("vector");
                (t.into(), 1, blocks * 5)
            }
            Shape::Indexed => {
                let t = UserDatatype::indexed(&[2, 1, 3], &[0, 3, 6], &int).expect("indexed");
                let t = UserDatatype::resized(&t, 0, 40).expect("resized");
                (t.into(), units / 6, units / 6 * 10)
            }
            Shape::Wide => {
                let t = UserDatatype::vector(units / 16, 16, 32, &int).expect("wide");
                (t.into(), 1, units / 16 * 32)
            }
        }
    }
}

/// Ints of data per message: inline, eager, a small rendezvous, and one of several chunks and
/// more pieces than one system call takes.
const UNITS: [usize; 4] = [48, 4800, 48_000, 384_000];

fn pattern(seed: usize, n: usize) -> Vec<i32> {
    (0..n)
        .map(|i| (i as i32).wrapping_mul(2_654_435) ^ seed as i32)
        .collect()
}

/// Every pair of shapes, at every size: rank 0 sends its layout, rank 1 receives into its own;
/// rank 1's buffer must equal what unpacking rank 0's packed data into it gives, gaps intact.
fn every_pair_of_layouts(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for &units in &UNITS {
        for (i, &from) in SHAPES.iter().enumerate() {
            for (j, &to) in SHAPES.iter().enumerate() {
                let tag = (i * 4 + j) as i32;
                let what = format!("{from:?} to {to:?}, {units} ints");
                let (st, sc, slen) = from.layout(units);
                let (rt, rc, rlen) = to.layout(units);
                if world.rank() == 0 {
                    let buf = pattern(units + tag as usize, slen);
                    let view = View::with_count_and_datatype(&buf, sc, &st)
                        .map_err(|e| format!("{what}: {e}"))?;
                    peer.send_with_tag(&view, tag).map_err(err(&what))?;
                } else {
                    let sent = pattern(units + tag as usize, slen);
                    let mut packed = vec![0u8; st.pack_size(sc)];
                    st.pack_into(bytemuck::cast_slice(&sent), sc, &mut packed)
                        .map_err(|e| format!("{what}: pack: {e}"))?;
                    let mut want = vec![GAP; rlen];
                    rt.unpack_from(&packed, bytemuck::cast_slice_mut(&mut want), rc)
                        .map_err(|e| format!("{what}: unpack: {e}"))?;
                    let mut got = vec![GAP; rlen];
                    let mut view = MutView::with_count_and_datatype(&mut got, rc, &rt)
                        .map_err(|e| format!("{what}: {e}"))?;
                    let s = peer
                        .receive_into_with_tag(&mut view, tag)
                        .map_err(err(&what))?;
                    if s.count_bytes() != units * 4 || s.count_of(&rt) != Some(rc) {
                        return Err(format!("{what}: status {s:?}"));
                    }
                    if let Some(k) = (0..rlen).find(|&k| got[k] != want[k]) {
                        return Err(format!(
                            "{what}: int {k} is {:#x}, not {:#x}",
                            got[k], want[k]
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Every layout moves by single copy where it lies, on both sides.
fn in_place() -> Config {
    Config {
        layout_send_piece_bytes: 0,
        layout_recv_piece_bytes: 0,
        ..Config::default()
    }
}

/// Every layout is packed: streamed by the sender, staged by the receiver.
fn packed() -> Config {
    Config {
        layout_send_piece_bytes: usize::MAX,
        layout_recv_piece_bytes: usize::MAX,
        ..Config::default()
    }
}

/// The sender streams packed chunks; the receiver would take single copy in place.
fn streamed_into_place() -> Config {
    Config {
        layout_send_piece_bytes: usize::MAX,
        layout_recv_piece_bytes: 0,
        ..Config::default()
    }
}

/// The sender is read where it lies; the receiver unpacks a staging copy.
fn read_in_place_into_staging() -> Config {
    Config {
        layout_send_piece_bytes: 0,
        layout_recv_piece_bytes: usize::MAX,
        ..Config::default()
    }
}

#[test]
fn layouts_travel_between_every_pair_of_shapes_by_every_transport() {
    let _w = watchdog(
        "layouts_travel_between_every_pair_of_shapes_by_every_transport",
        240,
    );
    let mut runs: Vec<(&str, &str, Config)> = [
        ("default", Config::default()),
        ("in place", in_place()),
        ("packed", packed()),
        ("streamed into place", streamed_into_place()),
        ("read in place into staging", read_in_place_into_staging()),
    ]
    .into_iter()
    .map(|(name, c)| ("cma-split", name, c))
    .collect();
    for transport in [
        "auto",
        "cma-read",
        "cma-write",
        "shm-copy",
        "procmem",
        "vmsplice",
    ] {
        runs.push((transport, "default", Config::default()));
        runs.push((transport, "in place", in_place()));
    }
    for (transport, name, config) in runs {
        let errors = run_job_config(2, transport, config, every_pair_of_layouts);
        assert_all_ok(&errors, &format!("{transport}, {name}"));
    }
}

/// A layout shorter than the message is truncation for the receiver, whose gaps stay as they
/// were, and a refusal for a rendezvous sender; a message that ends inside an element counts
/// as MPI counts it.
fn truncation_and_counts(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    let int = i32::equivalent_datatype();
    let three = UserDatatype::contiguous(3, &int).map_err(|e| e.to_string())?;
    let strided = UserDatatype::vector(1000, 16, 32, &int).map_err(|e| e.to_string())?;
    for (k, &units) in [40usize, 20_000, 200_000].iter().enumerate() {
        let tag = k as i32;
        if world.rank() == 0 {
            let data = pattern(k, units);
            let r = peer.send_with_tag(&data, tag);
            if units * 4 > 64 << 10 && !matches!(r, Err(CommError::ReceiverRefused { .. })) {
                return Err(format!("a refused rendezvous send ended {r:?}"));
            }
        } else {
            let mut got = vec![GAP; 32_000];
            let mut view = MutView::with_count_and_datatype(&mut got, 1, &strided)
                .map_err(|e| e.to_string())?;
            let r = peer.receive_into_with_tag(&mut view, tag);
            let fits = units <= 16_000;
            match (fits, r) {
                (true, Ok(s)) if s.count_bytes() == units * 4 => {}
                (false, Err(CommError::Truncated { len, capacity, .. }))
                    if len == units * 4 && capacity == 64_000 => {}
                (_, r) => return Err(format!("{units} ints into 16000 ended {r:?}")),
            }
            let gaps_kept = got.chunks(32).all(|c| c[16..].iter().all(|&x| x == GAP));
            if !gaps_kept {
                return Err(format!("{units} ints: a gap was written"));
            }
        }
    }
    // 7 ints into elements of 3: two whole, 7 basic elements.
    if world.rank() == 0 {
        peer.send_with_tag(&pattern(9, 7), 10)
            .map_err(err("seven"))?;
    } else {
        let mut got = vec![0i32; 15];
        let mut view =
            MutView::with_count_and_datatype(&mut got, 5, &three).map_err(|e| e.to_string())?;
        let s = peer
            .receive_into_with_tag(&mut view, 10)
            .map_err(err("seven"))?;
        if s.count_of(&three).is_some() || s.elements_of(&three) != 7 || s.count_bytes() != 28 {
            return Err(format!(
                "7 ints counted {:?} elements of 3, {} basic",
                s.count_of(&three),
                s.elements_of(&three)
            ));
        }
        if got[..7] != pattern(9, 7)[..] || got[7..].iter().any(|&x| x != 0) {
            return Err("7 ints landed wrong".into());
        }
    }
    Ok(())
}

#[test]
fn a_short_layout_truncates_and_partial_elements_count_as_mpi_says() {
    let _w = watchdog(
        "a_short_layout_truncates_and_partial_elements_count_as_mpi_says",
        60,
    );
    for transport in ["auto", "cma-read", "shm-copy"] {
        for config in [in_place(), packed()] {
            assert_all_ok(
                &run_job_config(2, transport, config, truncation_and_counts),
                transport,
            );
        }
    }
}

/// Immediate, synchronous, ready, buffered and persistent sends of a layout; immediate,
/// persistent and matched-probe receives into one; send-receive between layouts.
fn every_mode(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    let int = i32::equivalent_datatype();
    let wide = UserDatatype::vector(4096, 16, 32, &int).map_err(|e| e.to_string())?;
    let small = UserDatatype::vector(30, 3, 5, &int).map_err(|e| e.to_string())?;
    let check = |got: &[i32], seed: usize, t: &Datatype, n: usize| -> Result<(), String> {
        let sent = pattern(seed, got.len());
        let mut want = vec![GAP; got.len()];
        let mut packed = vec![0u8; t.pack_size(n)];
        t.pack_into(bytemuck::cast_slice(&sent), n, &mut packed)
            .map_err(|e| e.to_string())?;
        t.unpack_from(&packed, bytemuck::cast_slice_mut(&mut want), n)
            .map_err(|e| e.to_string())?;
        if got == want {
            Ok(())
        } else {
            Err(format!("seed {seed}: wrong data"))
        }
    };
    for (seed, t, len) in [(1usize, &wide, 4096 * 32), (2, &small, 150)] {
        if world.rank() == 0 {
            let buf = pattern(seed, len);
            let view = View::with_count_and_datatype(&buf, 1, t).map_err(|e| e.to_string())?;
            request::scope(|scope| -> Result<(), String> {
                let a = peer
                    .immediate_send_with_tag(scope, &view, 1)
                    .map_err(err("isend"))?;
                let b = peer
                    .immediate_synchronous_send_with_tag(scope, &view, 2)
                    .map_err(err("issend"))?;
                a.wait().map_err(err("isend"))?;
                b.wait().map_err(err("issend"))?;
                Ok(())
            })?;
            peer.ready_send_with_tag(&view, 3).map_err(err("rsend"))?;
            request::scope(|scope| -> Result<(), String> {
                let mut p = peer
                    .send_init_with_tag(scope, &view, 4)
                    .map_err(err("init"))?;
                for _ in 0..2 {
                    p.start().map_err(err("start"))?;
                    p.wait().map_err(err("persistent"))?;
                }
                Ok(())
            })?;
            peer.send_with_tag(&view, 5).map_err(err("for the probe"))?;
            let mut back = vec![GAP; len];
            let mut into =
                MutView::with_count_and_datatype(&mut back, 1, t).map_err(|e| e.to_string())?;
            onecopy::point_to_point::send_receive_into_with_tags(
                &view, &peer, 6, &mut into, &peer, 6,
            )
            .map_err(err("sendrecv"))?;
            check(&back, seed, t, 1)?;
        } else {
            let mut got = vec![GAP; len];
            {
                let mut view =
                    MutView::with_count_and_datatype(&mut got, 1, t).map_err(|e| e.to_string())?;
                request::scope(|scope| -> Result<(), String> {
                    let r = peer
                        .immediate_receive_into_with_tag(scope, &mut view, 1)
                        .map_err(err("irecv"))?;
                    r.wait().map_err(err("irecv"))?;
                    Ok(())
                })?;
            }
            check(&got, seed, t, 1)?;
            for tag in [2, 3] {
                let mut got = vec![GAP; len];
                let mut view =
                    MutView::with_count_and_datatype(&mut got, 1, t).map_err(|e| e.to_string())?;
                peer.receive_into_with_tag(&mut view, tag)
                    .map_err(err("recv"))?;
                check(&got, seed, t, 1)?;
            }
            let mut got = vec![GAP; len];
            {
                let mut view =
                    MutView::with_count_and_datatype(&mut got, 1, t).map_err(|e| e.to_string())?;
                request::scope(|scope| -> Result<(), String> {
                    let mut p = peer
                        .receive_init_with_tag(scope, &mut view, 4)
                        .map_err(err("recv init"))?;
                    for _ in 0..2 {
                        p.start().map_err(err("start"))?;
                        p.wait().map_err(err("persistent"))?;
                    }
                    Ok(())
                })?;
            }
            check(&got, seed, t, 1)?;
            let (message, status) = peer.matched_probe_with_tag(5).map_err(err("mprobe"))?;
            if status.count_bytes() != t.pack_size(1) {
                return Err(format!("the probe said {status:?}"));
            }
            let mut got = vec![GAP; len];
            let mut view =
                MutView::with_count_and_datatype(&mut got, 1, t).map_err(|e| e.to_string())?;
            message
                .matched_receive_into(&mut view)
                .map_err(err("mrecv"))?;
            check(&got, seed, t, 1)?;
            let mine = pattern(seed, len);
            let out = View::with_count_and_datatype(&mine, 1, t).map_err(|e| e.to_string())?;
            let mut sink = vec![GAP; len];
            let mut into =
                MutView::with_count_and_datatype(&mut sink, 1, t).map_err(|e| e.to_string())?;
            onecopy::point_to_point::send_receive_into_with_tags(
                &out, &peer, 6, &mut into, &peer, 6,
            )
            .map_err(err("sendrecv"))?;
        }
    }
    Ok(())
}

#[test]
fn every_send_mode_and_receive_takes_a_layout() {
    let _w = watchdog("every_send_mode_and_receive_takes_a_layout", 60);
    for config in [Config::default(), in_place(), packed()] {
        assert_all_ok(&run_job_config(2, "auto", config, every_mode), "modes");
    }
    assert_all_ok(&run_job(2, "cma-split", every_mode), "modes, cma-split");
}

/// A buffered send of a layout is packed into the attached buffer at once.
#[test]
fn a_buffered_send_of_a_layout_returns_at_once() {
    let _w = watchdog("a_buffered_send_of_a_layout_returns_at_once", 60);
    let errors = common::run_job_universe(2, "auto", |universe| {
        let world = universe.world();
        let peer = world.process_at_rank(1 - world.rank());
        let int = i32::equivalent_datatype();
        let t = UserDatatype::vector(2000, 16, 32, &int).map_err(|e| e.to_string())?;
        if world.rank() == 0 {
            universe
                .set_buffer_size(200_000)
                .map_err(|e| e.to_string())?;
            let mut buf = pattern(3, 64_000);
            {
                let view = View::with_count_and_datatype(&buf, 1, &t).map_err(|e| e.to_string())?;
                peer.buffered_send_with_tag(&view, 1)
                    .map_err(err("bsend"))?;
            }
            // The copy was made: changing the buffer now changes nothing that arrives.
            buf.iter_mut().for_each(|x| *x = -1);
            peer.send_with_tag(&[0u8], 2).map_err(err("go"))?;
            universe.detach_buffer().map_err(|e| e.to_string())?;
        } else {
            let mut go = [0u8];
            peer.receive_into_with_tag(&mut go, 2).map_err(err("go"))?;
            let mut got = vec![0i32; 32_000];
            peer.receive_into_with_tag(&mut got, 1)
                .map_err(err("recv"))?;
            let sent = pattern(3, 64_000);
            let want: Vec<i32> = sent.chunks(32).flat_map(|c| c[..16].to_vec()).collect();
            if got != want {
                return Err("the buffered layout arrived wrong".into());
            }
        }
        Ok(())
    });
    assert_all_ok(&errors, "bsend");
}

#[test]
fn a_receive_layout_that_overlaps_itself_or_leaves_its_buffer_is_refused() {
    let int = i32::equivalent_datatype();
    let overlapping = UserDatatype::vector(4, 3, 2, &int).expect("type");
    let mut buf = vec![0i32; 64];
    assert!(MutView::with_count_and_datatype(&mut buf, 1, &overlapping).is_err());
    // Reading the same element twice is fine.
    assert!(View::with_count_and_datatype(&buf, 1, &overlapping).is_ok());
    let long = UserDatatype::vector(10, 1, 8, &int).expect("type");
    assert!(View::with_count_and_datatype(&buf, 1, &long).is_err());
    assert!(MutView::with_count_and_datatype(&mut buf, 2, &long).is_err());
}
