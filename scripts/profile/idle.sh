#!/usr/bin/env bash
# idle.sh BIN N LABEL [ARGS...]: one `souk-bench idle` run (20 s hold) against BIN, started with
# the env scripts/bench gives souk (port $SOUK_BENCH_PORT, default 18184, database
# $SOUK_BENCH_DB, default souk_bench_profile), so builds can alternate; ARGS go to souk-bench
# (e.g. --processes 2).
set -u
BIN=$1; N=$2; LABEL=$3; shift 3
PORT=${SOUK_BENCH_PORT:-18184}; DB=${SOUK_BENCH_DB:-souk_bench_profile}; SECRET=bench-secret-0123456789abcdef0123456789
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB"
ulimit -n $(ulimit -Hn)
SOUK_OPENS_PER_ADDR_BURST=0 SOUK_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
 SOUK_REDIS_URL=redis://127.0.0.1:6379 SOUK_JWT_SECRET=$SECRET SOUK_HTTP_ADDR=127.0.0.1:$PORT \
 SOUK_REDIS_PREFIX="$DB:" $BIN serve > ${PROFILE_OUT:-/tmp/profile-run}/idle-server.log 2>&1 &
SPID=$!
until curl -fsS -o /dev/null http://127.0.0.1:$PORT/readyz 2>/dev/null; do sleep 0.1; done
${SOUK_BENCH_BIN:-target/release/souk-bench} idle --connections $N --hold 20 "$@" --url http://127.0.0.1:$PORT --secret $SECRET --server-pid $SPID --watch-procs redis-server,postgres > ${PROFILE_OUT:-/tmp/profile-run}/idle-$LABEL.txt 2>&1
kill -TERM $SPID; wait $SPID
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
redis-cli --scan --pattern "$DB:*" | sed 's/^/DEL /' | redis-cli >/dev/null
echo "$LABEL: $(grep -E 'RSS per connection|connect rate|everything else' ${PROFILE_OUT:-/tmp/profile-run}/idle-$LABEL.txt | tr -s ' ' | tr '\n' ';')"
