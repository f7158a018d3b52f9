#!/usr/bin/env bash
# auction-perf.sh BIN LABEL [perf] [BIDDERS] [WATCHERS]: scripts/bench's server env (SOUK_BENCH_PORT,
# SOUK_BENCH_DB), `souk-bench auction --bidders BIDDERS (4000) --watchers WATCHERS (100)
# --amounts rising --duration 20`; Redis's `INFO commandstats` before and after the run (deltas
# into $PROFILE_OUT/auction-$LABEL.redis) and the server's read and write system calls per second
# over 12 s of the bidding (/proc/PID/io); with "perf": perf record (cpu-clock, dwarf call graphs,
# PERF_FREQ samples/s, default 999) on the server for 12 s of the bidding, into $PROFILE_OUT
# (default /tmp/profile-run). Read it with
#   perf script -F comm,tid,ip,sym,dso -i $PROFILE_OUT/auction-LABEL.perf > x.txt; perfcat.py x.txt
set -u
BIN=$1; LABEL=$2; MODE=${3:-}; BIDDERS=${4:-4000}; WATCHERS=${5:-100}; OUT=${PROFILE_OUT:-/tmp/profile-run}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mkdir -p $OUT
start_souk $BIN $OUT/auction-server.log
redis-cli info commandstats > $OUT/auction-$LABEL.redis-before
${SOUK_BENCH_BIN:-target/release/souk-bench} auction --bidders $BIDDERS --watchers $WATCHERS --amounts rising --duration 20 \
 --database-url "$DB_URL" \
 --url http://127.0.0.1:$PORT --secret $SECRET --server-pid $SPID --watch-procs redis-server,postgres > $OUT/auction-$LABEL.txt 2>&1 &
BPID=$!
# the bidders connect first; the bench prints "bidding" when they start
until grep -qi "bidding" $OUT/auction-$LABEL.txt 2>/dev/null; do sleep 0.2; done
sleep 3
# the server's read and write system calls over 12 s of the bidding
grep -E '^sysc[rw]' /proc/$SPID/io > $OUT/auction-$LABEL.io-before
if [ "$MODE" = perf ]; then
  perf record -F ${PERF_FREQ:-999} -e cpu-clock --call-graph dwarf,16384 -p $SPID -o $OUT/auction-$LABEL.perf -- sleep 12 > $OUT/perf-$LABEL.log 2>&1
else
  sleep 12
fi
grep -E '^sysc[rw]' /proc/$SPID/io > $OUT/auction-$LABEL.io-after
wait $BPID
redis-cli info commandstats > $OUT/auction-$LABEL.redis-after
stop_souk
# commandstats deltas: calls and CPU microseconds per command over the run
python3 - $OUT/auction-$LABEL.redis-before $OUT/auction-$LABEL.redis-after > $OUT/auction-$LABEL.redis <<'PY'
import sys, re
def read(path):
    out = {}
    for line in open(path):
        m = re.match(r'cmdstat_(\S+):calls=(\d+),usec=(\d+)', line)
        if m: out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
rows = [(k, c - a.get(k, (0, 0))[0], u - a.get(k, (0, 0))[1]) for k, (c, u) in b.items()]
for k, c, u in sorted(rows, key=lambda r: -r[2]):
    if c: print(f'{k:24} calls {c:>9}  usec {u:>10}  usec/call {u / c:7.2f}')
PY
grep -iE 'answered|accepted|CPU|missing' $OUT/auction-$LABEL.txt
cat $OUT/auction-$LABEL.redis | head -12
paste $OUT/auction-$LABEL.io-before $OUT/auction-$LABEL.io-after | awk '{printf "%s per second over 12 s: %.0f\n", $1, ($4 - $2) / 12}'

