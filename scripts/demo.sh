#!/usr/bin/env bash
# Streams the test pattern end to end on this machine, no camera needed:
# stand-in control plane + camera-agent + a decoding viewer, inside a
# private network namespace. Arguments go to the demo (try --help).
#
# With --browser: the stand-in, the agent and the viewer page on this
# host's own network (0.0.0.0:8080 unless --bind says otherwise); it prints
# one URL to open in a browser here or on the LAN, and runs until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
for arg in "$@"; do
  if [ "$arg" = "--browser" ]; then
    exec target/debug/demo "$@"
  fi
done
exec bash scripts/netns.sh target/debug/demo "$@"
