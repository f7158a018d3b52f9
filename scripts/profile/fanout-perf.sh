#!/usr/bin/env bash
# fanout-perf.sh BIN LABEL [perf]: scripts/bench's server env (SOUK_BENCH_PORT, SOUK_BENCH_DB), fanout 10x500 at 400/s for 15 s;
# with "perf": perf record (cpu-clock, dwarf call graphs, PERF_FREQ samples/s, default 1999) on the
# server for 12 s of the run, into $PROFILE_OUT (default /tmp/profile-run).
set -u
BIN=$1; LABEL=$2; MODE=${3:-}
PORT=${SOUK_BENCH_PORT:-18184}; DB=${SOUK_BENCH_DB:-souk_bench_profile}; SECRET=bench-secret-0123456789abcdef0123456789
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB"
ulimit -n $(ulimit -Hn)
for v in MESSAGES ROOMS TYPING BIDS HISTORY READS; do export SOUK_RATE_$v=1000000 SOUK_RATE_${v}_BURST=1000000; done
SOUK_OPENS_PER_ADDR_BURST=0 SOUK_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
 SOUK_REDIS_URL=redis://127.0.0.1:6379 SOUK_JWT_SECRET=$SECRET SOUK_HTTP_ADDR=127.0.0.1:$PORT \
 SOUK_REDIS_PREFIX="$DB:" $BIN serve > ${PROFILE_OUT:-/tmp/profile-run}/fanout-server.log 2>&1 &
SPID=$!
until curl -fsS -o /dev/null http://127.0.0.1:$PORT/readyz 2>/dev/null; do sleep 0.1; done
${SOUK_BENCH_BIN:-target/release/souk-bench} fanout --rooms 10 --members 500 --rate 400 --duration 15 --url http://127.0.0.1:$PORT --secret $SECRET --server-pid $SPID --watch-procs redis-server,postgres > ${PROFILE_OUT:-/tmp/profile-run}/fanout-$LABEL.txt 2>&1 &
BPID=$!
if [ "$MODE" = perf ]; then
  # wait for the members to be in (the bench prints "publishing" when it starts)
  until grep -qi "publish\|sending\|events/s" ${PROFILE_OUT:-/tmp/profile-run}/fanout-$LABEL.txt 2>/dev/null; do sleep 0.2; done
  sleep 2
  # `-- sleep 12` rather than `timeout -s INT`: on a loaded machine the
  # interrupted perf sometimes left its file unfinished (no samples).
  perf record -F ${PERF_FREQ:-1999} -e cpu-clock --call-graph dwarf,16384 -p $SPID -o ${PROFILE_OUT:-/tmp/profile-run}/fanout-$LABEL.perf -- sleep 12 > ${PROFILE_OUT:-/tmp/profile-run}/perf-$LABEL.log 2>&1
fi
wait $BPID
kill -TERM $SPID; wait $SPID
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
redis-cli --scan --pattern "$DB:*" | sed 's/^/DEL /' | redis-cli >/dev/null
