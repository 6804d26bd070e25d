//! A hostile peer: rank 0 of a forked two-rank job either writes well-framed records with garbage
//! payloads (lengths, ids, slot indices, offsets, sender ranges outside its memory) into its ring
//! towards rank 1, or scribbles raw bytes over that ring (header words, sequence numbers, cell
//! counts) and its eager slots; rank 1 receives into windows fenced by guard bytes. Rank 1 must report an error naming
//! rank 0, deliver at most what fits, or keep waiting; it must never panic or touch a guard byte.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::super::ring::Head;
use super::super::start::join_forked;
use super::super::wire::{self, kind};
use super::super::{CommError, Universe, init_segment, segment_bytes};
use super::records::ring_of;
use super::{Engine, RecvBuf, Want};
use crate::child::{Child, Exit};
use crate::comm::ring::{CELL, Cells, HEADER, WORDS};
use crate::config::Config;
use crate::shm::Segment;
use crate::transport::{Mechanism, TransportChoice};
use std::sync::atomic::Ordering;

const WINDOWS: usize = 4;
const CAP: usize = 64 << 10;
const GUARD: usize = 4096;
const GUARD_BYTE: u8 = 0xC5;

/// xorshift64: reproducible garbage from a job's seed.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[(self.next() % choices.len() as u64) as usize]
    }
}

/// One garbage record: kind, tag, length word and payload.
fn garbage_record(g: &mut Garbage, own: u64, eager_slots: u64) -> (Head, Vec<u8>) {
    let any = g.next();
    let id = g.pick(&[0u32, 1, 2, 255, 256, u32::MAX, any as u32]);
    let addr = g.pick(&[
        0u64,
        1,
        own,
        own + (CAP as u64) / 2,
        own - 4096,
        0xffff_8000_0000_0000,
        u64::MAX - 5,
        any,
    ]);
    let len64 = g.pick(&[
        0u64,
        1,
        4096,
        CAP as u64,
        CAP as u64 + 1,
        1 << 40,
        u64::MAX,
        any,
    ]);
    let slot = g.pick(&[
        0u32,
        1,
        eager_slots as u32 - 1,
        eager_slots as u32,
        u32::MAX,
    ]);
    let tag = g.pick(&[0i32, 7, -1, i32::MIN, i32::MAX]);
    let len = g.pick(&[0u32, 1, 48, 49, 4096, 65536, 65537, u32::MAX, any as u32]);
    let k = g.pick(&[
        kind::INLINE,
        kind::EAGER,
        kind::RTS,
        kind::RTS,
        kind::RTS,
        kind::CTS,
        kind::PUSHED,
        kind::FIN,
        kind::CHUNK,
        kind::WANT_SLOT,
        0,
        9,
        0xFE,
    ]);
    let payload = match k {
        kind::EAGER => bytemuck::bytes_of(&wire::Eager { slot, _pad: 0 }).to_vec(),
        kind::RTS => bytemuck::bytes_of(&wire::Rts {
            len: len64,
            send_id: id,
            how: g.pick(&[0u32, 1, 2, 3, 4, 5, 6, 7, any as u32]),
            addr,
            pipe_fd: g.pick(&[0u32, 1, 2, 3, 4, 5, 100, any as u32]),
            layout_len: g.pick(&[0u32, 0, 0, 1, 8, 24, 4096, any as u32]),
            layout_addr: addr.wrapping_add(g.pick(&[0u64, 8, 64, any])),
        })
        .to_vec(),
        kind::CTS => bytemuck::bytes_of(&wire::Cts {
            send_id: id,
            _pad: 0,
            addr,
            len: len64,
        })
        .to_vec(),
        kind::PUSHED => bytemuck::bytes_of(&wire::Pushed {
            send_id: id,
            status: any as u32,
            bytes: len64,
        })
        .to_vec(),
        kind::FIN => bytemuck::bytes_of(&wire::Fin {
            send_id: id,
            status: any as u32,
        })
        .to_vec(),
        kind::CHUNK => bytemuck::bytes_of(&wire::Chunk {
            send_id: id,
            slot,
            offset: len64,
            len: g.pick(&[0u64, 1, 4096, len64]),
        })
        .to_vec(),
        _ => (0..(g.next() % 200) as usize)
            .map(|_| g.next() as u8)
            .collect(),
    };
    let head = Head {
        kind: k,
        tag,
        len,
        // Mostly the victim's context, so that messages match; sometimes another, or a
        // collective one.
        context: g.pick(&[0u32, 0, 0, 1, 2, any as u32]),
        sync: g.pick(&[0u32, 0, 1, any as u32]),
    };
    (head, payload)
}

/// Raw garbage over the ring towards rank 1 and over the eager slots: sometimes a header the
/// reader will take as published (sequence number 1 in cell 0), with any kind, cell count, tag and
/// length, followed by random bytes over the next cells (whose first words a reader may take for
/// the next records' headers).
fn scribble(engine: &Engine, g: &mut Garbage) {
    let ring = ring_of(&engine.job.segment, 0, 1);
    let cap = ring.capacity();
    let cells = (g.next() % 8) as usize + 1;
    let bytes: Vec<u8> = (0..cells * CELL - HEADER).map(|_| g.next() as u8).collect();
    // Payload bytes first: they run over the following cells' header words, as real ones do.
    // SAFETY: the bytes lie inside the ring (at most 8 cells of at least 64); the reader takes
    // nothing from cell 0 before its sequence word, stored last, says so.
    unsafe { ring.write(0, 0, &bytes) };
    for _ in 0..g.next() % 4 {
        let cell = (g.next() % cap as u64) as usize;
        ring.store(
            cell,
            (g.next() % WORDS as u64) as usize,
            g.next() as u32,
            Ordering::Relaxed,
        );
    }
    let slots = engine.job.segment.layout.eager_slots;
    for _ in 0..g.next() % 3 {
        let slot = (g.next() % slots as u64) as usize;
        let (state, offset) = engine.job.segment.eager_slot(0, 1, slot);
        state.store(g.next() as u32 % 3, Ordering::Relaxed);
        let junk: Vec<u8> = (0..64).map(|_| g.next() as u8).collect();
        // SAFETY: the slot belongs to the pair 0 → 1, whose sender this process is.
        unsafe { crate::shm::copy_in(&engine.job.segment.segment, offset, &junk) };
    }
    let any = g.next() as u32;
    let meta = g.pick(&[
        kind::INLINE as u32 | 1 << 8,
        kind::RTS as u32 | 1 << 8,
        kind::EAGER as u32 | 1 << 8,
        kind::CHUNK as u32 | 1 << 8,
        kind::INLINE as u32 | (cells as u32) << 8,
        0xFF | (cap as u32) << 8,
        0xFF | 3 << 8,
        any,
    ]);
    ring.store(0, 1, meta, Ordering::Relaxed);
    ring.store(0, 2, g.next() as u32, Ordering::Relaxed);
    let len = g.pick(&[0, 1, 48, 4096, u32::MAX, any]);
    ring.store(0, 3, len, Ordering::Relaxed);
    ring.store(0, 4, g.pick(&[0, 0, 1, any]), Ordering::Relaxed);
    ring.store(0, 5, g.pick(&[0, 0, 1, any]), Ordering::Relaxed);
    let seq = g.pick(&[1u32, 1, 1, 0, 2, any]);
    // Release: the scribbles above are what a reader that sees `seq` reads.
    ring.store(0, 0, seq, Ordering::Release);
    engine.job.segment.rank(1).bell.notify();
}

/// Rank 0: sends `records` garbage records (or scribbles over the ring if `records` is 0), then
/// stays alive until killed.
fn hostile(u: &Universe, seed: u64, records: usize) -> i32 {
    let own = vec![0x3Cu8; CAP];
    let mut g = Garbage(seed);
    {
        let world = u.world();
        let mut engine = world.core.rt.engine();
        let slots = engine.job.segment.layout.eager_slots as u64;
        if records == 0 {
            scribble(&engine, &mut g);
        }
        for _ in 0..records {
            let (head, payload) = garbage_record(&mut g, own.as_ptr() as u64, slots);
            while !engine.try_record(1, head, &[&payload]) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        std::hint::black_box(&own);
    }
}

/// Rank 1: receives into fenced windows until an error, every window filled, or `patience`;
/// returns how that went, starting with "BAD" if a rule was broken.
fn victim(u: &Universe, patience: Duration) -> String {
    let mut mem = vec![GUARD_BYTE; GUARD + WINDOWS * (CAP + GUARD)];
    let base = mem.as_mut_ptr();
    let world = u.world();
    let mut engine = world.core.rt.engine();
    let mut ids = Vec::new();
    for w in 0..WINDOWS {
        // SAFETY: window `w` lies inside `mem`, which outlives every use of it by the engine (this
        // function returns only after the last `progress`, and the process then exits).
        let ptr = unsafe { base.add(GUARD + w * (CAP + GUARD)) };
        let want = Want {
            context: 0,
            source: Some(0),
            tag: None,
        };
        match engine.post_receive(want, RecvBuf::plain(ptr, CAP)) {
            Ok(id) => ids.push(id),
            Err(e) => return format!("BAD: post_receive failed: {e}"),
        }
    }
    let start = Instant::now();
    let mut results = Vec::new();
    let mut verdict = None;
    while start.elapsed() < patience && results.len() < WINDOWS {
        if let Err(e) = engine.progress() {
            verdict = Some(classify_progress_error(&e));
            break;
        }
        for &id in &ids {
            if engine.is_done(id)
                && let Some(r) = engine.take(id)
            {
                results.push(r);
            }
        }
    }
    drop(engine);
    let fenced = (0..=WINDOWS).all(|w| {
        let at = w * (CAP + GUARD);
        mem[at..at + GUARD].iter().all(|&b| b == GUARD_BYTE)
    });
    if !fenced {
        return "BAD: a guard byte outside the receive windows changed".into();
    }
    for r in &results {
        match r {
            Ok(st) if st.count_bytes() > CAP => return format!("BAD: delivered {st:?} into {CAP}"),
            Err(e) if !names_rank_0(e) => return format!("BAD: request error {e}"),
            _ => {}
        }
    }
    if let Some(v) = verdict {
        return v;
    }
    let first = match results.first() {
        None => return "waiting".into(),
        Some(Ok(_)) => "delivered",
        Some(Err(CommError::Protocol { .. })) => "request protocol error",
        Some(Err(CommError::Truncated { .. })) => "truncated",
        Some(Err(_)) => "other request error",
    };
    first.into()
}

fn names_rank_0(e: &CommError) -> bool {
    matches!(
        e,
        CommError::Protocol { rank: 0, .. } | CommError::Truncated { sender: 0, .. }
    )
}

fn classify_progress_error(e: &CommError) -> String {
    match e {
        CommError::Protocol { rank: 0, .. } => "protocol error".into(),
        other => format!("BAD: progress failed with {other}"),
    }
}

/// Runs `jobs` two-rank jobs, each with its own garbage; returns outcome counts.
fn run_hostile_jobs(jobs: u64, records: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    // One folder per call: the tests calling this run in parallel threads.
    let dir =
        std::env::temp_dir().join(format!("onecopy-hostile-{}-{records}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for job in 0..jobs {
        let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(job + 1) | 1;
        let mechanism = Mechanism::ALL[(job % 6) as usize];
        let transport = TransportChoice::Named(mechanism);
        let config = Config::default();
        let segment = Segment::create(
            "onecopy-hostile",
            segment_bytes(2, &config).expect("layout"),
        )
        .expect("segment");
        init_segment(&segment, 2, &config).expect("init");
        let me = std::process::id() as i32;
        let verdict_file = dir.join(format!("job-{job}"));
        let mut ranks = Vec::new();
        for rank in 0..2 {
            let (segment, verdict_file, config) = (&segment, &verdict_file, &config);
            // SAFETY: the child joins the job, plays its part and exits; nothing it touches is
            // shared with the parent's threads but the segment and the verdict file.
            let child = unsafe {
                Child::fork(move || {
                    let joined = join_forked(segment, rank, 2, me, transport, config);
                    match joined {
                        Ok(u) if rank == 0 => hostile(&u, seed, records),
                        Ok(u) => {
                            let v = victim(&u, Duration::from_millis(100));
                            let _ = std::fs::write(verdict_file, v);
                            0
                        }
                        Err(e) => {
                            let _ = std::fs::write(verdict_file, format!("BAD: join: {e}"));
                            1
                        }
                    }
                })
            }
            .expect("fork");
            ranks.push(child);
        }
        let mut victim_rank = ranks.pop().expect("two ranks");
        let exit = victim_rank
            .wait_timeout(Duration::from_secs(5))
            .expect("wait");
        let mut hostile_rank = ranks.pop().expect("two ranks");
        hostile_rank.kill();
        let verdict = match exit {
            Some(Exit::Code(0)) => {
                std::fs::read_to_string(&verdict_file).unwrap_or_else(|_| "BAD: no verdict".into())
            }
            None => {
                victim_rank.kill();
                "blocked past the deadline".into()
            }
            other => format!(
                "BAD: victim ended with {other:?}: {}",
                std::fs::read_to_string(&verdict_file).unwrap_or_default()
            ),
        };
        if verdict.starts_with("BAD") {
            eprintln!("job {job} ({transport}, seed {seed}): {verdict}");
        }
        *counts.entry(verdict).or_insert(0) += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    counts
}

fn assert_no_bad(counts: &BTreeMap<String, usize>) {
    let bad: usize = counts
        .iter()
        .filter(|(k, _)| k.starts_with("BAD") || k.starts_with("blocked"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(bad, 0, "{counts:?}");
}

#[test]
fn garbage_from_a_peer_is_reported_never_written_outside_the_buffers() {
    let started = Instant::now();
    let counts = run_hostile_jobs(60, 3);
    eprintln!(
        "hostile peer, 60 jobs: {counts:?} in {:?}",
        started.elapsed()
    );
    assert_no_bad(&counts);
}

#[test]
fn scribbles_over_the_ring_and_slots_are_reported_never_written_outside_the_buffers() {
    let started = Instant::now();
    let counts = run_hostile_jobs(60, 0);
    eprintln!(
        "scribbling peer, 60 jobs: {counts:?} in {:?}",
        started.elapsed()
    );
    assert_no_bad(&counts);
}

/// The long run recorded in BENCHMARKS.md:
/// `ONECOPY_HOSTILE_JOBS=1000 cargo test --lib many_hostile -- --ignored --nocapture`.
#[test]
#[ignore = "takes a minute or more; run by hand"]
fn many_hostile_jobs() {
    let jobs = std::env::var("ONECOPY_HOSTILE_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for (what, records) in [("garbage records", 3), ("scribbles", 0)] {
        let started = Instant::now();
        let counts = run_hostile_jobs(jobs, records);
        eprintln!(
            "hostile peer, {what}, {jobs} jobs: {counts:?} in {:?}",
            started.elapsed()
        );
        assert_no_bad(&counts);
    }
}
