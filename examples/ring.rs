//! A token goes around all ranks; each adds its rank number. Rank 0 checks the sum.
//!
//! ```sh
//! target/release/onecopy run -n 4 -- target/release/examples/ring
//! ```

use onecopy::traits::*;

fn main() -> Result<(), onecopy::CommError> {
    let universe = match onecopy::initialize() {
        Some(u) => u,
        None => onecopy::Universe::single()?,
    };
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let next = world.process_at_rank((rank + 1) % size);
    let prev = world.process_at_rank((rank + size - 1) % size);
    let mut token = [0u64; 1];
    if rank == 0 {
        next.send(&token)?;
        prev.receive_into(&mut token)?;
        let expected: u64 = (0..size as u64).sum();
        println!(
            "ring of {size}: token came back as {} (expected {expected})",
            token[0]
        );
        if token[0] != expected {
            std::process::exit(1);
        }
    } else {
        prev.receive_into(&mut token)?;
        token[0] += rank as u64;
        next.send(&token)?;
    }
    Ok(())
}
