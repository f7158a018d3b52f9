#!/usr/bin/env bash
# idle-perf.sh BIN LABEL [N]: scripts/bench's server env (port $SOUK_BENCH_PORT, default 18184,
# database $SOUK_BENCH_DB, default souk_bench_profile), `souk-bench idle --connections N
# (5000) --hold 5`, with perf record (cpu-clock, dwarf call graphs) on the server from the
# first connect for 6 s: the connect burst.
set -u
BIN=$1; LABEL=$2; N=${3:-5000}; OUT=${PROFILE_OUT:-/tmp/profile-run}
PORT=${SOUK_BENCH_PORT:-18184}; DB=${SOUK_BENCH_DB:-souk_bench_profile}; SECRET=bench-secret-0123456789abcdef0123456789
mkdir -p $OUT
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB"
ulimit -n $(ulimit -Hn)
SOUK_OPENS_PER_ADDR_BURST=0 SOUK_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
 SOUK_REDIS_URL=redis://127.0.0.1:6379 SOUK_JWT_SECRET=$SECRET SOUK_HTTP_ADDR=127.0.0.1:$PORT \
 SOUK_REDIS_PREFIX="$DB:" $BIN serve > $OUT/idle-perf-server.log 2>&1 &
SPID=$!
until curl -fsS -o /dev/null http://127.0.0.1:$PORT/readyz 2>/dev/null; do sleep 0.1; done
sleep 1
perf record -F 499 -e cpu-clock --call-graph dwarf,16384 -p $SPID -o $OUT/idle-$LABEL.perf -- sleep 6 > $OUT/idle-perf-$LABEL.log 2>&1 &
PERF=$!
${SOUK_BENCH_BIN:-target/release/souk-bench} idle --connections $N --hold 5 --url http://127.0.0.1:$PORT --secret $SECRET --server-pid $SPID --watch-procs redis-server,postgres > $OUT/idle-perf-$LABEL.txt 2>&1
wait $PERF
kill -TERM $SPID; wait $SPID
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
redis-cli --scan --pattern "$DB:*" | sed 's/^/DEL /' | redis-cli >/dev/null
grep -E 'RSS per connection|connect rate|connects/s|CPU' $OUT/idle-perf-$LABEL.txt
