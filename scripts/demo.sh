#!/usr/bin/env bash
# Streams the test pattern end to end on this machine, no camera needed:
# stand-in control plane + camera-agent + a decoding viewer, inside a
# private network namespace. Arguments go to the demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
exec bash scripts/netns.sh target/debug/demo "$@"
