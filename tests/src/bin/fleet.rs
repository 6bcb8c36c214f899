//! Fleet reconnects (issue 13): the simulation's table, old policy beside
//! new. See `docs/benchmarks.md`, "Fleet reconnects".

use testbed::fleet::{self, Fleet};

fn main() {
    let fleet = Fleet {
        devices: 100_000,
        live: 0,
        seed: 1,
    };
    print!("{}", fleet::table(fleet, &fleet::shipped()));
}
