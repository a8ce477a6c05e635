#!/usr/bin/env bash
# tests/bench/scale/run.sh: how far one skiff-controller goes, measured alone
# with hollow nodes (skiff-bench-hollow: simulated agents over the real
# protocol, no containers).
#
#   tests/bench/scale/run.sh          (any user; builds build-bench if needed)
#
# It starts skiff-controller (its own data dir and port) and NODES hollow
# nodes, then measures, with skiff-bench-scale polling the controller as the
# CLI does:
#   (a) a service of REPLICAS replicas created: time until all run;
#   (b) a rolling update of it (parallelism 500, monitor 1s, stop-first);
#   (d) the controller's RSS (VmRSS; peak: VmHWM) and CPU (utime+stime of
#       /proc/PID/stat) over STEADY seconds while every node heartbeats
#       every second, the REPLICAS tasks running;
#   (e) kill -9 of the controller and a restart on the same data dir: time
#       until every node is back and reporting and every task runs again,
#       with the same task ids as before the kill;
#   (c) a scale down to 0: time until no task runs;
# and the scheduler microbenchmark (skiff-bench-sched). (c) comes last
# because (d) and (e) want the tasks running. It prints a table of figures
# next to the targets; nothing fails on a timing (tests/bench/README.md).
#
# Environment: BUILD (default <repo>/build-bench), NODES (1000), REPLICAS
# (10000), PARALLELISM (500), MONITOR (1s), STEADY (30, seconds), PORT
# (27400; the controller's /metrics on PORT+1), HOLLOW_ARGS (more flags for
# skiff-bench-hollow), UPDATE=0 (skip (b), which takes REPLICAS/PARALLELISM
# batches of at least 1.2 s each), KEEP=1 (keep the work directory with the
# logs). The RSS and CPU targets are issue 21's: 100 MB and 10% up to 1,000
# nodes, 200 MB and 15% beyond (5,000 nodes, 100,000 replicas).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
NODES=${NODES:-1000}
REPLICAS=${REPLICAS:-10000}
PARALLELISM=${PARALLELISM:-500}
MONITOR=${MONITOR:-1s}
STEADY=${STEADY:-30}
PORT=${PORT:-27400}
HOLLOW_ARGS=${HOLLOW_ARGS:-}
UPDATE=${UPDATE:-1}
if [ "$NODES" -gt 1000 ]; then RSS_TARGET=200 CPU_TARGET=15; else RSS_TARGET=100 CPU_TARGET=10; fi
WORK=$(mktemp -d /tmp/skiff-scale-bench.XXXXXX)
HZ=$(getconf CLK_TCK)
BIN=$BUILD/bin
ADDR=127.0.0.1:$PORT
METRICS_ADDR=127.0.0.1:$((PORT + 1))   # the controller's /metrics
CTL_PID=
HOLLOW_PID=

log() { printf '%s\n' "$*" >&2; }

cleanup() {
    for pid in $HOLLOW_PID $CTL_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every hollow node is one connection, on both sides of one machine.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((NODES * 2 + 256)) ]; then
    log "ulimit -n is $(ulimit -n): too low for $NODES nodes"
    exit 1
fi

# A release build, configured once (tests/bench/README.md).
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSKIFF_E2E=OFF >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" --target skiff-controller skiff-bench-hollow \
    skiff-bench-scale skiff-bench-sched >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; exit 1; }

# ----------------------------------------------------------------- helpers

start_controller() { # waits for its "listening" line, so that a taken port shows at once
    local before
    before=$(grep -c "listening on" "$WORK/controller.log" 2>/dev/null) || true
    "$BIN/skiff-controller" --listen "$ADDR" --data-dir "$WORK/data" \
        --metrics-listen "$METRICS_ADDR" \
        --max-connections $((NODES + 256)) --max-connections-per-address $((NODES + 256)) \
        >>"$WORK/controller.log" 2>&1 &
    CTL_PID=$!
    for _ in $(seq 200); do
        if [ "$(grep -c "listening on" "$WORK/controller.log")" -gt "${before:-0}" ]; then
            return 0
        fi
        if ! kill -0 "$CTL_PID" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    log "the controller did not start (PORT=$PORT taken?):"
    tail -5 "$WORK/controller.log" >&2
    exit 1
}

bench() { # COMMAND ARGS...: skiff-bench-scale, its KEY=VALUE lines into $WORK/figures
    local cmd=$1
    shift
    "$BIN/skiff-bench-scale" "$cmd" --controller "$ADDR" --token-file "$WORK/data/admin-token" \
        --service scale "$@" | tee -a "$WORK/figures" >&2 || log "  ($cmd did not converge)"
}

fig() { # KEY: its value from $WORK/figures (the last one), or "-"
    local v
    v=$(grep "^$1=" "$WORK/figures" | tail -1 | cut -d= -f2-) || true
    printf '%s' "${v:--}"
}

cpu_ticks() { # PID: utime + stime, in clock ticks (fields 14 and 15; comm has no spaces here)
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

status_kb() { # PID FIELD: VmRSS, VmHWM, in kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

ms_to_s() { # MS or "timeout ..." -> seconds with 2 decimals
    case $1 in
    '' | - | timeout* | skipped*) printf '%s' "${1:--}" ;;
    *) awk -v ms="$1" 'BEGIN { printf "%.2f s", ms / 1000 }' ;;
    esac
}

now_ms() { date +%s%3N; }

phase_cpu() { # NAME START_TICKS START_MS: controller CPU over a phase, as % of one core
    local ticks=$(($(cpu_ticks "$CTL_PID") - $2)) ms=$(($(now_ms) - $3))
    awk -v t="$ticks" -v hz="$HZ" -v ms="$ms" -v n="$1" \
        'BEGIN { printf "%s_cpu=%.1f%% of one core over %.1f s (%.2f s CPU)\n", n, 100 * t / hz / (ms / 1000), ms / 1000, t / hz }' \
        >>"$WORK/figures"
}

# ------------------------------------------------------------------ run

log "work dir $WORK; controller on $ADDR; $NODES hollow nodes; $REPLICAS replicas"
start_controller
"$BIN/skiff-bench-hollow" --controller "$ADDR" --join-token-file "$WORK/data/join-token" \
    --nodes "$NODES" --stats-interval 10s $HOLLOW_ARGS >"$WORK/hollow.log" 2>&1 &
HOLLOW_PID=$!
log "-- nodes register"
bench nodes --count "$NODES" --timeout 120s

log "-- (a) create: $REPLICAS replicas"
t=$(cpu_ticks "$CTL_PID") m=$(now_ms)
bench create --replicas "$REPLICAS" --image bench/app:1 --timeout 300s
phase_cpu create "$t" "$m"

if [ "$UPDATE" = 1 ]; then
    log "-- (b) rolling update: parallelism $PARALLELISM, monitor $MONITOR, stop-first"
    t=$(cpu_ticks "$CTL_PID") m=$(now_ms)
    bench update --image bench/app:2 --parallelism "$PARALLELISM" --monitor "$MONITOR" \
        --delay 0s --order stop-first --poll 100ms --timeout 900s
    phase_cpu update "$t" "$m"
else
    echo "update_ms=skipped (UPDATE=0)" >>"$WORK/figures"
fi

log "-- (d) steady state: $NODES nodes heartbeating, $STEADY s"
sleep 5 # the update's last commits and pushes settle
t=$(cpu_ticks "$CTL_PID") m=$(now_ms)
ht=$(cpu_ticks "$HOLLOW_PID")
rss_max=0 rss_sum=0
for _ in $(seq "$STEADY"); do
    sleep 1
    r=$(status_kb "$CTL_PID" VmRSS)
    rss_sum=$((rss_sum + r))
    if [ "$r" -gt "$rss_max" ]; then rss_max=$r; fi
done
phase_cpu steady "$t" "$m"
hollow_ticks=$(($(cpu_ticks "$HOLLOW_PID") - ht))
{
    echo "steady_rss_mb=$(awk -v k=$((rss_sum / STEADY)) 'BEGIN { printf "%.1f", k / 1024 }')"
    echo "steady_rss_max_mb=$(awk -v k="$rss_max" 'BEGIN { printf "%.1f", k / 1024 }')"
    echo "steady_rss_last_mb=$(awk -v k="$r" 'BEGIN { printf "%.1f", k / 1024 }')"
    echo "peak_rss_mb=$(awk -v k="$(status_kb "$CTL_PID" VmHWM)" 'BEGIN { printf "%.1f", k / 1024 }')"
    echo "hollow_cpu=$(awk -v t=$hollow_ticks -v hz="$HZ" -v s="$STEADY" 'BEGIN { printf "%.1f%%", 100 * t / hz / s }')"
    echo "hollow_rss_mb=$(awk -v k="$(status_kb "$HOLLOW_PID" VmRSS)" 'BEGIN { printf "%.1f", k / 1024 }')"
} >>"$WORK/figures"
log "$(grep -E '^(steady|peak)' "$WORK/figures")"

log "-- /metrics scrape with $REPLICAS tasks (median of 10)"
for _ in $(seq 10); do
    curl -s -o /dev/null -w '%{time_total}\n' "http://$METRICS_ADDR/metrics"
done | sort -n | awk '{ v[NR] = $1 } END { printf "scrape_ms=%.1f\n", 1000 * (v[5] + v[6]) / 2 }' \
    >>"$WORK/figures"
echo "scrape_bytes=$(curl -s "http://$METRICS_ADDR/metrics" | wc -c)" >>"$WORK/figures"
log "$(grep -E '^scrape' "$WORK/figures")"

log "-- (e) kill -9 and restart on the same data dir"
bench tasks --out "$WORK/before"
kill -9 "$CTL_PID"
wait "$CTL_PID" 2>/dev/null || true
since=$(now_ms)
start_controller
echo "restart_listening_ms=$(($(now_ms) - since))" >>"$WORK/figures"
bench recover --count "$NODES" --since-ms "$since" --before "$WORK/before" --settle 5s \
    --poll 250ms --timeout 120s
echo "restart_peak_rss_mb=$(awk -v k="$(status_kb "$CTL_PID" VmHWM)" 'BEGIN { printf "%.1f", k / 1024 }')" \
    >>"$WORK/figures"

log "-- (c) scale down to 0"
t=$(cpu_ticks "$CTL_PID") m=$(now_ms)
bench scale --replicas 0 --poll 100ms --timeout 300s
phase_cpu scale "$t" "$m"

log "-- scheduler microbenchmark"
"$BIN/skiff-bench-sched" 21 | tee "$WORK/sched.txt" >&2
awk '/one service, no constraint/ { print "sched_ms=" $6 }' "$WORK/sched.txt" >>"$WORK/figures"

# ------------------------------------------------------------------ table

cpu_pct() { fig "$1" | awk '{ print $1 }'; }
cat <<EOF

skiff-controller scale benchmark: $NODES hollow nodes, $REPLICAS replicas
($(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME"), $(date -u +%Y-%m-%d))

| step                                                  | figure           | target   |
|-------------------------------------------------------|------------------|----------|
$(printf '| %-53s | %-16s | %-8s |\n' \
    "$NODES nodes registered" "$(ms_to_s "$(fig nodes_ready_ms)")" "-" \
    "(a) $REPLICAS replicas running after the create" "$(ms_to_s "$(fig create_running_ms)")" "<= 10 s" \
    "(b) rolling update, parallelism $PARALLELISM, monitor $MONITOR" "$(ms_to_s "$(fig update_ms)")" "-" \
    "(c) scale to 0, until no task runs" "$(ms_to_s "$(fig scale_down_ms)")" "-" \
    "(d) RSS, peak (VmHWM, whole run before the kill)" "$(fig peak_rss_mb) MB" "<= $RSS_TARGET MB" \
    "(d) RSS, steady (mean over ${STEADY} s)" "$(fig steady_rss_mb) MB" "<= $RSS_TARGET MB" \
    "(d) RSS, at the end of the steady window" "$(fig steady_rss_last_mb) MB" "<= $RSS_TARGET MB" \
    "(d) CPU, steady, $NODES nodes heartbeating 1/s" "$(cpu_pct steady_cpu)" "<= $CPU_TARGET %" \
    "/metrics scrape, $REPLICAS tasks (median of 10)" "$(fig scrape_ms) ms" "<= 100 ms" \
    "(e) restart: controller listening (from the kill)" "$(ms_to_s "$(fig restart_listening_ms)")" "-" \
    "(e) restart: every node back and reporting" "$(ms_to_s "$(fig recover_nodes_ms)")" "-" \
    "(e) restart: every task running again" "$(ms_to_s "$(fig recover_ms)")" "<= 10 s" \
    "(e) same task ids, none created twice" "$(fig recover_same_ids)" "yes" \
    "scheduler alone: 10,000 tasks on 1,000 nodes (median)" "$(fig sched_ms) ms" "<= 100 ms")

Controller CPU per phase: create $(fig create_cpu); update $(fig update_cpu);
scale to 0 $(fig scale_cpu).
RSS after the restart (VmHWM): $(fig restart_peak_rss_mb) MB. skiff-bench-hollow (the
$NODES nodes) during (d): CPU $(fig hollow_cpu) of one core, RSS $(fig hollow_rss_mb) MB.
EOF
