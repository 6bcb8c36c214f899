#!/usr/bin/env bash
# Reproduces `cross build --target aarch64-unknown-linux-gnu` without Docker,
# then proves the binary on emulated arm64:
#   1. an arm64 Debian 12 sysroot with mmdebstrap (variant extract: packages
#      are unpacked into a directory, nothing is installed on the host);
#   2. cargo build for aarch64, pkg-config pointed at the sysroot, linked by
#      gcc-aarch64-linux-gnu;
#   3. under qemu-aarch64-static: --version, probe, and a full streaming
#      session (stand-in control plane + GStreamer viewer on the host) in the
#      test network namespace;
#   4. the arm64 .deb.
# Needs: mmdebstrap qemu-user-static gcc-aarch64-linux-gnu (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
sysroot="$PWD/target/aarch64-sysroot"

if [ ! -e "$sysroot/.complete" ]; then
  rm -rf "$sysroot"
  mmdebstrap --quiet --variant=extract --architectures=arm64 \
    --include=libc6-dev,libgstreamer1.0-dev,libgstreamer-plugins-base1.0-dev,libgstreamer-plugins-bad1.0-dev,gstreamer1.0-plugins-base,gstreamer1.0-plugins-good,gstreamer1.0-plugins-bad,gstreamer1.0-plugins-ugly,gstreamer1.0-nice \
    bookworm "$sysroot" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  touch "$sysroot/.complete"
fi

rustup target add "$target" >/dev/null
# Target-specific variables only, so host builds (build scripts, the test
# bed) keep using the host's pkg-config.
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_SYSROOT_DIR_aarch64_unknown_linux_gnu="$sysroot"
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu="$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Link against the sysroot's libraries, including their own dependencies.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$sysroot \
  -C link-arg=-Wl,-rpath-link,$sysroot/usr/lib/aarch64-linux-gnu \
  -C link-arg=-Wl,-rpath-link,$sysroot/lib/aarch64-linux-gnu"
cargo build --release --locked --target "$target" -p camera-agent
binary="target/$target/release/camera-agent"
file "$binary" | grep -q "ARM aarch64"

# A wrapper that runs the arm64 binary under qemu with the sysroot's
# GStreamer; the test harness starts it like the native binary.
wrapper="$PWD/target/$target/camera-agent-qemu"
cat > "$wrapper" <<WRAPPER
#!/bin/sh
export GST_REGISTRY_FORK=no
export GST_REGISTRY="$PWD/target/$target/gst-registry.bin"
export GST_PLUGIN_SYSTEM_PATH="$sysroot/usr/lib/aarch64-linux-gnu/gstreamer-1.0"
export GST_PLUGIN_SCANNER=/nonexistent
export GIO_MODULE_DIR="$sysroot/usr/lib/aarch64-linux-gnu/gio/modules"
exec qemu-aarch64-static -L "$sysroot" "$PWD/$binary" "\$@"
WRAPPER
chmod +x "$wrapper"

"$wrapper" --version
"$wrapper" probe

stripped="$(mktemp)"
aarch64-linux-gnu-strip -o "$stripped" "$binary"
echo "stripped aarch64 binary: $(stat -c %s "$stripped") bytes"
rm -f "$stripped"

# A full session: the e2e suite's streaming test with the arm64 agent.
cargo build --workspace --all-targets --locked
CAMERA_AGENT_BIN="$wrapper" bash scripts/netns.sh \
  cargo test --offline --locked -p camera-agent-tests --test e2e -- --exact \
  sigterm_mid_stream_ends_the_session_with_camera_shutdown

bash packaging/build-deb.sh arm64 "$binary"
