#!/usr/bin/env bash
# tests/bench/autoscale/run.sh: how fast the autoscaler reacts to a load step.
#
#   tests/bench/autoscale/run.sh [TRIALS]      (as root, with dockerd running)
#
# Builds the binaries in Release (BUILD, default <repo>/build-bench, shared
# with the other benchmarks), builds the test images, and starts a
# controller and three agents as the e2e tests do (tests/e2e/helpers.bash,
# default settings: agents report every second). A service of
# skiff-test/web:v1 with --autoscale-min 1 --autoscale-max 4
# --autoscale-target-rps 50 (cooldown down 10 s, so that trials are short)
# and an HTTP health check sits behind the balancers. Then, TRIALS times
# (default 5): with the service at 1 replica and no load, a step to about
# LOAD (300) requests/s, a new connection each, through every node
# (skiff-loadgen); the time from the step to the first answer from a
# second replica (the web image answers with its host name), which is when
# a new replica serves traffic: the balancers' rate, the agents' report, the
# controller's decision, the scheduling, the container's start and its
# first health check all included. The load then stops and the service goes
# back to 1 replica before the next trial.
#
# It prints each trial and the median, against the target (10 s) and
# Kubernetes' HPA defaults (a 15 s sync period, plus metrics-server's
# resolution of 15 s and more; a new pod then has to start and be ready).
# Nothing fails on a timing. It cleans up after itself.
#
# Environment: BUILD, TRIALS (or the first argument), LOAD (300).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
TRIALS=${1:-${TRIALS:-5}}
LOAD=${LOAD:-300}
TARGET_MS=10000

log() { printf '%s\n' "$*" >&2; }
die() { log "autoscale: $*"; exit 1; }

for tool in cmake curl jq docker; do
	command -v "$tool" >/dev/null || die "$tool not found"
done
docker info >/dev/null 2>&1 || die "the docker engine does not answer (start dockerd)"
[[ "$TRIALS" =~ ^[1-9][0-9]*$ ]] || die "TRIALS: a positive number, not '$TRIALS'"

log "building $BUILD (Release)"
if [ ! -e "$BUILD/CMakeCache.txt" ]; then
	cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSKIFF_E2E=OFF >/dev/null
fi
cmake --build "$BUILD" -j2 --target skiff skiff-controller skiff-agent skiff-loadgen >/dev/null

export SKIFF_BIN=$BUILD/bin
# shellcheck source=../../e2e/helpers.bash
source "$ROOT/tests/e2e/helpers.bash"
set +e # helpers.bash is written for bats; errors are checked here by hand
set -uo pipefail

WORK=$(mktemp -d /tmp/skiff-autoscale.XXXXXX)
BATS_TEST_TMPDIR=$WORK BATS_RUN_TMPDIR=$WORK
export BATS_TEST_TMPDIR BATS_RUN_TMPDIR
cleanup() {
	loadgen_stop >/dev/null 2>&1 || true
	cluster_stop >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$ROOT/tests/images/build.sh" >/dev/null || die "building the test images failed"
cluster_start 3 >/dev/null || die "the cluster did not start"
PORT=$(free_port)
skiff service create --name bench-as --replicas 1 -p "$PORT:8080" --health-http / \
	--health-interval 500ms --autoscale-min 1 --autoscale-max 4 --autoscale-target-rps 50 \
	--autoscale-cooldown-down 10s skiff-test/web:v1 >/dev/null || die "service create"
wait_until 30 http_get "http://127.0.0.2:$PORT/" >/dev/null || die "the service does not answer"

running() {
	skiff service ps --format json bench-as |
		jq '[.[] | select(.desired_state == "running" and .state == "running")] | length'
}

# The interval between requests of each of 4 workers for about LOAD/s.
interval_ms=$((4000 / LOAD))
[ "$interval_ms" -ge 1 ] || interval_ms=1

results=()
for ((trial = 1; trial <= TRIALS; trial++)); do
	wait_until 120 '[ "$(running)" -eq 1 ] && [ "$(count_running bench-as)" -eq 1 ]' >/dev/null ||
		die "the service did not go back to 1 replica"
	sleep 12 # past the cooldown of the last scale-down: a clean step
	first=$(http_get "http://127.0.0.2:$PORT/" | cut -d' ' -f2)
	t0=$(_skiff_now_ms)
	loadgen_start --url "http://127.0.0.2:$PORT/" --url "http://127.0.0.3:$PORT/" \
		--url "http://127.0.0.4:$PORT/" --concurrency 4 --interval "${interval_ms}ms"
	took=
	while [ $(($(_skiff_now_ms) - t0)) -lt 60000 ]; do
		host=$(http_get "http://127.0.0.$((RANDOM % 3 + 2)):$PORT/" 2>/dev/null | cut -d' ' -f2)
		if [ -n "$host" ] && [ "$host" != "$first" ]; then
			took=$(($(_skiff_now_ms) - t0))
			break
		fi
		sleep 0.05
	done
	summary=$(loadgen_stop)
	rps=$(jq -r '(.requests / (.duration_ms / 1000)) | floor' <<<"$summary")
	fails=$(jq -r .failures <<<"$summary")
	decision=$(skiff service inspect bench-as | jq -r '.[0].autoscale_status.reason')
	log "trial $trial: ${took:-none within 60} ms to a second replica serving; load $rps req/s, $fails failed; decision: $decision"
	[ -n "$took" ] && results+=("$took")
done

[ "${#results[@]}" -gt 0 ] || die "no trial saw a second replica"
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }')
max=$(printf '%s\n' "${results[@]}" | sort -n | tail -n1)
cat <<EOF

skiff autoscaler reaction: load step (0 to about $LOAD req/s, target 50 req/s per replica)
to the first new replica serving traffic, $TRIALS trials ($(nproc) cores, $(date -u +%Y-%m-%d))

| figure                                           | skiff      | target   | HPA defaults                 |
|--------------------------------------------------|------------|----------|------------------------------|
$(printf '| %-48s | %-10s | %-8s | %-28s |\n' \
	"step to a new replica serving (median)" "$median ms" "<= 10 s" "15 s loop + 15-60 s metrics" \
	"step to a new replica serving (max)" "$max ms" "-" "+ pod start and readiness")
EOF
