#!/usr/bin/env bash
# Make sure what the test suite needs is here: PostgreSQL and Redis answering on 127.0.0.1,
# bubblewrap (the local executor's sandbox), and chromium, firefox-esr, node and axe-core (the
# dashboard's tests).
# Starts an installed-but-stopped server, installs the tools from Debian's packages when they are
# missing and this runs as root; fails with one line when something is missing and cannot be
# fixed here.
set -u
PGHOST=${TRAINPORT_TEST_PGHOST:-127.0.0.1}; PGPORT=${TRAINPORT_TEST_PGPORT:-5432}
REDIS_PORT=${TRAINPORT_TEST_REDIS_PORT:-6379}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() { for _ in $(seq 1 50); do port_open "$1" "$2" && return 0; sleep 0.2; done; return 1; }

ensure_postgres() {
  port_open "$PGHOST" "$PGPORT" && return 0
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  fi
  wait_port "$PGHOST" "$PGPORT" && return 0
  echo "make test: PostgreSQL is not reachable on $PGHOST:$PGPORT and could not be started (install postgresql, or set TRAINPORT_TEST_PGHOST/PGPORT)." >&2
  return 1
}

ensure_redis() {
  port_open 127.0.0.1 "$REDIS_PORT" && return 0
  if command -v redis-server >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /tmp --logfile /tmp/trainport-redis.log >/dev/null 2>&1 || true
  fi
  wait_port 127.0.0.1 "$REDIS_PORT" && return 0
  echo "make test: Redis is not reachable on 127.0.0.1:$REDIS_PORT and could not be started (install redis-server)." >&2
  return 1
}

ensure_bubblewrap() {
  command -v bwrap >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q bubblewrap >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; }
  fi
  command -v bwrap >/dev/null 2>&1 && return 0
  echo "make test: bubblewrap (bwrap) is missing and could not be installed (apt-get install bubblewrap)." >&2
  return 1
}

# The dashboard's tests: its unit tests run under node, its browser tests drive Debian's chromium
# through Playwright (whose own browser download is not reachable here) and Debian's Firefox ESR
# over WebDriver BiDi (tests/dashboard/bidi.py).
ensure_debian_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q "$2" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null 2>&1; }
  fi
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "make test: $1 is missing and could not be installed (apt-get install $2)." >&2
  return 1
}

# The browser tests' accessibility checks inject axe-core, pinned by tests/dashboard's
# package-lock.json (test-only: never served, never in the wheel).
ensure_axe() {
  local tests; tests="$(cd "$(dirname "$0")/.." && pwd)/tests/dashboard"
  [ -f "$tests/node_modules/axe-core/axe.min.js" ] && return 0
  command -v npm >/dev/null 2>&1 || ensure_debian_tool npm npm || return 1
  npm ci --prefix "$tests" --no-audit --no-fund >/dev/null 2>&1 && return 0
  echo "make test: axe-core could not be installed (npm ci --prefix tests/dashboard)." >&2
  return 1
}

ensure_postgres && ensure_redis && ensure_bubblewrap \
  && ensure_debian_tool chromium chromium && ensure_debian_tool firefox-esr firefox-esr \
  && ensure_debian_tool node nodejs && ensure_axe
