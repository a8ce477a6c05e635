#!/usr/bin/env bash
# tests/bench/lb/run.sh: skiff's load balancer against HAProxy and a direct
# connection, with wrk, over 3 nginx backends in containers.
#
#   tests/bench/lb/run.sh            (as root; installs what it misses with apt-get)
#
# For each mode (keep-alive, a new connection per request, and keep-alive
# requests of a 1 MiB response) and target (one backend directly, HAProxy in
# tcp mode with roundrobin at its default threads, skiff-lb-bench with
# --threads LB_THREADS) it runs wrk --latency and reads the balancer's CPU
# time (utime+stime of /proc/PID/stat) over the run. It prints requests/s,
# p50, p99, CPU per request, each the median over ROUNDS rounds, and the
# ratios skiff/HAProxy; for the 1 MiB mode req/s is MiB/s and CPU/req is CPU
# per MiB. It runs once per BACKEND_NET. Nothing fails on a timing: the
# targets are printed next to the figures.
#
# On a shared machine the figures swing with whatever else runs, so: the
# order of HAProxy and skiff alternates from round to round, the ratios are
# the medians of each round's own ratios (both ran seconds apart), and every
# process of the benchmark (wrk, balancers, nginx, docker-proxy) runs at nice
# PRIORITY, so that other work on the machine disturbs it less.
#
# Environment: LB_THREADS (skiff-lb-bench --threads, default: the online
# CPUs), BUILD (build dir, default <repo>/build-lb-rel), DURATION (wrk
# -d, default 10s), CONNS (wrk -c, 50), THREADS (wrk -t, 2), ROUNDS (3),
# PRIORITY (nice value, -19; 0 to leave priorities alone), HAPROXY_GLOBAL (a
# line for HAProxy's global section, e.g. "nbthread 1"), HAPROXY_PORT
# (28081), SKIFF_PORT (28082), IMAGE (skiff-bench/nginx:big1),
# BACKEND_NET: a list of "published" and "host" (default both, one after the
# other): "published" (docker run -p 127.0.0.1::80, so that
# every backend connection goes through the engine's docker-proxy, as a
# balancer's connections to a node's published ports do) or "host" (the
# containers share the host's network and nginx listens on 127.0.0.1 at
# BACKEND_PORT, BACKEND_PORT+1, BACKEND_PORT+2 (default 28091): the
# balancers without docker-proxy's share of the two cores).
set -euo pipefail

BACKEND_NET=${BACKEND_NET:-published host}
if [ "$BACKEND_NET" != "${BACKEND_NET%% *}" ]; then
    rc=0
    for net in $BACKEND_NET; do
        BACKEND_NET=$net "$0" "$@" || rc=$?
    done
    exit $rc
fi

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${BUILD:-$ROOT/build-lb-rel}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
PRIORITY=${PRIORITY:--19}
HAPROXY_PORT=${HAPROXY_PORT:-28081}
SKIFF_PORT=${SKIFF_PORT:-28082}
IMAGE=${IMAGE:-skiff-bench/nginx:big1}
LB_THREADS=${LB_THREADS:-$(getconf _NPROCESSORS_ONLN)}
BACKEND_PORT=${BACKEND_PORT:-28091}
LABEL=skiff.bench=lb-$$
WORK=$(mktemp -d /tmp/skiff-lb-bench.XXXXXX)
HZ=$(getconf CLK_TCK)
PIDS=()

log() { printf '%s\n' "$*" >&2; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Tools: wrk, haproxy, nginx (its binary goes into the backend image), docker.
need() { # COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }
}
need wrk wrk
need haproxy haproxy
[ -x /usr/sbin/nginx ] || need /usr/sbin/nginx nginx-light
need docker docker.io
docker info >/dev/null 2>&1 || { log "docker engine not reachable (start dockerd)"; exit 1; }

# Containers of earlier runs that could not clean up (the engine was away).
docker ps -a --filter label=skiff.bench --format '{{.ID}} {{.Label "skiff.bench"}}' |
    while read -r id run; do
        case $run in
        lb-*) kill -0 "${run#lb-}" 2>/dev/null || docker rm -f "$id" >/dev/null 2>&1 || true ;;
        esac
    done

# skiff-lb-bench, built (incrementally) in its own build directory; an
# earlier binary is reused when the tree does not build right now.
LB_BIN=$BUILD/bin/skiff-lb-bench
if ! { [ -f "$BUILD/CMakeCache.txt" ] ||
       cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSKIFF_E2E=OFF; } \
       >"$WORK/build.log" 2>&1 ||
   ! cmake --build "$BUILD" --target skiff-lb-bench -j2 >>"$WORK/build.log" 2>&1; then
    if [ -x "$LB_BIN" ]; then
        log "build failed (see below); reusing $LB_BIN"
        tail -5 "$WORK/build.log" >&2
    else
        cat "$WORK/build.log" >&2
        exit 1
    fi
fi

# nginx's configuration, listening on $1 (a port, or ADDRESS:PORT).
nginx_conf() {
    cat <<EOF
user nobody nogroup;
worker_processes 1;
daemon off;
error_log /dev/stderr warn;
pid /run/nginx.pid;
events { worker_connections 8192; }
http {
    include mime.types;
    access_log off;
    keepalive_requests 10000000;
    server {
        listen $1 backlog=4096;
        location / { return 200 "hello from nginx\n"; }
        location = /big { root /www; }
    }
}
EOF
}

# The backend image: the host's nginx, its libraries, a minimal config. No
# registry is reachable, so it is imported from a root file system.
build_image() {
    local rootfs=$WORK/rootfs lib
    mkdir -p "$rootfs"/{etc/nginx,usr/sbin,var/lib/nginx,var/log/nginx,tmp,run,www}
    head -c 1048576 /dev/zero >"$rootfs/www/big"
    cp /usr/sbin/nginx "$rootfs/usr/sbin/"
    for lib in $(ldd /usr/sbin/nginx | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        cp -L --parents "$lib" "$rootfs"
    done
    cp /etc/nginx/mime.types "$rootfs/etc/nginx/"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
    echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >>"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    nginx_conf 80 >"$rootfs/etc/nginx/nginx.conf"
    tar -C "$rootfs" -c . | docker import \
        --change 'CMD ["/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf"]' - "$IMAGE" >/dev/null
}
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "building $IMAGE from the host's nginx"
    build_image
fi

# Three backends, published on 127.0.0.1 at ports the engine picks (or on
# the host's network).
BACKENDS=()
for i in 0 1 2; do
    if [ "$BACKEND_NET" = host ]; then
        addr=127.0.0.1:$((BACKEND_PORT + i))
        nginx_conf "$addr" >"$WORK/nginx-$i.conf"
        docker run -d --label "$LABEL" --network host \
            -v "$WORK/nginx-$i.conf:/etc/nginx/nginx.conf:ro" "$IMAGE" >/dev/null
        BACKENDS+=("$addr")
    else
        id=$(docker run -d --label "$LABEL" -p 127.0.0.1::80 "$IMAGE")
        BACKENDS+=("$(docker port "$id" 80/tcp | head -1)")
    fi
done
for b in "${BACKENDS[@]}"; do
    for _ in $(seq 100); do
        curl -sf "http://$b/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sf "http://$b/" >/dev/null || { log "backend $b does not answer"; exit 1; }
done
log "backends: ${BACKENDS[*]}"

cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 9000${HAPROXY_GLOBAL:+
    $HAPROXY_GLOBAL}
defaults
    mode tcp
    timeout connect 2s
    timeout client 5m
    timeout server 5m
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend be
backend be
    balance roundrobin
EOF
n=0
for b in "${BACKENDS[@]}"; do
    n=$((n + 1))
    echo "    server s$n $b" >>"$WORK/haproxy.cfg"
done
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
"$LB_BIN" --threads "$LB_THREADS" "127.0.0.1:$SKIFF_PORT" "${BACKENDS[@]}" >"$WORK/skiff.log" 2>&1 &
SKIFF_PID=$!
PIDS+=("$SKIFF_PID")
for port in "$HAPROXY_PORT" "$SKIFF_PORT"; do
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$port/" >/dev/null ||
        { log "balancer on port $port does not answer"; cat "$WORK"/*.log >&2; exit 1; }
done

# Priorities: the balancers, the backends' processes and their docker-proxy.
if [ "$PRIORITY" != 0 ]; then
    prio_pids=("$HAPROXY_PID" "$SKIFF_PID")
    for id in $(docker ps -q --filter "label=$LABEL"); do
        pid=$(docker inspect -f '{{.State.Pid}}' "$id")
        prio_pids+=("$pid" $(pgrep -P "$pid" || true))
    done
    for b in "${BACKENDS[@]}"; do
        prio_pids+=($(pgrep -f "docker-proxy .*-host-port ${b##*:} " || true))
    done
    if renice -n "$PRIORITY" -p "${prio_pids[@]}" >/dev/null 2>&1; then
        log "nice $PRIORITY: wrk and ${#prio_pids[@]} processes (balancers, nginx, docker-proxy)"
    else
        log "renice failed; priorities left alone"
    fi
fi
NICE=(nice -n "$PRIORITY")

# CPU time of a process, in clock ticks (fields 14 and 15 after the comm).
cpu_ticks() {
    [ "$1" = - ] && { echo 0; return; }
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# wrk's latency to microseconds: 512.00us, 1.23ms, 1.01s.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1000000;
        sub(/[a-z]+$/, "", v); printf "%.0f", v * m }'
}

# run MODE TARGET URL PID ROUND: one wrk run; appends a line to results.
run() {
    local mode=$1 target=$2 url=$3 pid=$4 round=$5 hdr=() out c0 c1 reqs rps avg p50 p99 errs cpu
    [ "$mode" = close ] && hdr=(-H 'Connection: close')
    c0=$(cpu_ticks "$pid")
    out=$("${NICE[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "$url") || {
        log "wrk failed against $target ($url): did the engine restart and take the backends?"
        exit 1
    }
    c1=$(cpu_ticks "$pid")
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    avg=$(to_us "$(awk '$1 == "Latency" && $2 != "Distribution" { print $2 }' <<<"$out")")
    errs=$(awk '/Socket errors/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 } /Non-2xx/ { e += $5 } END { print e + 0 }' <<<"$out")
    if [ "$pid" = - ]; then
        cpu=-
    else
        cpu=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v r="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / r }')
    fi
    echo "$mode $target $round $rps $p50 $p99 $cpu $errs $avg" >>"$WORK/results"
    log "round $round $mode $target: $rps req/s, avg ${avg}us, p50 ${p50}us, p99 ${p99}us, cpu/req ${cpu}us, errors $errs"
}

# Warm up every path once.
for url in "http://${BACKENDS[0]}/" "http://127.0.0.1:$HAPROXY_PORT/" "http://127.0.0.1:$SKIFF_PORT/"; do
    wrk -t1 -c10 -d1s "$url" >/dev/null
done

: >"$WORK/results"
for round in $(seq "$ROUNDS"); do
    for mode in keep-alive close 1mib; do
        path=/
        [ "$mode" = 1mib ] && path=/big
        run "$mode" direct "http://${BACKENDS[0]}$path" - "$round"
        if [ $((round % 2)) = 1 ]; then
            run "$mode" haproxy "http://127.0.0.1:$HAPROXY_PORT$path" "$HAPROXY_PID" "$round"
            run "$mode" skiff "http://127.0.0.1:$SKIFF_PORT$path" "$SKIFF_PID" "$round"
        else
            run "$mode" skiff "http://127.0.0.1:$SKIFF_PORT$path" "$SKIFF_PID" "$round"
            run "$mode" haproxy "http://127.0.0.1:$HAPROXY_PORT$path" "$HAPROXY_PID" "$round"
        fi
    done
done

# The table: medians over the rounds, then the ratios skiff/HAProxy.
echo
echo "skiff load balancer benchmark: $(nproc) CPUs, skiff --threads $LB_THREADS, HAProxy at its default threads, wrk -t$THREADS -c$CONNS -d$DURATION, 3 nginx backends ($BACKEND_NET), median of $ROUNDS rounds"
echo "(1mib: req/s is MiB/s, CPU/req is CPU per MiB)"
awk '
function median_of(list,    n, i, j, t, a) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n ? a[int((n + 1) / 2)] : "-"
}
function median(key, col) { return median_of(vals[key, col]) }
{
    key = $1 " " $2
    if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
    for (c = 4; c <= 9; c++) { vals[key, c] = vals[key, c] " " $c; cell[key, $3, c] = $c }
    rounds[$3] = 1
}
END {
    printf "%-11s %-8s %8s %10s %10s %10s %14s %7s\n", "mode", "target", "req/s", "avg (us)", "p50 (us)", "p99 (us)", "CPU/req (us)", "errors"
    for (k = 1; k <= nk; k++) {
        key = order[k]; split(key, kk, " ")
        for (c = 4; c <= 9; c++) med[key, c] = median(key, c)
        printf "%-11s %-8s %8s %10s %10s %10s %14s %7s\n", kk[1], kk[2], med[key, 4], med[key, 9], med[key, 5], med[key, 6], med[key, 7], med[key, 8]
    }
    print ""
    print "skiff / HAProxy, median of the rounds\047 ratios (targets: req/s >= 1.2, p99 <= 1.0, CPU/req <= 0.7):"
    split("keep-alive close 1mib", modes, " ")
    for (m = 1; m <= 3; m++) {
        s = modes[m] " skiff"; h = modes[m] " haproxy"
        if (!((s, 4) in med)) continue
        for (c = 4; c <= 7; c++) {
            list = ""
            for (r in rounds) if (cell[h, r, c] + 0 > 0) list = list " " cell[s, r, c] / cell[h, r, c]
            ratio[c] = median_of(list)
        }
        printf "  %-11s req/s %.2f %s  p99 %.2f %s  CPU/req %.2f %s\n", modes[m], ratio[4], (ratio[4] >= 1.2 ? "(ok)  " : "(miss)"), ratio[6], (ratio[6] <= 1.0 ? "(ok)  " : "(miss)"), ratio[7], (ratio[7] <= 0.7 ? "(ok)" : "(miss)")
    }
}' "$WORK/results"
