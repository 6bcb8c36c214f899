#!/usr/bin/env bash
# The real-process fleet check of docs/testing.md ("Fleet reconnects"): 50
# release agents (shipped reconnect policy) connected to the stand-in, the
# stand-in stopped for an outage and started again, every connection attempt
# recorded where a server would see it and compared with the simulation of
# the same outage. Runs inside the test network namespace and gives up after
# 10 minutes. Arguments go to `fleet agents` (try --help): --count, --outage,
# --busy SECONDS --retry-after SECONDS (503 on the upgrade after the return).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p camera-agent
cargo build --locked -p camera-agent-tests --bin fleet
target="${CARGO_TARGET_DIR:-$PWD/target}"
export CAMERA_AGENT_BIN="$target/release/camera-agent"
exec timeout -s INT 600 bash scripts/netns.sh "$target/debug/fleet" agents "$@"
