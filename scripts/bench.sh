#!/usr/bin/env bash
# The benchmark of docs/benchmarks.md: the agent as shipped (release
# profile) and the test bed's tools (testbed profile), run inside a private
# network namespace.
#
#   bash scripts/bench.sh                  both tables: sessions, then bad links
#   bash scripts/bench.sh --network [..]   only the bad-link table (netbench --help)
#   bash scripts/bench.sh --legacy [..]    only the legacy relay (legacybench --help)
#   bash scripts/bench.sh ARGS..           only the session table (bench --help)
#
# CAMERA_AGENT_BIN=path measures another agent binary with the same tools.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p camera-agent
cargo build --profile testbed --locked -p camera-agent-tests --bin bench --bin netbench --bin legacybench
export CAMERA_AGENT_BIN="${CAMERA_AGENT_BIN:-$PWD/target/release/camera-agent}"
if [ "${1:-}" = "--network" ]; then
  shift
  exec bash scripts/netns.sh target/testbed/netbench "$@"
fi
if [ "${1:-}" = "--legacy" ]; then
  shift
  exec bash scripts/netns.sh target/testbed/legacybench "$@"
fi
if [ "$#" -gt 0 ]; then
  exec bash scripts/netns.sh target/testbed/bench "$@"
fi
bash scripts/netns.sh target/testbed/bench
exec bash scripts/netns.sh target/testbed/netbench
