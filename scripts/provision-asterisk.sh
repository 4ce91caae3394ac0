#!/usr/bin/env bash
# Provision Asterisk (22, from Debian testing) in a debootstrap chroot, because Debian 12 has none.
# Idempotent and cached: a finished root (marked by .ivr-provisioned) is reused as it is.
# Usage: provision-asterisk.sh ROOT
set -euo pipefail
root=${1:?usage: provision-asterisk.sh ROOT}
mirror=${IVR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
marker=$root/.ivr-provisioned

if [[ -f $marker ]]; then
  exit 0
fi
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

mkdir -p "$root"
if [[ ! -x $root/usr/bin/apt-get ]]; then
  echo "provision: debootstrap Debian testing into $root (about a minute)" >&2
  # This debootstrap has no script for forky; sid's works for testing.
  debootstrap --variant=minbase forky "$root" "$mirror" /usr/share/debootstrap/scripts/sid >&2
fi
# The mirror's Release files can be past Valid-Until; don't let that stop apt.
echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99ivr-no-valid-until"
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
echo "provision: installing asterisk in the chroot" >&2
chroot "$root" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
  asterisk asterisk-core-sounds-en-wav >&2
chroot "$root" /usr/sbin/asterisk -V >&2
touch "$marker"
