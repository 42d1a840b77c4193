#!/usr/bin/env bash
# Start the local services the tests use when they are installed but not running. Idempotent;
# run by scripts/system-deps.sh (so by `make test` and CI).
set -uo pipefail

start_postgresql() {
  command -v pg_lsclusters >/dev/null || { echo "start-services: PostgreSQL is not installed" >&2; return 0; }
  local versions
  versions=$(ls /etc/postgresql 2>/dev/null) || true
  [ -n "$versions" ] || { echo "start-services: no PostgreSQL cluster configured" >&2; return 0; }
  local version
  for version in $versions; do
    if pg_lsclusters --no-header 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
      continue
    fi
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "start-services: starting PostgreSQL $version/main"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start \
      || echo "start-services: PostgreSQL $version/main did not start" >&2
  done
}

# Mosquitto on 127.0.0.1:1883 for the push wake-up tests: left alone when something already
# listens there (a system broker, the machine's own service), else started in the background
# with packaging/mosquitto/test-broker.conf (loopback only, anonymous).
start_mosquitto() {
  if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    return 0
  fi
  local bin
  bin=$(command -v mosquitto || true)
  [ -n "$bin" ] || [ ! -x /usr/sbin/mosquitto ] || bin=/usr/sbin/mosquitto
  [ -n "$bin" ] || { echo "start-services: Mosquitto is not installed" >&2; return 0; }
  echo "start-services: starting Mosquitto on 127.0.0.1:1883"
  "$bin" -d -c "$(dirname "$0")/../packaging/mosquitto/test-broker.conf" \
    || { echo "start-services: Mosquitto did not start" >&2; return 0; }
  local i
  for i in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "start-services: Mosquitto is not listening on 127.0.0.1:1883" >&2
}

start_postgresql
start_mosquitto
