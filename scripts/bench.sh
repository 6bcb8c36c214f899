#!/usr/bin/env bash
# The benchmark of docs/benchmarks.md: release build of the agent and the
# test bed, run inside a private network namespace. Arguments go to the
# benchmark (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins --locked
export CAMERA_AGENT_BIN="$PWD/target/release/camera-agent"
exec bash scripts/netns.sh target/release/bench "$@"
