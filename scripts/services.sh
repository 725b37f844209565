#!/usr/bin/env bash
# Make sure the servers the test suite needs answer: PostgreSQL and Redis on 127.0.0.1.
# Starts an installed-but-stopped server; fails with one line when a server is missing.
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

ensure_postgres && ensure_redis
