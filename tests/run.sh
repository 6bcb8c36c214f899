#!/usr/bin/env bash
# Runs the whole test suite the way CI does: build everything first (crates
# are fetched here, with network access), then run the tests offline inside
# a fresh network namespace (scripts/netns.sh), so media never leaves the
# machine. Extra arguments go to the test binaries (a name filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets --locked
exec bash scripts/netns.sh cargo test --workspace --offline --locked -- "$@"
