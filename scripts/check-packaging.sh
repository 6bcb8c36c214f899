#!/usr/bin/env bash
# Checks the service unit (systemd-analyze verify, and a security exposure
# of 2.0 or lower), builds the amd64 .deb (lintian must report no error),
# and installs and purges it on this machine: postinst must create the user
# and state directory and enable the unit, purge must remove the state.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p camera-agent
unit="$(mktemp -d)/camera-agent.service"
sed "s#/usr/bin/camera-agent#$PWD/target/release/camera-agent#" systemd/camera-agent.service > "$unit"
systemd-analyze verify "$unit"
exposure="$(systemd-analyze security --offline=true systemd/camera-agent.service 2>&1 \
  | sed -n 's/.*Overall exposure level for camera-agent.service: \([0-9.]*\).*/\1/p')"
echo "systemd-analyze security exposure: $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || { echo "exposure $exposure > 2.0"; exit 1; }

deb="$(bash packaging/build-deb.sh amd64 target/release/camera-agent)"
echo "built $deb ($(stat -c %s "$deb") bytes)"

apt-get install -y --no-install-recommends "./$deb"
getent passwd camera-agent >/dev/null
id -nG camera-agent | grep -qw video
[ -d /var/lib/camera-agent ]
[ -L /etc/systemd/system/multi-user.target.wants/camera-agent.service ]
camera-agent --version
camera-agent check-config >/dev/null
dpkg --purge camera-agent
[ ! -e /var/lib/camera-agent ]
[ ! -e /etc/systemd/system/multi-user.target.wants/camera-agent.service ]
[ ! -e /usr/bin/camera-agent ]
echo "package install and purge: ok"
