//! Large buffers: rank 0 streams blocks (64 MiB each, 8 of them, unless the arguments say
//! otherwise: `stream [BLOCK_MIB] [BLOCKS]`) to every other rank with non-blocking sends; each
//! receiver checks the blocks and reports its throughput.
//!
//! ```sh
//! target/release/onecopy run -n 4 -- target/release/examples/stream
//! ```

use std::time::Instant;

use onecopy::traits::*;

fn main() -> Result<(), onecopy::CommError> {
    let universe = match onecopy::initialize() {
        Some(u) => u,
        None => onecopy::Universe::single()?,
    };
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let (block, blocks) = match (args.next(), args.next()) {
        (None, _) => (64 << 20, 8),
        (Some(Ok(mib)), None) if mib > 0 => (mib << 20, 8),
        (Some(Ok(mib)), Some(Ok(n))) if mib > 0 && n > 0 => (mib << 20, n),
        _ => {
            eprintln!("usage: stream [BLOCK_MIB] [BLOCKS] (both at least 1)");
            std::process::exit(2);
        }
    };
    if size < 2 {
        println!("stream needs 2 or more ranks");
        return Ok(());
    }
    if rank == 0 {
        let data: Vec<Vec<u8>> = (0..blocks).map(|b| vec![b as u8 + 1; block]).collect();
        onecopy::request::scope(|scope| -> Result<(), onecopy::CommError> {
            let mut sends = Vec::new();
            for dest in 1..size {
                for b in &data {
                    sends.push(world.process_at_rank(dest).immediate_send(scope, b)?);
                }
            }
            for s in sends {
                s.wait()?;
            }
            Ok(())
        })?;
    } else {
        let zero = world.process_at_rank(0);
        let mut buf = vec![0u8; block];
        let start = Instant::now();
        for b in 0..blocks {
            let status = zero.receive_into(&mut buf)?;
            let good = status.count_bytes() == block && buf.iter().all(|&x| x == b as u8 + 1);
            if !good {
                eprintln!("rank {rank}: block {b} arrived wrong");
                std::process::exit(1);
            }
        }
        let gbps = (blocks * block) as f64 / start.elapsed().as_secs_f64() / 1e9;
        println!(
            "rank {rank}: {} MiB in {blocks} blocks, {gbps:.2} GB/s",
            (blocks * block) >> 20
        );
    }
    Ok(())
}
