#!/usr/bin/env bash
# Runs a command inside a fresh network namespace with loopback up and a
# veth pair tnet0/tnet1, 10.213.0.1/32 on tnet0: the only address WebRTC can
# gather, so media never leaves the machine. Root, or unprivileged user
# namespaces, is needed.
set -euo pipefail
inner='
set -euo pipefail
ip link set lo up
ip link add tnet0 type veth peer name tnet1
ip link set tnet0 up
ip link set tnet1 up
ip addr add 10.213.0.1/32 dev tnet0
exec "$@"
'
if [ "$(id -u)" -eq 0 ]; then
  exec unshare --net bash -c "$inner" netns.sh "$@"
else
  exec unshare --net --map-root-user bash -c "$inner" netns.sh "$@"
fi
