#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: Debian's PostgreSQL, on 127.0.0.1 and a Unix socket.
#
#   scripts/postgres.sh install       install Debian's postgresql when no server binaries exist
#   scripts/postgres.sh bindir        print the directory of the server binaries (exit 1: none)
#   scripts/postgres.sh start DIR     initdb into DIR (if new), start, print the admin URL
#   scripts/postgres.sh stop DIR      stop the cluster in DIR (nothing running: no error)
#   scripts/postgres.sh restart DIR   restart it on the same port
#
# PostgreSQL refuses to run as root, so as root the server runs as the system user loopserve-pg
# (created here). Durability is traded for speed (fsync off): the data is for one test run.
set -euo pipefail

PG_USER=loopserve-pg
ADMIN=postgres

die() { echo "error: $*" >&2; exit 1; }

bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  fi
  # Debian keeps the server binaries off PATH, one directory per major version; take the newest.
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

install() {
  if dir=$(bindir); then echo "PostgreSQL server binaries found in $dir"; return 0; fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL's server binaries (pg_ctl, initdb) are missing. Install them, e.g." >&2
    echo "  sudo apt-get install -y postgresql     (Debian, Ubuntu)" >&2
    exit 1
  fi
  echo "installing Debian's postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -qq -o DPkg::Lock::Timeout=300 update
  apt-get -qq -o DPkg::Lock::Timeout=300 install -y --no-install-recommends postgresql >/dev/null
  bindir >/dev/null || die "postgresql was installed but pg_ctl is still missing"
}

# Run a command as the cluster's owner: loopserve-pg when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then runuser -u "$PG_USER" -- "$@"
    else su -s /bin/sh "$PG_USER" -c "$(printf '%q ' "$@")"; fi
  else
    "$@"
  fi
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id "$PG_USER" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER" \
    || die "cannot create the system user $PG_USER"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

admin_url() {
  local dir=$1
  echo "postgresql://$ADMIN:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/postgres"
}

init_cluster() {
  local dir=$1 bin=$2
  ensure_user
  mkdir -p "$dir"
  chmod 700 "$dir"
  python3 -c 'import secrets; print(secrets.token_hex(16))' >"$dir/password"
  free_port >"$dir/port"
  [ "$(id -u)" -ne 0 ] || chown -R "$PG_USER" "$dir"
  # Passwords over TCP (tests check the refusal of a wrong one), trust on the socket in DIR.
  as_owner "$bin/initdb" -D "$dir/data" -U "$ADMIN" --pwfile="$dir/password" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $(cat "$dir/port")
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
checkpoint_timeout = 1h
shared_buffers = 64MB
log_min_messages = warning
CONF
}

pg_ctl_() {
  local dir=$1 bin=$2; shift 2
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 "$@"
}

start() {
  local dir=${1:?usage: $0 start DIR} bin
  bin=$(bindir) || die "no PostgreSQL server binaries; run: $0 install"
  [ -d "$dir/data" ] || init_cluster "$dir" "$bin"
  pg_ctl_ "$dir" "$bin" start >/dev/null || { tail -n 20 "$dir/server.log" >&2; die "PostgreSQL did not start"; }
  admin_url "$dir"
}

stop() {
  local dir=${1:?usage: $0 stop DIR} bin
  [ -f "$dir/data/postmaster.pid" ] || return 0
  bin=$(bindir) || die "no PostgreSQL server binaries"
  pg_ctl_ "$dir" "$bin" stop -m fast >/dev/null
}

restart() {
  local dir=${1:?usage: $0 restart DIR} bin
  bin=$(bindir) || die "no PostgreSQL server binaries"
  pg_ctl_ "$dir" "$bin" restart -m fast >/dev/null || { tail -n 20 "$dir/server.log" >&2; die "PostgreSQL did not restart"; }
  admin_url "$dir"
}

case "${1:-}" in
  install) install ;;
  bindir) bindir ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  restart) restart "${2:-}" ;;
  *) echo "usage: $0 install | bindir | start DIR | stop DIR | restart DIR" >&2; exit 2 ;;
esac
