//! Every rank contributes its rank number: an all-reduce sums them, a broadcast hands out rank
//! 0's parameters, a user operation finds the largest |rank - 2| on rank 0, a barrier ends it.
//!
//! ```sh
//! target/release/onecopy run -n 4 -- target/release/examples/collectives
//! ```

use onecopy::collective::{SystemOperation, UserOperation};
use onecopy::traits::*;

fn main() -> Result<(), onecopy::CommError> {
    let universe = match onecopy::initialize() {
        Some(u) => u,
        None => onecopy::Universe::single()?,
    };
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let mine = vec![rank as f64; 1000];
    let mut sum = vec![0.0; 1000];
    world.all_reduce_into(&mine, &mut sum, SystemOperation::sum())?;
    let expected = (0..size).sum::<i32>() as f64;

    let root = world.process_at_rank(0);
    let mut params = if rank == 0 { [7u64, 8, 9, 10] } else { [0; 4] };
    root.broadcast_into(&mut params)?;

    let max_abs = UserOperation::commutative(|l: &[i64], r: &mut [i64]| {
        r.iter_mut()
            .zip(l)
            .for_each(|(r, l)| *r = (*r).abs().max(l.abs()))
    });
    let x = [rank as i64 - 2];
    let mut widest = [0i64];
    if rank == 0 {
        root.reduce_into_root(&x, &mut widest, max_abs)?;
    } else {
        root.reduce_into(&x, max_abs)?;
    }
    world.barrier()?;

    let good = sum.iter().all(|&s| s == expected) && params == [7, 8, 9, 10];
    if rank == 0 {
        println!(
            "collectives on {size} ranks: sum {} (expected {expected}), parameters {params:?}, largest |rank - 2| {}",
            sum[0], widest[0]
        );
    }
    if !good {
        eprintln!("rank {rank}: wrong result");
        std::process::exit(1);
    }
    Ok(())
}
