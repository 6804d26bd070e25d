//! A halo exchange with derived datatypes: each rank owns a band of columns of a row-major grid,
//! with one ghost column on each side, and swaps its edge columns with its neighbours. A column
//! is one `f64` per row, a row apart: the sends and receives name it with a vector datatype,
//! and nothing is packed by hand.
//!
//! `onecopy run -n 4 -- target/release/examples/datatypes`

use onecopy::datatype::{Equivalence, MutView, UserDatatype, View};
use onecopy::traits::*;

const ROWS: usize = 2048;
/// Columns each rank owns, plus two ghost columns.
const OWN: usize = 16;
const WIDTH: usize = OWN + 2;

/// The value of the grid at (row, global column).
fn value(row: usize, col: usize) -> f64 {
    (row * 1000 + col) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let universe = onecopy::initialize().ok_or("run me with `onecopy run`")?;
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    // Columns 1..=OWN are this rank's global columns rank * OWN ..; 0 and OWN + 1 are ghosts.
    let mut grid = vec![-1.0f64; ROWS * WIDTH];
    for row in 0..ROWS {
        for c in 1..=OWN {
            grid[row * WIDTH + c] = value(row, rank * OWN + c - 1);
        }
    }
    let column = UserDatatype::vector(ROWS, 1, WIDTH as isize, &f64::equivalent_datatype())?;
    let left = world.process_at_rank(((rank + size - 1) % size) as i32);
    let right = world.process_at_rank(((rank + 1) % size) as i32);
    // A column is the datatype applied from its first element on; even ranks send first, odd
    // ones receive first, so that no ring of blocking sends waits on itself.
    let mut exchange = |send_col: usize,
                        to: &onecopy::Process,
                        recv_col: usize,
                        from: &onecopy::Process,
                        tag|
     -> Result<(), Box<dyn std::error::Error>> {
        for turn in 0..2 {
            if (turn == 0) == (rank % 2 == 0) {
                to.send_with_tag(
                    &View::with_count_and_datatype(&grid[send_col..], 1, &column)?,
                    tag,
                )?;
            } else {
                let mut ghost =
                    MutView::with_count_and_datatype(&mut grid[recv_col..], 1, &column)?;
                from.receive_into_with_tag(&mut ghost, tag)?;
            }
        }
        Ok(())
    };
    // Eastward: my last own column into the right neighbour's west ghost; then westward.
    exchange(OWN, &right, 0, &left, 1)?;
    exchange(1, &left, OWN + 1, &right, 2)?;
    let left_col = (rank * OWN + size * OWN - 1) % (size * OWN);
    let right_col = ((rank + 1) * OWN) % (size * OWN);
    for row in 0..ROWS {
        assert_eq!(grid[row * WIDTH], value(row, left_col), "row {row}");
        assert_eq!(
            grid[row * WIDTH + OWN + 1],
            value(row, right_col),
            "row {row}"
        );
    }
    world.barrier()?;
    if rank == 0 {
        println!(
            "{size} ranks swapped {ROWS}-row columns ({} bytes each, {} apart) with their neighbours",
            ROWS * 8,
            WIDTH * 8
        );
    }
    Ok(())
}
