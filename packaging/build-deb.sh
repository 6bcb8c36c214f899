#!/usr/bin/env bash
# Builds camera-agent_<version>_<arch>.deb from an already built binary:
#   packaging/build-deb.sh <amd64|arm64|armhf> <path/to/camera-agent> [out-dir]
# Reproducible: fixed file order, owners and timestamps (SOURCE_DATE_EPOCH,
# default: the last commit's time). Then runs lintian when installed.
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:?architecture (amd64, arm64 or armhf)}"
binary="${2:?path to the camera-agent binary}"
out="${3:-target/deb}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
case "$arch" in
  amd64) strip="strip" ;;
  arm64) strip=aarch64-linux-gnu-strip ;;
  armhf) strip=arm-linux-gnueabihf-strip ;;
  *) echo "unknown architecture $arch" >&2; exit 2 ;;
esac

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/camera-agent_${version}_${arch}"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
  "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" "$root/etc/camera-agent" \
  "$root/usr/share/doc/camera-agent"
install -m 0755 "$binary" "$root/usr/bin/camera-agent"
"$strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/camera-agent"
install -m 0644 systemd/camera-agent.service "$root/lib/systemd/system/camera-agent.service"
install -m 0644 systemd/camera-agent.sysusers "$root/usr/lib/sysusers.d/camera-agent.conf"
install -m 0644 systemd/camera-agent.tmpfiles "$root/usr/lib/tmpfiles.d/camera-agent.conf"
install -m 0644 configs/usb-uvc.toml "$root/etc/camera-agent/agent.toml"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/camera-agent/copyright"
install -m 0644 README.md docs/deploy.md docs/configuration.md docs/hardware.md \
  docs/rollout.md docs/migration.md docs/protocol-events.md \
  "$root/usr/share/doc/camera-agent/"
gzip -9n "$root/usr/share/doc/camera-agent/"*.md
changelog_date="$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
cat > "$stage/changelog" <<CHANGELOG
camera-agent ($version) unstable; urgency=medium

  * Release $version.

 -- camera-agent maintainers <maintainers@example.invalid>  $changelog_date
CHANGELOG
gzip -9n -c "$stage/changelog" > "$root/usr/share/doc/camera-agent/changelog.gz"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
echo /etc/camera-agent/agent.toml > "$root/DEBIAN/conffiles"
size_kib="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: camera-agent
Version: $version
Architecture: $arch
Maintainer: camera-agent maintainers <maintainers@example.invalid>
Installed-Size: $size_kib
Depends: libc6 (>= 2.36), libgcc-s1, libglib2.0-0 (>= 2.74), libgstreamer1.0-0 (>= 1.22), libgstreamer-plugins-base1.0-0 (>= 1.22), libgstreamer-plugins-bad1.0-0 (>= 1.22), gstreamer1.0-plugins-base, gstreamer1.0-plugins-good, gstreamer1.0-plugins-bad, gstreamer1.0-nice, systemd
Recommends: gstreamer1.0-plugins-ugly
Suggests: gstreamer1.0-libcamera
Section: video
Priority: optional
Homepage: https://example.invalid/camera-agent
Description: headless camera daemon streaming live WebRTC video on request
 camera-agent logs in to a cloud control plane with its device token, waits
 for a viewer's request, and streams live H.264 from a V4L2 or libcamera
 camera (or a test pattern) to the viewer's browser or phone over WebRTC,
 using the board's hardware encoder where there is one.
CONTROL
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/camera-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
if command -v lintian >/dev/null 2>&1; then
  # Errors fail the build; warnings are printed for the record.
  lintian --fail-on error --suppress-tags-from-file packaging/lintian-overrides "$deb" >&2
fi
