#!/usr/bin/env bash
# The benchmark of docs/benchmarks.md: the agent as shipped (release
# profile) and the test bed's tools (testbed profile), run inside a private
# network namespace. Arguments go to the benchmark (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p camera-agent
cargo build --profile testbed --locked -p camera-agent-tests --bin bench
export CAMERA_AGENT_BIN="$PWD/target/release/camera-agent"
exec bash scripts/netns.sh target/testbed/bench "$@"
