# shellcheck shell=bash
# Shared helpers for souk's scripts (scripts/dev, scripts/test, .ci/run).
#
# Source it from bash:   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It sets no shell options itself but is safe under `set -euo pipefail`.
# Everything it creates at run time lives in "$ROOT/.data/" (git-ignored).
#
# Environment it reads (all optional):
#   SOUK_PG_PORT      PostgreSQL port on 127.0.0.1           (default 5432)
#   SOUK_REDIS_PORT   Redis port on 127.0.0.1                (default 6379)
#   SOUK_REDIS_CLUSTER_PORT first of the three ports of the local Redis
#                     Cluster (ensure_redis_cluster) on 127.0.0.1: this one,
#                     +1 and +2                              (default 7101)
#   SOUK_START_TIMEOUT seconds to wait for a started service (default 60)
#
# Environment it exports (each keeps a value already set by the caller):
#   SOUK_DATABASE_URL    postgres://postgres@127.0.0.1:$SOUK_PG_PORT/souk
#   SOUK_REDIS_URL       redis://127.0.0.1:$SOUK_REDIS_PORT
#   SOUK_TEST_PG_URL     postgres://postgres@127.0.0.1:$SOUK_PG_PORT
#                        (admin base URL, no database: tests create and drop
#                        their own databases named souk_test_*)
#   SOUK_TEST_REDIS_URL  redis://127.0.0.1:$SOUK_REDIS_PORT
#   SOUK_PG_PORT, SOUK_REDIS_PORT, SOUK_REDIS_CLUSTER_PORT

# ---------------------------------------------------------------- basics

# log MSG...: print "==> MSG" to stderr.
log() {
  printf '==> %s\n' "$*" >&2
}

# die MSG...: print an error and exit the (sourcing) script.
die() {
  printf '==> error: %s\n' "$*" >&2
  exit 1
}

# souk_root: print the repository root (the directory above scripts/).
souk_root() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)" || return 1
  (cd "$here/.." && pwd -P)
}

ROOT="$(souk_root)" || die "cannot determine the souk repository root"
SOUK_DATA="$ROOT/.data"

SOUK_PG_PORT="${SOUK_PG_PORT:-5432}"
SOUK_REDIS_PORT="${SOUK_REDIS_PORT:-6379}"
SOUK_REDIS_CLUSTER_PORT="${SOUK_REDIS_CLUSTER_PORT:-7101}"
export SOUK_PG_PORT SOUK_REDIS_PORT SOUK_REDIS_CLUSTER_PORT

: "${SOUK_DATABASE_URL:=postgres://postgres@127.0.0.1:${SOUK_PG_PORT}/souk}"
: "${SOUK_REDIS_URL:=redis://127.0.0.1:${SOUK_REDIS_PORT}}"
: "${SOUK_TEST_PG_URL:=postgres://postgres@127.0.0.1:${SOUK_PG_PORT}}"
: "${SOUK_TEST_REDIS_URL:=redis://127.0.0.1:${SOUK_REDIS_PORT}}"
export SOUK_DATABASE_URL SOUK_REDIS_URL SOUK_TEST_PG_URL SOUK_TEST_REDIS_URL

# souk_bin: path of the debug souk binary (honours CARGO_TARGET_DIR).
souk_bin() {
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  case "$target" in
    /*) ;;
    *) target="$ROOT/$target" ;;
  esac
  printf '%s/debug/souk\n' "$target"
}

_souk_data_dir() {
  mkdir -p "$SOUK_DATA" || die "cannot create $SOUK_DATA"
}

# _as_root CMD...: run CMD as root (directly, or through sudo).
_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run: $* (not root and no sudo)"
  fi
}

# ---------------------------------------------------------------- packages

_SOUK_APT_UPDATED=0

# _pkg_installed NAME: true when the Debian package NAME is installed.
_pkg_installed() {
  local status
  status="$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" || return 1
  [ "$status" = "installed" ]
}

# apt_install PKG...: install Debian packages non-interactively, running
# `apt-get update` at most once per process.
apt_install() {
  [ "$#" -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 \
    || die "apt-get not found; install these packages by hand: $*"
  if [ "$_SOUK_APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
      || die "apt-get update failed"
    _SOUK_APT_UPDATED=1
  fi
  log "apt-get install $*"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends "$@" </dev/null \
    || die "apt-get install failed for: $*"
}

# ensure_cargo: cargo comes from rustup on this kind of machine; it cannot be
# installed from Debian at a usable version, so it is a prerequisite.
ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    if [ -x "$cargo_bin/cargo" ]; then
      PATH="$cargo_bin:$PATH"
      export PATH
    else
      die "cargo not found on PATH (nor in $cargo_bin). The Rust toolchain" \
        "(rustup: cargo, rustc, rustfmt, clippy) is a prerequisite of this" \
        "machine and cannot be installed by these scripts."
    fi
  fi
}

# ensure_packages: Debian packages needed to build, test and run souk.
ensure_packages() {
  ensure_cargo
  local missing=() pkg
  for pkg in libpq-dev pkg-config build-essential curl; do
    _pkg_installed "$pkg" || missing+=("$pkg")
  done
  # The postgresql-client metapackage is often absent while a versioned
  # client (postgresql-client-15, ...) is installed: either will do.
  if ! _pkg_installed postgresql-client \
    && ! dpkg-query -W -f='${db:Status-Status} ${Package}\n' 'postgresql-client-[0-9]*' 2>/dev/null \
      | grep -q '^installed '; then
    missing+=(postgresql-client)
  fi
  # Node.js and npm only when the commands are missing (the machine may
  # carry a newer Node/npm from elsewhere that Debian's would conflict with).
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  # nginx fronts several nodes in scripts/cluster and the client suite's
  # nginx test. Debian 12's `nginx` is the binary itself (upstream hash and
  # WebSocket proxying are built in); nginx-light only adds modules.
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
}

# ensure_chromium: Debian's Chromium for the browser suite (tests/browser),
# which playwright-core drives as /usr/bin/chromium. Only scripts/test needs
# it, so scripts/dev does not pull a browser in.
ensure_chromium() {
  _pkg_installed chromium || apt_install chromium
}

# ensure_promtool: Prometheus's promtool checks deploy/prometheus/alerts.yml
# and the dashboard's queries (scripts/test). Debian ships it only in the
# `prometheus` package (a 19 MB download: the server comes along). Only
# scripts/test needs it. Where the init system starts services on install,
# that also starts a Prometheus server on :9090 (a container with a
# policy-rc.d that forbids it, as CI's machine has, starts nothing).
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
}

# ---------------------------------------------------------------- postgres

_SOUK_PG_BINDIR=""
_SOUK_PG_SOCKDIR=""

# psql_admin ARGS...: psql as the postgres superuser, database postgres.
psql_admin() {
  PGCONNECT_TIMEOUT=10 psql -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$SOUK_PG_PORT" -U postgres -d postgres "$@"
}

_pg_ready() {
  pg_isready -q -h 127.0.0.1 -p "$SOUK_PG_PORT" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

# _pg_find_bindir [MAJOR]: newest /usr/lib/postgresql/*/bin with initdb and
# pg_ctl (or exactly that major version).
_pg_find_bindir() {
  local want="${1:-}" dir best=""
  for dir in /usr/lib/postgresql/*/bin; do
    if [ ! -x "$dir/initdb" ] || [ ! -x "$dir/pg_ctl" ]; then
      continue
    fi
    if [ -n "$want" ]; then
      [ "$dir" = "/usr/lib/postgresql/$want/bin" ] && best="$dir"
    else
      if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$dir" | sort -V | tail -n 1)" = "$dir" ]; then
        best="$dir"
      fi
    fi
  done
  [ -n "$best" ] || return 1
  printf '%s\n' "$best"
}

# _pg_run CMD...: run CMD as the postgres system user when we are root
# (postgres refuses to run as root), else as ourselves; from / so the
# server never depends on our working directory.
_pg_run() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- env LC_ALL=C "$@")
  else
    (cd / && env LC_ALL=C "$@")
  fi
}

_pg_ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id -u postgres >/dev/null 2>&1; then
    log "creating system user postgres"
    useradd --system --user-group --no-create-home \
      --home-dir /var/lib/postgresql --shell /bin/bash postgres \
      || die "cannot create the postgres system user"
  fi
  # Every ancestor of the data dir must be traversable by postgres: walk
  # from / downwards and add o+x only where postgres is stopped.
  local dir="" part rest="${SOUK_DATA#/}"
  while [ -n "$rest" ]; do
    part="${rest%%/*}"
    if [ "$part" = "$rest" ]; then rest=""; else rest="${rest#*/}"; fi
    [ -n "$part" ] || continue
    dir="$dir/$part"
    if ! runuser -u postgres -- test -x "$dir"; then
      log "making $dir traversable (o+x) for the postgres user"
      chmod o+x "$dir" || die "cannot chmod o+x $dir"
    fi
  done
}

# _pg_own PATH...: hand PATH over to the postgres user (when root).
_pg_own() {
  [ "$(id -u)" -eq 0 ] || return 0
  chown postgres:postgres "$@" || die "cannot chown $* to postgres"
}

_pg_log_tail() {
  local logfile="$SOUK_DATA/postgres.log"
  if [ -f "$logfile" ]; then
    printf -- '---- last lines of %s ----\n' "$logfile" >&2
    tail -n 40 "$logfile" >&2 || true
    printf -- '----\n' >&2
  fi
}

# ensure_postgres: a PostgreSQL server on 127.0.0.1:$SOUK_PG_PORT that lets
# user postgres in without a password. Uses a running one; otherwise starts
# (initialising it first if needed) a cluster in $ROOT/.data/postgres.
ensure_postgres() {
  if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    apt_install postgresql-client
  fi
  if _pg_ready; then
    log "postgres: using the server already running on 127.0.0.1:$SOUK_PG_PORT"
    return 0
  fi

  _souk_data_dir
  local pgdata="$SOUK_DATA/postgres" logfile="$SOUK_DATA/postgres.log"
  local sockdir="$SOUK_DATA/postgres-run" bindir version locale
  local limit="${SOUK_START_TIMEOUT:-60}"

  # A unix socket path must fit in ~107 bytes; fall back to /tmp if not.
  if [ "${#sockdir}" -gt 80 ]; then
    sockdir="/tmp/souk-pg-$(printf '%s' "$SOUK_DATA" | cksum | cut -d' ' -f1)"
  fi
  _SOUK_PG_SOCKDIR="$sockdir"

  # Reuse an existing cluster with its own major version's binaries.
  if [ -f "$pgdata/PG_VERSION" ]; then
    version="$(cat "$pgdata/PG_VERSION")"
    if ! bindir="$(_pg_find_bindir "$version")"; then
      apt_install "postgresql-$version"
      bindir="$(_pg_find_bindir "$version")" \
        || die "no PostgreSQL $version binaries for the cluster in $pgdata;" \
          "delete $pgdata to start afresh"
    fi
  else
    if ! bindir="$(_pg_find_bindir)"; then
      apt_install postgresql
      bindir="$(_pg_find_bindir)" \
        || die "no initdb/pg_ctl under /usr/lib/postgresql/*/bin after installing postgresql"
    fi
  fi
  _SOUK_PG_BINDIR="$bindir"

  _pg_ensure_user
  mkdir -p "$sockdir" || die "cannot create $sockdir"
  touch "$logfile" || die "cannot create $logfile"
  _pg_own "$sockdir" "$logfile"

  if [ ! -f "$pgdata/PG_VERSION" ]; then
    # A data dir without PG_VERSION is a leftover of a failed initdb.
    rm -rf "$pgdata"
    mkdir -p "$pgdata" || die "cannot create $pgdata"
    chmod 700 "$pgdata"
    _pg_own "$pgdata"
    locale=C
    if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
      locale=C.UTF-8
    fi
    log "postgres: initdb $pgdata ($bindir)"
    if ! _pg_run "$bindir/initdb" -D "$pgdata" --auth=trust --username=postgres \
      --encoding=UTF8 --locale="$locale" >>"$logfile" 2>&1; then
      _pg_log_tail
      rm -rf "$pgdata"
      die "initdb failed (see $logfile)"
    fi
  else
    log "postgres: reusing cluster in $pgdata"
    if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %U "$pgdata")" != postgres ]; then
      chown -R postgres:postgres "$pgdata" || die "cannot chown $pgdata to postgres"
    fi
  fi

  log "postgres: starting on 127.0.0.1:$SOUK_PG_PORT (log: $logfile)"
  if ! _pg_run "$bindir/pg_ctl" -D "$pgdata" -l "$logfile" -w -t "$limit" \
    -o "-p $SOUK_PG_PORT -k $sockdir -c listen_addresses=127.0.0.1" start >/dev/null; then
    _pg_log_tail
    die "postgres failed to start on 127.0.0.1:$SOUK_PG_PORT (see $logfile)"
  fi

  local waited=0
  until _pg_ready; do
    if [ "$waited" -ge "$limit" ]; then
      _pg_log_tail
      die "postgres not ready on 127.0.0.1:$SOUK_PG_PORT after ${limit}s (see $logfile)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "postgres: ready on 127.0.0.1:$SOUK_PG_PORT"
}

# stop_postgres: stop the cluster in .data (if running); leaves others alone.
stop_postgres() {
  local pgdata="$SOUK_DATA/postgres" bindir
  [ -f "$pgdata/postmaster.pid" ] || return 0
  bindir="$(_pg_find_bindir "$(cat "$pgdata/PG_VERSION")")" \
    || die "no pg_ctl for the cluster in $pgdata"
  _pg_run "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1 || return 0
  log "postgres: stopping the cluster in $pgdata"
  _pg_run "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null \
    || die "pg_ctl stop failed for $pgdata"
}

# _check_db_name NAME: a plain identifier, so it needs no quoting games.
_check_db_name() {
  case "$1" in
    '' | [0-9]* | *[!A-Za-z0-9_]*) die "bad database name: '$1'" ;;
  esac
}

# ensure_database NAME: create database NAME if it does not exist.
ensure_database() {
  local name="${1:-}" exists
  _check_db_name "$name"
  exists="$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" \
    || die "cannot query databases on 127.0.0.1:$SOUK_PG_PORT"
  if [ "$exists" = "1" ]; then
    log "postgres: database $name exists"
  else
    log "postgres: creating database $name"
    psql_admin -c "CREATE DATABASE \"$name\"" || die "cannot create database $name"
  fi
}

# drop_stale_test_databases: drop every souk_test_* database that earlier
# test runs left behind.
drop_stale_test_databases() {
  local names name
  names="$(psql_admin -tA -c \
    "SELECT datname FROM pg_database WHERE datname LIKE 'souk\_test\_%' ORDER BY datname")" \
    || die "cannot list databases on 127.0.0.1:$SOUK_PG_PORT"
  [ -n "$names" ] || return 0
  while IFS= read -r name; do
    [ -n "$name" ] || continue
    _check_db_name "$name"
    log "postgres: dropping stale test database $name"
    psql_admin -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" \
      || die "cannot drop database $name"
  done <<<"$names"
}

# ---------------------------------------------------------------- redis

_redis_pong() {
  local reply
  reply="$(timeout 5 redis-cli -h 127.0.0.1 -p "$SOUK_REDIS_PORT" ping 2>/dev/null)" || true
  [ "$reply" = "PONG" ]
}

# ensure_redis: a Redis server on 127.0.0.1:$SOUK_REDIS_PORT. Uses a running
# one; otherwise starts one that keeps nothing on disk, working in .data/redis.
ensure_redis() {
  if command -v redis-cli >/dev/null 2>&1 && _redis_pong; then
    log "redis: using the server already running on 127.0.0.1:$SOUK_REDIS_PORT"
    return 0
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server
  fi

  _souk_data_dir
  local dir="$SOUK_DATA/redis" logfile="$SOUK_DATA/redis.log"
  local limit="${SOUK_START_TIMEOUT:-60}"
  mkdir -p "$dir" || die "cannot create $dir"

  log "redis: starting on 127.0.0.1:$SOUK_REDIS_PORT (log: $logfile)"
  # --pidfile keeps a daemonized server off the default /var/run/redis.pid,
  # which the machine's own Redis may be using.
  if ! redis-server --daemonize yes --bind 127.0.0.1 --port "$SOUK_REDIS_PORT" \
    --dir "$dir" --save "" --appendonly no --logfile "$logfile" \
    --pidfile "$SOUK_DATA/redis-$SOUK_REDIS_PORT.pid" </dev/null >/dev/null; then
    [ -f "$logfile" ] && tail -n 40 "$logfile" >&2
    die "redis-server failed to start (see $logfile)"
  fi

  local waited=0
  until _redis_pong; do
    if [ "$waited" -ge "$limit" ]; then
      [ -f "$logfile" ] && tail -n 40 "$logfile" >&2
      die "redis not answering PONG on 127.0.0.1:$SOUK_REDIS_PORT after ${limit}s (see $logfile)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "redis: ready on 127.0.0.1:$SOUK_REDIS_PORT"
}

# stop_redis: stop the Redis that ensure_redis started from .data (if any).
stop_redis() {
  local pidfile="$SOUK_DATA/redis-$SOUK_REDIS_PORT.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "redis: stopping the server on 127.0.0.1:$SOUK_REDIS_PORT (pid $pid)"
    timeout 10 redis-cli -h 127.0.0.1 -p "$SOUK_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  rm -f "$pidfile"
}

# ---------------------------------------------------------------- redis cluster

# _redis_port_pong PORT: true when a Redis on 127.0.0.1:PORT answers PONG.
_redis_port_pong() {
  local reply
  reply="$(timeout 5 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" || true
  [ "$reply" = "PONG" ]
}

# _redis_cluster_field PORT FIELD: print FIELD of `cluster info` on PORT
# (nothing when the node does not answer or has cluster support disabled).
_redis_cluster_field() {
  local info
  info="$(timeout 5 redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null)" || true
  printf '%s\n' "$info" | tr -d '\r' | sed -n "s/^$2://p"
}

# _redis_cluster_ok PORT...: true when every PORT reports cluster_state:ok.
_redis_cluster_ok() {
  local port
  for port in "$@"; do
    [ "$(_redis_cluster_field "$port" cluster_state)" = "ok" ] || return 1
  done
}

# _redis_cluster_ports: check SOUK_REDIS_CLUSTER_PORT and set the global
# array _SOUK_REDIS_CLUSTER_PORTS to it, +1 and +2.
_SOUK_REDIS_CLUSTER_PORTS=()
_redis_cluster_ports() {
  local base="$SOUK_REDIS_CLUSTER_PORT"
  case "$base" in
    '' | *[!0-9]*) die "SOUK_REDIS_CLUSTER_PORT is not a port number: '$base'" ;;
  esac
  if [ "$base" -lt 1 ] || [ "$base" -gt 55533 ]; then
    # The cluster bus listens on port + 10000, so the last node must fit.
    die "SOUK_REDIS_CLUSTER_PORT must be in 1..55533 (bus port = port + 10000): $base"
  fi
  _SOUK_REDIS_CLUSTER_PORTS=("$base" "$((base + 1))" "$((base + 2))")
}

_redis_cluster_logs() {
  printf '%s/redis-cluster-{%s,%s,%s}.log' "$SOUK_DATA" "$@"
}

_redis_cluster_log_tail() {
  local file
  for file in "$@"; do
    if [ -f "$file" ]; then
      printf -- '---- last lines of %s ----\n' "$file" >&2
      tail -n 20 "$file" >&2 || true
    fi
  done
  printf -- '----\n' >&2
}

# _redis_cluster_start PORT...: start a cluster-enabled node on each PORT
# that does not answer yet, then wait for PONG on every PORT.
_redis_cluster_start() {
  local port logfile limit="${SOUK_START_TIMEOUT:-60}" waited
  for port in "$@"; do
    if _redis_port_pong "$port"; then
      if [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" info cluster 2>/dev/null \
        | tr -d '\r' | sed -n 's/^cluster_enabled://p')" != "1" ]; then
        die "127.0.0.1:$port is a Redis without cluster support; stop it or" \
          "set SOUK_REDIS_CLUSTER_PORT to a free range of 3 ports"
      fi
      log "redis cluster: node 127.0.0.1:$port already running"
      continue
    fi
    logfile="$SOUK_DATA/redis-cluster-$port.log"
    log "redis cluster: starting node on 127.0.0.1:$port (log: $logfile)"
    if ! redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
      --cluster-enabled yes --cluster-config-file "$SOUK_DATA/redis-cluster-$port.conf" \
      --cluster-node-timeout 2000 --save "" --appendonly no --dir "$SOUK_DATA" \
      --logfile "$logfile" --pidfile "$SOUK_DATA/redis-cluster-$port.pid" \
      </dev/null >/dev/null; then
      _redis_cluster_log_tail "$logfile"
      die "redis-server failed to start on 127.0.0.1:$port (see $logfile)"
    fi
  done
  for port in "$@"; do
    waited=0
    until _redis_port_pong "$port"; do
      if [ "$waited" -ge "$limit" ]; then
        logfile="$SOUK_DATA/redis-cluster-$port.log"
        _redis_cluster_log_tail "$logfile"
        die "redis cluster node not answering PONG on 127.0.0.1:$port after ${limit}s (see $logfile)"
      fi
      sleep 1
      waited=$((waited + 1))
    done
  done
}

# _redis_cluster_unassigned PORT...: true when no PORT has any slot assigned.
_redis_cluster_unassigned() {
  local port
  for port in "$@"; do
    [ "$(_redis_cluster_field "$port" cluster_slots_assigned)" = "0" ] || return 1
  done
}

# _redis_cluster_create PORT...: make the nodes one cluster, all masters.
_redis_cluster_create() {
  local port addrs=() out="$SOUK_DATA/redis-cluster-create.log"
  for port in "$@"; do
    addrs+=("127.0.0.1:$port")
  done
  log "redis cluster: creating the cluster ${addrs[*]} (masters only; output: $out)"
  if ! timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 \
    --cluster-yes </dev/null >"$out" 2>&1; then
    _redis_cluster_log_tail "$out"
    return 1
  fi
}

# _redis_cluster_wait_ok SECONDS PORT...: wait until every PORT reports
# cluster_state:ok.
_redis_cluster_wait_ok() {
  local limit="$1" waited=0
  shift
  until _redis_cluster_ok "$@"; do
    [ "$waited" -lt "$((limit * 2))" ] || return 1
    sleep 0.5
    waited=$((waited + 1))
  done
}

# _redis_cluster_states PORT...: "PORT: state/slots" of each node, for logs.
_redis_cluster_states() {
  local port sep=""
  for port in "$@"; do
    printf '%s%s: %s, %s slots' "$sep" "$port" \
      "$(_redis_cluster_field "$port" cluster_state)" \
      "$(_redis_cluster_field "$port" cluster_slots_assigned)"
    sep="; "
  done
}

# ensure_redis_cluster: a 3-master Redis Cluster (no replicas) on 127.0.0.1,
# ports $SOUK_REDIS_CLUSTER_PORT, +1 and +2. Uses one already in state ok;
# otherwise starts the missing nodes (they keep nothing but their cluster
# config, .data/redis-cluster-PORT.conf) and creates the cluster when no slot
# is assigned yet. A cluster that does not become ok (stale configs from an
# earlier run, say) is rebuilt afresh: it holds no data worth keeping.
ensure_redis_cluster() {
  _redis_cluster_ports
  local ports=("${_SOUK_REDIS_CLUSTER_PORTS[@]}") port limit=20 logs
  logs="$(_redis_cluster_logs "${ports[@]}")"
  if command -v redis-cli >/dev/null 2>&1 && _redis_cluster_ok "${ports[@]}"; then
    log "redis cluster: using the cluster already running on 127.0.0.1:${ports[0]}-${ports[2]}"
    return 0
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server
  fi
  _souk_data_dir

  _redis_cluster_start "${ports[@]}"
  local why=""
  if _redis_cluster_unassigned "${ports[@]}" && ! _redis_cluster_ok "${ports[@]}"; then
    _redis_cluster_create "${ports[@]}" || why="creating the cluster failed"
  else
    log "redis cluster: waiting for state ok (up to ${limit}s)"
  fi
  if [ -z "$why" ]; then
    if _redis_cluster_wait_ok "$limit" "${ports[@]}"; then
      log "redis cluster: ready on 127.0.0.1:${ports[0]}-${ports[2]}"
      return 0
    fi
    why="not ok after ${limit}s ($(_redis_cluster_states "${ports[@]}"))"
  fi

  # Not ok: partly assigned slots, nodes that remember peers which are gone,
  # a failed create... Start from scratch: stop the nodes, drop their
  # configs, create the cluster again.
  log "redis cluster: $why; stopping the nodes, deleting their config files" \
    "and creating it afresh"
  stop_redis_cluster
  for port in "${ports[@]}"; do
    rm -f "$SOUK_DATA/redis-cluster-$port.conf"
  done
  _redis_cluster_start "${ports[@]}"
  _redis_cluster_create "${ports[@]}" \
    || die "redis cluster: creating the cluster on 127.0.0.1:${ports[0]}-${ports[2]} failed" \
      "(see $SOUK_DATA/redis-cluster-create.log and $logs)"
  if ! _redis_cluster_wait_ok "$limit" "${ports[@]}"; then
    die "redis cluster on 127.0.0.1:${ports[0]}-${ports[2]} not in state ok after ${limit}s" \
      "($(_redis_cluster_states "${ports[@]}")); see $logs"
  fi
  log "redis cluster: ready on 127.0.0.1:${ports[0]}-${ports[2]} (created afresh)"
}

# stop_redis_cluster: shut down the nodes on $SOUK_REDIS_CLUSTER_PORT, +1
# and +2 (without saving); their config files stay, so ensure_redis_cluster
# brings the same cluster back.
stop_redis_cluster() {
  _redis_cluster_ports
  local port waited
  for port in "${_SOUK_REDIS_CLUSTER_PORTS[@]}"; do
    if _redis_port_pong "$port"; then
      log "redis cluster: stopping the node on 127.0.0.1:$port"
      timeout 10 redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
      waited=0
      while _redis_port_pong "$port"; do
        [ "$waited" -lt 20 ] || die "redis cluster node on 127.0.0.1:$port does not stop"
        sleep 0.5
        waited=$((waited + 1))
      done
    fi
    rm -f "$SOUK_DATA/redis-cluster-$port.pid"
  done
}

# diesel_cli, pinned: the schema test compares `diesel print-schema` with
# src/store/schema.rs. Built from crates.io when missing (a few minutes).
DIESEL_CLI_VERSION=2.3.7
ensure_diesel_cli() {
  if command -v diesel >/dev/null 2>&1 && diesel --version | grep -q "$DIESEL_CLI_VERSION"; then
    return 0
  fi
  log "installing diesel_cli $DIESEL_CLI_VERSION (postgres only)"
  cargo install diesel_cli --version "$DIESEL_CLI_VERSION" --no-default-features \
    --features postgres --locked --quiet
}
