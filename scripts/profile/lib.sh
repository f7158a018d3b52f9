#!/usr/bin/env bash
# Sourced by the profile scripts: scripts/bench's server env in one place.
# Port $SOUK_BENCH_PORT (default 18184), database $SOUK_BENCH_DB (default
# souk_bench_profile), Redis prefix "$DB:", the per-user rates raised as
# scripts/bench raises them.
PORT=${SOUK_BENCH_PORT:-18184}; DB=${SOUK_BENCH_DB:-souk_bench_profile}; SECRET=bench-secret-0123456789abcdef0123456789
DB_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"

# start_souk BIN LOG: a fresh database, then `BIN serve` in the background
# (its pid in SPID), once /readyz answers.
start_souk() {
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB"
  ulimit -n $(ulimit -Hn)
  for v in MESSAGES ROOMS TYPING BIDS HISTORY READS; do export SOUK_RATE_$v=1000000 SOUK_RATE_${v}_BURST=1000000; done
  SOUK_OPENS_PER_ADDR_BURST=0 SOUK_DATABASE_URL="$DB_URL" \
   SOUK_REDIS_URL=redis://127.0.0.1:6379 SOUK_JWT_SECRET=$SECRET SOUK_HTTP_ADDR=127.0.0.1:$PORT \
   SOUK_REDIS_PREFIX="$DB:" $1 serve > $2 2>&1 &
  SPID=$!
  until curl -fsS -o /dev/null http://127.0.0.1:$PORT/readyz 2>/dev/null; do sleep 0.1; done
}

# stop_souk: SIGTERM to $SPID, then the database and the prefix's keys go.
stop_souk() {
  kill -TERM $SPID; wait $SPID
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
  redis-cli --scan --pattern "$DB:*" | sed 's/^/DEL /' | redis-cli >/dev/null
}
