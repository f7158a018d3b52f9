#!/usr/bin/env bash
# fanout-perf.sh BIN LABEL [perf]: scripts/bench's server env (SOUK_BENCH_PORT, SOUK_BENCH_DB), fanout 10x500 at 400/s for 15 s;
# with "perf": perf record (cpu-clock, dwarf call graphs, PERF_FREQ samples/s, default 1999) on the
# server for 12 s of the run, into $PROFILE_OUT (default /tmp/profile-run).
set -u
BIN=$1; LABEL=$2; MODE=${3:-}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
start_souk $BIN ${PROFILE_OUT:-/tmp/profile-run}/fanout-server.log
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
stop_souk
