#!/usr/bin/env bash
# Build the Debian package of the OTAGuard device agent: otaguard-agent_<version>_<arch>.deb.
#
# Usage: scripts/build-agent-deb.sh [OUT_DIR]   (default: dist/; PYTHON=python3.11 to choose)
#        EXTRAS=mqtt scripts/build-agent-deb.sh   also packs paho-mqtt (push wake-ups, [agent.mqtt])
#
# The package is self-contained: OTAGuard and the Python packages a device needs (not the
# server's: see pyproject.toml, the [server] extra) are installed with pip into
# /usr/lib/otaguard/python for the Python that builds it, so the package depends only on that
# Python version. It carries:
#   /usr/bin/otaguard                               the command (agent run/confirm/status/install)
#   /usr/lib/otaguard/python/                       OTAGuard and its device dependencies
#   /lib/systemd/system/otaguard-agent.service      the agent (packaging/)
#   /lib/systemd/system/otaguard-confirm.service    post-boot confirmation of a trial boot
#   /etc/otaguard/agent.toml                        example config (a conffile; edit per device)
#   /usr/share/otaguard/u-boot/boot.cmd, grub/grub.cfg   the bootloader side
#   /var/lib/otaguard/                              state directory (0700)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$REPO/dist}" && cd "${1:-$REPO/dist}" && pwd)"
PY="${PYTHON:-python3}"
VERSION="$("$PY" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$REPO/pyproject.toml")"
PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
ARCH="$(dpkg --print-architecture)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PKG="$WORK/otaguard-agent"
LIB="$PKG/usr/lib/otaguard/python"

# Build from a clean copy of the sources (no .venv, no build/ left in the repository).
mkdir -p "$WORK/src"
tar -C "$REPO" --exclude=.venv --exclude=.git --exclude=dist --exclude=otaguard-data \
  -cf - pyproject.toml README.md src | tar -C "$WORK/src" -xf -
"$PY" -m pip install --quiet --no-compile --disable-pip-version-check --target "$LIB" "$WORK/src${EXTRAS:+[$EXTRAS]}"
rm -rf "$LIB/bin"  # console scripts with the build machine's paths: /usr/bin/otaguard instead
find "$LIB" -name __pycache__ -prune -exec rm -rf {} +

install -d "$PKG/usr/bin" "$PKG/lib/systemd/system" "$PKG/etc/otaguard" \
  "$PKG/usr/share/otaguard/u-boot" "$PKG/usr/share/otaguard/grub" "$PKG/DEBIAN"
install -d -m 0700 "$PKG/var/lib/otaguard"
cat > "$PKG/usr/bin/otaguard" <<WRAPPER
#!/bin/sh
# OTAGuard (device agent package): the Python packages live in /usr/lib/otaguard/python.
export PYTHONPATH=/usr/lib/otaguard/python
exec /usr/bin/python$PYVER -s -c 'from otaguard.cli.main import main; main()' "\$@"
WRAPPER
chmod 0755 "$PKG/usr/bin/otaguard"
install -m 0644 "$REPO/packaging/otaguard-agent.service" "$REPO/packaging/otaguard-confirm.service" \
  "$PKG/lib/systemd/system/"
install -m 0640 "$REPO/packaging/agent.toml" "$PKG/etc/otaguard/agent.toml"
install -m 0644 "$REPO/packaging/u-boot/boot.cmd" "$PKG/usr/share/otaguard/u-boot/"
install -m 0644 "$REPO/packaging/grub/grub.cfg" "$PKG/usr/share/otaguard/grub/"
echo /etc/otaguard/agent.toml > "$PKG/DEBIAN/conffiles"
SIZE="$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)"
cat > "$PKG/DEBIAN/control" <<CONTROL
Package: otaguard-agent
Version: $VERSION
Architecture: $ARCH
Maintainer: OTAGuard maintainers <otaguard@localhost>
Depends: python$PYVER
Recommends: u-boot-tools
Installed-Size: $SIZE
Section: admin
Priority: optional
Description: OTAGuard over-the-air update agent
 Verifies TUF-signed releases and director assignments, streams them into the
 inactive A/B slot, boots them on trial and commits or rolls back.
CONTROL
DEB="$OUT/otaguard-agent_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group --build "$PKG" "$DEB" >/dev/null
echo "$DEB"
