#!/usr/bin/env bash
# Fuzzes the Socket.IO/Engine.IO decoder and the inbound event parser with
# cargo-fuzz (libFuzzer), SECONDS seconds per target (default 30).
# cargo-fuzz needs nightly -Z flags; RUSTC_BOOTSTRAP lets the stable
# toolchain accept them. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-30}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in socketio_codec inbound_events; do
  # Fresh corpus dir per run, seeded from the committed seeds.
  work="$(mktemp -d)"
  cp corpus/"$target"/* "$work"/
  echo "fuzzing $target for ${seconds}s"
  cargo fuzz run "$target" "$work" -- -max_total_time="$seconds" 2>&1 | tee "$work.log" | grep -E "^Done|ERROR|panicked" || true
  grep -q "^Done" "$work.log" || { echo "fuzz target $target failed"; tail -40 "$work.log"; exit 1; }
  rm -rf "$work" "$work.log"
done
