#!/usr/bin/env bash
# tests/bench/ha/run.sh: the highly available controller, measured.
#
#   tests/bench/ha/run.sh          (any user; etcd-server installed; builds build-bench)
#
# (1) failover, TRIALS times (5): a 3-member etcd cluster on loopback ports,
#     3 controllers on it (--leader-lease LEASE, 3s), one service; kill -9 of
#     the leader, then `skiff service scale` through the controller list
#     until one succeeds: the time from the kill to the new leader's first
#     committed write (its reply leaves only once the write is in etcd), and
#     to its "leading" log line (the election alone). The killed controller
#     is started again (as a follower) before the next trial.
# (2) scale, on SQLite and on etcd: one controller, NODES (1000) hollow nodes
#     (skiff-bench-hollow), a service of REPLICAS (10000) replicas: the time
#     from the create to all running, and the controller's peak RSS.
# It prints each trial, the median and maximum, and a table of (2) with both
# stores side by side, against the targets (failover <= 5 s median; 10k
# replicas running within 15 s on etcd). Nothing fails on a timing.
#
# Environment: BUILD (<repo>/build-bench), TRIALS (5), LEASE (3s), NODES
# (1000), REPLICAS (10000), SKIP_SCALE=1 (failover only), KEEP=1 (keep the
# work directory with the logs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
TRIALS=${TRIALS:-5}
LEASE=${LEASE:-3s}
NODES=${NODES:-1000}
REPLICAS=${REPLICAS:-10000}
WORK=$(mktemp -d /tmp/skiff-ha-bench.XXXXXX)
BIN=$BUILD/bin
PIDS=()

log() { printf '%s\n' "$*" >&2; }
now_ms() { date +%s%3N; }

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v etcd >/dev/null || { log "etcd is not installed (apt-get install etcd-server etcd-client)"; exit 1; }
ulimit -n "$(ulimit -Hn)"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSKIFF_E2E=OFF >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" --target skiff skiff-controller skiff-bench-hollow \
    skiff-bench-scale >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; exit 1; }

GIVEN=" "
free_port() { # a port in 20000-31999 that nothing listens on, never given twice
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        [[ "$GIVEN" == *" $p "* ]] && continue
        [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] || continue
        GIVEN+="$p "
        echo "$p"
        return
    done
}

wait_for() { # SECONDS CMD...
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
maximum() { sort -n | tail -n1; }

# ------------------------------------------------------------------ etcd

ENDPOINTS= CLUSTER=
for i in 1 2 3; do
    c=$(free_port) p=$(free_port)
    eval "EC_$i=$c EP_$i=$p"
    ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$c"
    CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$p"
done
for i in 1 2 3; do
    c=$(eval echo "\$EC_$i") p=$(eval echo "\$EP_$i")
    etcd --name "e$i" --data-dir "$WORK/e$i" --listen-client-urls "http://127.0.0.1:$c" \
        --advertise-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$p" \
        --initial-advertise-peer-urls "http://127.0.0.1:$p" --initial-cluster "$CLUSTER" \
        --initial-cluster-token "bench-${WORK##*.}" --initial-cluster-state new \
        >"$WORK/e$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 1 2 3; do
    wait_for 30 env ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$(eval echo "\$EC_$i")" endpoint health ||
        { log "etcd member $i did not come up"; exit 1; }
done
log "etcd: $ENDPOINTS"

# ------------------------------------------------------------- failover

declare -A CPID CPORT
HOSTS=
for i in 1 2 3; do
    CPORT[$i]=$(free_port)
    HOSTS+="${HOSTS:+,}127.0.0.1:${CPORT[$i]}"
done

ctl_start() { # I
    local i=$1
    "$BIN/skiff-controller" --listen "127.0.0.1:${CPORT[$i]}" --data-dir "$WORK/c$i" \
        --store "etcd://$ENDPOINTS" --store-prefix /bench/failover/ --leader-lease "$LEASE" \
        >>"$WORK/c$i.log" 2>&1 &
    CPID[$i]=$!
    PIDS+=($!)
    wait_for 30 test -s "$WORK/c$i/admin-token" || { log "controller $i did not start"; exit 1; }
}

leader() { # the index of the controller that says it leads itself
    local i
    for i in 1 2 3; do
        kill -0 "${CPID[$i]}" 2>/dev/null || continue
        if SKIFF_HOST=127.0.0.1:${CPORT[$i]} "$BIN/skiff" controller ls --format json 2>/dev/null |
            jq -e --arg a "127.0.0.1:${CPORT[$i]}" '.[] | select(.address == $a and .role == "leader")' >/dev/null; then
            echo "$i"
            return 0
        fi
    done
    return 1
}

for i in 1 2 3; do ctl_start "$i"; done
export SKIFF_HOST=$HOSTS SKIFF_TOKEN_FILE=$WORK/c1/admin-token
wait_for 30 leader || { log "no controller leads"; exit 1; }
"$BIN/skiff" service create -d -q --name bench --replicas 0 bench/app:1 >/dev/null

log "-- (1) failover: kill -9 of the leader, $TRIALS trials, lease $LEASE"
: >"$WORK/failover" && : >"$WORK/election"
for t in $(seq "$TRIALS"); do
    l=$(leader)
    t0=$(now_ms)
    kill -9 "${CPID[$l]}"
    wait "${CPID[$l]}" 2>/dev/null || true
    until "$BIN/skiff" service scale -d "bench=$t" >/dev/null 2>&1; do sleep 0.05; done
    t1=$(now_ms)
    n=$(leader)
    line=$(grep 'controller: leading (term' "$WORK/c$n.log" | tail -n1)
    te=$(date -d "${line%% *}" +%s%3N)
    echo $((t1 - t0)) >>"$WORK/failover"
    echo $((te - t0)) >>"$WORK/election"
    log "  trial $t: controller $l killed; controller $n leads after $((te - t0)) ms, first write committed after $((t1 - t0)) ms"
    ctl_start "$l"
    sleep 1
done
for i in 1 2 3; do kill "${CPID[$i]}" 2>/dev/null || true; wait "${CPID[$i]}" 2>/dev/null || true; done

# ----------------------------------------------------------------- scale

scale_run() { # sqlite|etcd: "create_running_ms peak_rss_mb"
    local kind=$1 port dir flags=() pid hpid out rss
    port=$(free_port)
    dir=$WORK/scale-$kind
    [ "$kind" = etcd ] && flags=(--store "etcd://$ENDPOINTS" --store-prefix /bench/scale/)
    "$BIN/skiff-controller" --listen "127.0.0.1:$port" --data-dir "$dir" \
        --max-connections $((NODES + 256)) --max-connections-per-address $((NODES + 256)) \
        "${flags[@]}" >"$WORK/scale-$kind.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    wait_for 30 test -s "$dir/admin-token" || { log "the $kind controller did not start"; return 1; }
    wait_for 30 sh -c "SKIFF_HOST=127.0.0.1:$port SKIFF_TOKEN_FILE=$dir/admin-token '$BIN/skiff' controller ls | grep -q leader"
    "$BIN/skiff-bench-hollow" --controller "127.0.0.1:$port" --join-token-file "$dir/join-token" \
        --nodes "$NODES" >"$WORK/hollow-$kind.log" 2>&1 &
    hpid=$!
    PIDS+=($hpid)
    "$BIN/skiff-bench-scale" nodes --controller "127.0.0.1:$port" --token-file "$dir/admin-token" \
        --count "$NODES" --timeout 120s >/dev/null
    out=$("$BIN/skiff-bench-scale" create --controller "127.0.0.1:$port" --token-file "$dir/admin-token" \
        --service scale --replicas "$REPLICAS" --image bench/app:1 --timeout 300s || true)
    rss=$(awk '$1 == "VmHWM:" { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
    kill "$hpid" "$pid" 2>/dev/null || true
    wait "$hpid" "$pid" 2>/dev/null || true
    echo "$(grep '^create_running_ms=' <<<"$out" | cut -d= -f2) $rss"
}

if [ "${SKIP_SCALE:-0}" != 1 ]; then
    log "-- (2) $REPLICAS replicas on $NODES hollow nodes: SQLite, then etcd"
    read -r sq_ms sq_rss < <(scale_run sqlite)
    log "  sqlite: all running after $sq_ms ms, peak RSS $sq_rss MB"
    read -r et_ms et_rss < <(scale_run etcd)
    log "  etcd:   all running after $et_ms ms, peak RSS $et_rss MB"
fi

# ----------------------------------------------------------------- table

s() { awk -v ms="$1" 'BEGIN { if (ms ~ /^[0-9]+$/) printf "%.2f s", ms / 1000; else printf "%s", ms }'; }
cat <<TABLE

skiff, highly available controller ($(nproc) CPUs; etcd $(etcd --version | awk '/etcd Version/ { print $3 }'), lease $LEASE)

failover, kill -9 of the leader ($TRIALS trials)        median      max       target
  to the new leader's first committed write     $(s "$(median <"$WORK/failover")")    $(s "$(maximum <"$WORK/failover")")    <= 5 s median
  to its election ("leading")                   $(s "$(median <"$WORK/election")")    $(s "$(maximum <"$WORK/election")")
TABLE
if [ "${SKIP_SCALE:-0}" != 1 ]; then
    cat <<TABLE

$REPLICAS replicas, $NODES hollow nodes                  SQLite      etcd      target
  create to all running                         $(s "$sq_ms")    $(s "$et_ms")    <= 15 s on etcd
  controller peak RSS                           $sq_rss MB     $et_rss MB
TABLE
fi
