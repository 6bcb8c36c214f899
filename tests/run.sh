#!/usr/bin/env bash
# Runs the whole test suite the way CI does: build everything first (crates
# are fetched here, with network), then run the tests inside a fresh network
# namespace with only loopback and a veth pair, so media never leaves the
# machine. Needs root (or unprivileged user namespaces: see README).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --all-targets --locked
cargo test --workspace --no-run --locked

inner='
set -euo pipefail
ip link set lo up
ip link add tnet0 type veth peer name tnet1
ip link set tnet0 up
ip link set tnet1 up
ip addr add 10.213.0.1/32 dev tnet0
ip route add 10.213.0.0/24 dev tnet0
exec cargo test --workspace --offline --locked -- "$@"
'
if [ "$(id -u)" -eq 0 ]; then
  exec unshare --net bash -c "$inner" run.sh "$@"
else
  exec unshare --net --map-root-user bash -c "$inner" run.sh "$@"
fi
