#!/usr/bin/env bash
# massif.sh N HOLD LABEL BIN: BIN (a release build with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only)
# MASSIF_BENCH_ARGS: more souk-bench idle arguments (e.g. "--transport polling").
# under massif serving N idle connections (souk-bench idle, scripts/bench's env);
# detailed snapshots before and during the hold via vgdb.
set -u
N=$1; HOLD=$2; OUT=${PROFILE_OUT:-/tmp/profile-run}/$3$N
mkdir -p $OUT
PORT=${SOUK_BENCH_PORT:-18184}; DB=${SOUK_BENCH_DB:-souk_bench_profile}; SECRET=bench-secret-0123456789abcdef0123456789
psql -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" >/dev/null
ulimit -n $(ulimit -Hn)
SOUK_OPENS_PER_ADDR_BURST=0 SOUK_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
 SOUK_REDIS_URL=redis://127.0.0.1:6379 SOUK_JWT_SECRET=$SECRET SOUK_HTTP_ADDR=127.0.0.1:$PORT \
 SOUK_REDIS_PREFIX="$DB:" RUST_LOG=warn \
 valgrind --tool=massif --massif-out-file=$OUT/massif.out --threshold=0.01 --vgdb=yes --vgdb-error=1000000 \
 $4 serve > $OUT/server.log 2>&1 &
VPID=$!
for i in $(seq 600); do curl -fsS -o /dev/null http://127.0.0.1:$PORT/readyz 2>/dev/null && break; sleep 0.5; done
echo ready after $i
sleep 2
vgdb --pid=$VPID detailed_snapshot $OUT/before.ms > /dev/null
${SOUK_BENCH_BIN:-target/release/souk-bench} idle --connections $N --hold $HOLD ${MASSIF_BENCH_ARGS:-} --connect-timeout 60 --url http://127.0.0.1:$PORT --secret $SECRET --server-pid $VPID > $OUT/bench.txt 2>&1 &
BPID=$!
# wait until all connected, then snapshot mid-hold
sleep $((HOLD/2 + 20))
vgdb --pid=$VPID detailed_snapshot $OUT/hold.ms > /dev/null
wait $BPID
kill -TERM $VPID; wait $VPID
psql -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
redis-cli --scan --pattern "$DB:*" | sed 's/^/DEL /' | redis-cli >/dev/null
echo done
