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

start_postgresql
