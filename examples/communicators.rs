//! Communicators, groups and requests: the world splits into rows of a grid, each row sums its
//! ranks; the even and odd ranks form an intercommunicator and trade a greeting across it; a
//! persistent exchange runs around each row; rank 0 counts the wrong results.
//!
//! ```sh
//! target/release/onecopy run -n 6 -- target/release/examples/communicators
//! ```

use onecopy::collective::SystemOperation;
use onecopy::request::wait_all;
use onecopy::topology::{Color, InterCommunicator, MergeOrder};
use onecopy::traits::*;

/// Ranks per row of the grid.
const ROW: i32 = 2;

fn main() -> Result<(), onecopy::CommError> {
    let universe = match onecopy::initialize() {
        Some(u) => u,
        None => onecopy::Universe::single()?,
    };
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let mut wrong = Vec::new();

    // Rows: ranks 0-1, 2-3, ...; within a row, ordered by world rank.
    let row = world
        .split_by_color(Color::with_value(rank / ROW))?
        .expect("every rank has a row");
    row.set_name(&format!("row {}", rank / ROW));
    let mut row_sum = [0i32];
    row.all_reduce_into(&[rank], &mut row_sum, SystemOperation::sum())?;
    let first = rank / ROW * ROW;
    let expected: i32 = (first..(first + ROW).min(size)).sum();
    if row_sum[0] != expected {
        wrong.push(format!(
            "{}: sum {} not {expected}",
            row.get_name(),
            row_sum[0]
        ));
    }

    // The same row as a group of the world: its ranks translate back to world ranks.
    let members = world
        .group()
        .range_include(&[(first, (first + ROW).min(size) - 1, 1)])?;
    let in_world =
        members.translate_ranks(&(0..members.size()).collect::<Vec<_>>(), &world.group());
    if in_world
        != (first..(first + ROW).min(size))
            .map(Some)
            .collect::<Vec<_>>()
    {
        wrong.push(format!("row group {in_world:?}"));
    }

    // Evens and odds, joined by an intercommunicator whose leaders are world ranks 0 and 1.
    if size >= 2 {
        let parity = world
            .split_by_color(Color::with_value(rank % 2))?
            .expect("every rank has a parity");
        let remote_leader = if rank % 2 == 0 { 1 } else { 0 };
        let inter = InterCommunicator::create(&parity, 0, &world, remote_leader, 7)?;
        // Rank i of each side greets rank i of the other, when it exists.
        let me = inter.rank();
        if me < inter.remote_size() {
            let peer = inter.process_at_rank(me);
            let mut got = [0i32];
            onecopy::point_to_point::send_receive_into(&[rank], &peer, &mut got, &peer)?;
            if got[0] % 2 == rank % 2 {
                wrong.push(format!("greeting from world rank {} on my side", got[0]));
            }
        }
        // Merged back, evens first: the world again, reordered.
        let merged = inter.merge(if rank % 2 == 0 {
            MergeOrder::Low
        } else {
            MergeOrder::High
        })?;
        let evens = (size + 1) / 2;
        let want = if rank % 2 == 0 {
            rank / 2
        } else {
            evens + rank / 2
        };
        if merged.rank() != want {
            wrong.push(format!("merged rank {} not {want}", merged.rank()));
        }
    }

    // A persistent exchange around the row, started three times.
    let out = vec![rank as u64; 1024];
    let mut inn = vec![0u64; 1024];
    let n = row.size();
    let (next, prev) = (
        row.process_at_rank((row.rank() + 1) % n),
        row.process_at_rank((row.rank() + n - 1) % n),
    );
    onecopy::request::scope(|scope| -> Result<(), onecopy::CommError> {
        let mut requests = [
            next.send_init(scope, &out)?,
            prev.receive_init(scope, &mut inn)?,
        ];
        for _ in 0..3 {
            onecopy::request::start_all(&mut requests)?;
            for result in wait_all(&mut requests) {
                result?;
            }
        }
        Ok(())
    })?;
    let from = first + (row.rank() + n - 1) % n;
    if inn.iter().any(|&x| x != from as u64) {
        wrong.push(format!("persistent receive got {} not {from}", inn[0]));
    }

    // Rank 0 collects every rank's count of wrong results.
    let mut counts = vec![0u32; if rank == 0 { size as usize } else { 0 }];
    let root = world.process_at_rank(0);
    if rank == 0 {
        root.gather_into_root(&[wrong.len() as u32], &mut counts)?;
        let bad: u32 = counts.iter().sum();
        println!("communicators on {size} ranks: {bad} wrong results");
    } else {
        root.gather_into(&[wrong.len() as u32])?;
    }
    for w in &wrong {
        eprintln!("rank {rank}: {w}");
    }
    if !wrong.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
