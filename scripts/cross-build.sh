#!/usr/bin/env bash
# Proves the `cross` build images (Cross.toml, packaging/cross/) without
# Docker, for aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf:
#   1. per target, a Debian bookworm root made with mmdebstrap, in which
#      the image's own recipe, packaging/cross/setup-build-root.sh, runs (the
#      Dockerfile's RUN), plus, for CI only, the target's GStreamer runtime
#      plugins that qemu runs the binary with. Cached under
#      target/cross-roots/<target> until the recipe changes;
#   2. cargo build in that root the way cross runs it in the image: the
#      host's toolchain mounted read-only at /rust, CARGO_HOME at /cargo, the
#      workspace at /project, the output directory at /target (cross 0.2.5's
#      layout), the Dockerfile's ENV lines and nothing else from the host;
#   3. each binary under qemu-user: --version, probe, and a full streaming
#      session (stand-in control plane and GStreamer viewer on the host) in
#      the test network namespace;
#   4. the arm64 and armhf .deb.
# `--roots-only` makes both roots side by side and stops (CI runs that in
# the background while the host compiles).
# Prints how long each step took and both stripped sizes. Run as root
# (mmdebstrap, chroot and the mount namespace). Needs: mmdebstrap,
# qemu-user-static, the targets' binutils for strip (scripts/install-deps.sh).
# Nothing of the targets' architectures is installed into the host.
set -euo pipefail
cd "$(dirname "$0")/.."
project="$PWD"
targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
roots="$target_dir/cross-roots"
out="$target_dir/cross"
started=$SECONDS
step() { echo "== cross-build: $* (at $((SECONDS - started)) s)"; }

gnu_of() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
  esac
}
deb_arch_of() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo arm64 ;;
    armv7-unknown-linux-gnueabihf) echo armhf ;;
  esac
}
qemu_of() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo qemu-aarch64-static ;;
    armv7-unknown-linux-gnueabihf) echo qemu-arm-static ;;
  esac
}

# The Dockerfile is the specification: check that it is the image this
# script reproduces (bookworm, the shared recipe for this target), and
# take its ENV lines as the build environment.
dockerfile_env() {
  local file="packaging/cross/Dockerfile.$1"
  grep -qx 'FROM debian:bookworm-slim' "$file"
  grep -qx 'COPY packaging/cross/setup-build-root.sh /usr/local/sbin/setup-build-root.sh' "$file"
  grep -qx "RUN /usr/local/sbin/setup-build-root.sh $1" "$file"
  [ "$(grep -c '^RUN' "$file")" -eq 1 ]
  if grep '^ENV' "$file" | grep -qvE '^ENV [A-Za-z_][A-Za-z0-9_]*=[^ "]+$'; then
    echo "$file: ENV lines must be ENV KEY=VALUE, one per line" >&2
    return 1
  fi
  sed -n 's/^ENV //p' "$file"
}

# One root per target, as there is one image per target: some of the -dev
# packages (libgstreamer-plugins-base1.0-dev, libopencv-dev) are not
# Multi-Arch: same, so arm64 and armhf ones cannot share a root.
# The root also gets the target's GStreamer runtime plugins for the qemu
# sessions (CI only: the images just build).
make_root() {
  local target="$1" root="$2" arch recipe
  arch="$(deb_arch_of "$target")"
  local runtime="gstreamer1.0-plugins-base:$arch gstreamer1.0-plugins-good:$arch \
gstreamer1.0-plugins-bad:$arch gstreamer1.0-plugins-ugly:$arch gstreamer1.0-nice:$arch"
  recipe="$( (cat packaging/cross/setup-build-root.sh; echo "$target $runtime") \
    | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$root/.complete" 2>/dev/null)" = "$recipe" ]; then
    return
  fi
  step "making the bookworm build root for $target"
  rm -rf "$root"
  mkdir -p "$(dirname "$root")"
  mmdebstrap --quiet --variant=minbase --architectures=amd64 \
    --customize-hook="copy-in $project/packaging/cross/setup-build-root.sh /usr/local/sbin" \
    --customize-hook="chroot \"\$1\" /usr/local/sbin/setup-build-root.sh $target" \
    --customize-hook="chroot \"\$1\" sh -c 'apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $runtime \
      && apt-get clean && rm -rf /var/lib/apt/lists/*'" \
    bookworm "$root"
  echo "$recipe" > "$root/.complete"
}

# cargo build in a target's root, the way cross runs it in the image.
build_in_root() {
  local target="$1" root="$2" image_env_lines image_env
  image_env_lines="$(dockerfile_env "$target")"
  mapfile -t image_env <<<"$image_env_lines"
  mkdir -p "$root/rust" "$root/cargo" "$root/project" "$root/target"
  # A private mount namespace: the binds vanish with it, also on failure.
  # shellcheck disable=SC2016 # expanded by the inner shell
  unshare --mount --propagation private bash -euo pipefail -c '
    root="$1" sysroot="$2" cargo_home="$3" project="$4" out="$5" target="$6"
    shift 6
    mount --bind "$sysroot" "$root/rust"
    mount -o remount,bind,ro "$root/rust"
    mount --bind "$cargo_home" "$root/cargo"
    mount --bind "$project" "$root/project"
    mount --bind "$out" "$root/target"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" env -i HOME=/root TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/rust/bin \
      CARGO_HOME=/cargo CARGO_TARGET_DIR=/target "$@" \
      sh -c "cd /project && cargo build --release --locked --target $target -p camera-agent"
  ' cross-build "$root" "$sysroot" "$cargo_home" "$project" "$out" "$target" "${image_env[@]}"
}

# --roots-only: make both roots side by side and stop. CI starts this in the
# background right after installing its tools: it is mostly downloads and
# unpacking, so it overlaps the host's compile instead of adding to the run.
if [ "${1:-}" = "--roots-only" ]; then
  mkdir -p "$roots"
  pids=()
  for target in "${targets[@]}"; do
    make_root "$target" "$roots/$target" > "$roots/$target.log" 2>&1 &
    pids+=("$!")
  done
  failed=0
  for index in "${!targets[@]}"; do
    if ! wait "${pids[$index]}"; then
      echo "cross-build: the root for ${targets[$index]} failed:" >&2
      tail -40 "$roots/${targets[$index]}.log" >&2
      failed=1
    fi
  done
  [ "$failed" -eq 0 ] && step "roots ready"
  exit "$failed"
fi

# 1 and 2: the roots (cached until the recipe changes) and both builds.
# cross adds the targets to the host's toolchain and mounts it; crates are
# fetched on the host (for every platform), so the builds need no network.
rm -rf "$target_dir/aarch64-sysroot" # the old arm64-only recipe's sysroot
rustup target add "${targets[@]}" >/dev/null
sysroot="$(rustc --print sysroot)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
cargo fetch --locked >/dev/null
mkdir -p "$out"
for target in "${targets[@]}"; do
  make_root "$target" "$roots/$target"
  step "building $target in its root"
  build_started=$SECONDS
  build_in_root "$target" "$roots/$target"
  echo "$target release build: $((SECONDS - build_started)) s"
done

# 3. Each binary under qemu, with the root's target-arch GStreamer; the
# test harness starts the wrapper like the native binary.
step "host test bed"
cargo build --workspace --all-targets --locked
sizes=()
for target in "${targets[@]}"; do
  gnu="$(gnu_of "$target")"
  root="$roots/$target"
  binary="$out/$target/release/camera-agent"
  case "$target" in
    aarch64-*) file "$binary" | grep -q "ARM aarch64" ;;
    armv7-*) file "$binary" | grep -q "ARM, EABI5" ;;
  esac
  stripped="$(mktemp)"
  "$gnu-strip" -o "$stripped" "$binary"
  sizes+=("$target: $(stat -c %s "$stripped") bytes stripped")
  rm -f "$stripped"

  wrapper="$out/$target/camera-agent-qemu"
  cat > "$wrapper" <<WRAPPER
#!/bin/sh
export GST_REGISTRY_FORK=no
export GST_REGISTRY="$out/$target/gst-registry.bin"
export GST_PLUGIN_SYSTEM_PATH="$root/usr/lib/$gnu/gstreamer-1.0"
export GST_PLUGIN_SCANNER=/nonexistent
export GIO_MODULE_DIR="$root/usr/lib/$gnu/gio/modules"
exec $(qemu_of "$target") -L "$root" "$binary" "\$@"
WRAPPER
  chmod +x "$wrapper"

  step "$target under $(qemu_of "$target"): --version, probe, a streaming session"
  "$wrapper" --version
  "$wrapper" probe
  CAMERA_AGENT_BIN="$wrapper" bash scripts/netns.sh \
    cargo test --offline --locked -p camera-agent-tests --test e2e -- --exact \
    sigterm_mid_stream_ends_the_session_with_camera_shutdown

  bash packaging/build-deb.sh "$(deb_arch_of "$target")" "$binary"
done

printf '%s\n' "${sizes[@]}"
step "done"
