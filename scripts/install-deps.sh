#!/usr/bin/env bash
# Installs the system packages camera-agent builds and tests with on Debian 12
# (GStreamer 1.22 with the WebRTC, x264, OpenH264 and libav plugins), the Rust
# components CI checks with, and the Python packages of the independent
# aiortc viewer; nftables, coturn and Chromium (with the npm package
# socket.io-client of the browser viewer page) for the bad-link test bed and
# the browser suite; for scripts/cross-build.sh, mmdebstrap (the cross
# targets' compilers and libraries live in the bookworm root it makes, never
# in the host), qemu-user and the targets' binutils (strip). Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get update
apt-get install -y --no-install-recommends \
  build-essential pkg-config ca-certificates iproute2 util-linux \
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-nice gstreamer1.0-libav gstreamer1.0-tools \
  python3 python3-pip \
  chromium nftables coturn \
  systemd dpkg-dev lintian file \
  mmdebstrap qemu-user-static binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf

# Node and npm for the viewer page's socket.io-client: Debian's, unless
# the machine already has them (a NodeSource nodejs carries its own npm
# and conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then
  apt-get install -y --no-install-recommends nodejs npm
fi

# The bad-link test bed (tests/src/netem.rs, tests/src/turn.rs): nftables
# and tc impair the link inside the test namespace, and the tests start
# their own coturn there. The package's system-wide service is not needed.
systemctl disable --now coturn >/dev/null 2>&1 || true

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy
  rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
fi

# Debian's pip refuses system-wide installs (PEP 668) unless told; the
# machine's own python3 may be a pyenv one without that guard.
pip_flags=()
if python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
  pip_flags+=(--break-system-packages)
fi
python3 -m pip install --quiet --root-user-action=ignore "${pip_flags[@]}" \
  -r "$(dirname "$0")/../tests/requirements.txt"

# The browser viewer page's one dependency, exactly as locked; the stand-in
# serves it from tests/viewer/node_modules.
npm ci --prefix "$(dirname "$0")/../tests/viewer" --no-audit --no-fund
