#!/usr/bin/env bash
# Checks that headless Chromium (as tests/src/chromium.rs launches it)
# sends nothing outside the test network while the browser suite runs: in
# a fresh namespace with a default route (so any attempt becomes a packet
# rather than "network unreachable"), nftables counts every packet to a
# non-test address and every DNS query. Fails if any counter is not zero.
# Build first: cargo build -p camera-agent -p camera-agent-tests --all-targets
set -euo pipefail
cd "$(dirname "$0")/.."
inner='
set -euo pipefail
ip route add default dev tnet0
nft add table inet watch
nft add chain inet watch out "{ type filter hook output priority 0; }"
nft add rule inet watch out ip daddr != "{ 127.0.0.0/8, 10.213.0.0/24 }" counter
nft add rule inet watch out meta nfproto ipv6 ip6 daddr != ::1 meta l4proto != ipv6-icmp counter
nft add rule inet watch out meta l4proto "{ tcp, udp }" th dport 53 counter
cargo test --offline -p camera-agent-tests --test browser 2>&1 | grep "test result"
nft list table inet watch
# (IPv6 ICMP is the kernel'"'"'s own neighbour discovery on the veth.)
! nft list table inet watch | grep -q "counter packets [1-9]"
'
exec bash scripts/netns.sh bash -c "$inner"
