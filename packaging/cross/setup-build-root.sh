#!/usr/bin/env bash
# Turns a Debian bookworm root into a build root for one cross target:
#   setup-build-root.sh <aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf>
# The cross build images (packaging/cross/Dockerfile.<target>) COPY and RUN
# this script, and CI runs the very same script in an mmdebstrap'd bookworm
# root (scripts/cross-build.sh), so what CI proves is the image's recipe.
#
# Installs, from Debian bookworm only (GStreamer 1.22 and glibc 2.36, as on
# Raspberry Pi OS bookworm / Debian 12 on the devices):
#   - the host's C compiler (build scripts are linked for the build machine)
#     and git (the agent's build script records the revision for --version);
#   - the target's cross gcc and, through multiarch, the target's libc and
#     GStreamer development packages (Debian serves every release
#     architecture from one archive, so `dpkg --add-architecture` needs no
#     extra sources, unlike Ubuntu's ports.ubuntu.com split: cross-rs/cross
#     issue 1769);
#   - pkg-config, which the Dockerfile's ENV (or the CI script) points at
#     the target's multiarch .pc directory.
# One target per root, as one per image: some of these -dev packages are not
# Multi-Arch: same, so an arm64 and an armhf set cannot be installed together.
set -euo pipefail
triple="${1:?target triple (aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)}"
case "$triple" in
  aarch64-unknown-linux-gnu) arch=arm64 gnu=aarch64-linux-gnu ;;
  armv7-unknown-linux-gnueabihf) arch=armhf gnu=arm-linux-gnueabihf ;;
  *) echo "setup-build-root.sh: unsupported target $triple" >&2; exit 2 ;;
esac
export DEBIAN_FRONTEND=noninteractive

dpkg --add-architecture "$arch"
apt-get update
apt-get install -y --no-install-recommends \
  ca-certificates gcc libc6-dev pkg-config git \
  "gcc-$gnu" "libc6-dev:$arch" \
  "libgstreamer1.0-dev:$arch" \
  "libgstreamer-plugins-base1.0-dev:$arch" \
  "libgstreamer-plugins-bad1.0-dev:$arch"

# The target's .pc files are where the Dockerfile's ENV says they are.
test -e "/usr/lib/$gnu/pkgconfig/gstreamer-webrtc-1.0.pc"
PKG_CONFIG_LIBDIR="/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig" \
  pkg-config --modversion gstreamer-1.0 gstreamer-webrtc-1.0

apt-get clean
rm -rf /var/lib/apt/lists/*
