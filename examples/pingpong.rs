//! Rank 0 and rank 1 bounce a message of growing size; every other rank sits the game out.
//! Prints the half round trip per size.
//!
//! ```sh
//! cargo build --release --examples
//! target/release/onecopy run -n 4 -- target/release/examples/pingpong
//! ```

use std::time::Instant;

use onecopy::traits::*;

fn main() -> Result<(), onecopy::CommError> {
    let universe = match onecopy::initialize() {
        Some(u) => u,
        None => onecopy::Universe::single()?,
    };
    let world = universe.world();
    if world.size() < 2 {
        println!("pingpong needs 2 ranks; run it with `onecopy run -n 2 -- ...`");
        return Ok(());
    }
    let rank = world.rank();
    if rank > 1 {
        return Ok(());
    }
    let peer = world.process_at_rank(1 - rank);
    let mut size = 1usize;
    while size <= 4 << 20 {
        let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut back = vec![0u8; size];
        let rounds = if size < 65536 { 1000 } else { 50 };
        let start = Instant::now();
        for _ in 0..rounds {
            if rank == 0 {
                peer.send(&msg)?;
                peer.receive_into(&mut back)?;
            } else {
                peer.receive_into(&mut back)?;
                peer.send(&back)?;
            }
        }
        let half_us = start.elapsed().as_secs_f64() * 1e6 / (2.0 * rounds as f64);
        if rank == 0 {
            assert_eq!(back, msg, "the echo of {size} bytes differs");
            println!("{size:>9} bytes  {half_us:>10.2} us");
        }
        size *= 4;
    }
    Ok(())
}
