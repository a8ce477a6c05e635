#!/usr/bin/env bash
# tests/bench/scaleout/run.sh: scale-out on the real engine, against the
# engine itself.
#
#   tests/bench/scaleout/run.sh [COUNT]      (as root, with dockerd running)
#
# Builds the binaries in Release (BUILD, default <repo>/build-bench), builds
# the test images, starts a controller and three agents (one engine, as the
# e2e tests do), and times, in the same run, TRIALS (3) times each:
#
#   skiff       `skiff service scale` of a service of skiff-test/web:v1 from
#               0 to COUNT (50) replicas on the 3 nodes, until the engine
#               runs all COUNT containers (polled with docker ps every 50 ms);
#               then back to 0, and the containers gone, before the next;
#   sequential  COUNT `docker run -d` of the same image, one after another;
#   parallel    the same COUNT `docker run -d`, 8 at a time (xargs -P 8);
#
# each ending when COUNT containers run, each cleaned up before the next.
# The engine is the floor: skiff's target is at most 1.0x the parallel
# figure (medians). It prints each figure and the ratios; nothing fails on a
# timing. It cleans up after itself.
#
# Environment: BUILD, COUNT (or the first argument), TRIALS (3).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
COUNT=${1:-${COUNT:-50}}
TRIALS=${TRIALS:-3}
IMAGE=skiff-test/web:v1
LABEL=skiff.bench=scaleout-$$

log() { printf '%s\n' "$*" >&2; }
die() { log "scaleout: $*"; exit 1; }

command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "the docker engine does not answer (start dockerd)"
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die "COUNT: a positive number, not '$COUNT'"

log "building $BUILD (Release)"
if [ ! -e "$BUILD/CMakeCache.txt" ]; then
	cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSKIFF_E2E=OFF >/dev/null
fi
cmake --build "$BUILD" -j2 --target skiff skiff-controller skiff-agent >/dev/null
"$ROOT/tests/images/build.sh" >/dev/null || die "building the test images failed"

export SKIFF_BIN=$BUILD/bin
# shellcheck source=../../e2e/helpers.bash
source "$ROOT/tests/e2e/helpers.bash"
set +e
set -uo pipefail

WORK=$(mktemp -d /tmp/skiff-scaleout.XXXXXX)
BATS_TEST_TMPDIR=$WORK BATS_RUN_TMPDIR=$WORK
export BATS_TEST_TMPDIR BATS_RUN_TMPDIR
cleanup() {
	docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null 2>&1 || true
	cluster_stop >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { _skiff_now_ms; }

# wait_count FILTER N: until N containers matching the label FILTER run.
wait_count() {
	while [ "$(docker ps -q --filter "label=$1" --filter status=running | wc -l)" -lt "$2" ]; do
		sleep 0.05
	done
}

wait_none() {
	while [ -n "$(docker ps -aq --filter "label=$1")" ]; do
		sleep 0.1
	done
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

cluster_start 3 >/dev/null || die "the cluster did not start"
skiff service create -d --name so-web --replicas 0 "$IMAGE" >/dev/null || die "service create"

skiff_ms=() seq_ms=() par_ms=()
for ((trial = 1; trial <= TRIALS; trial++)); do
	t0=$(now_ms)
	skiff service scale -d so-web="$COUNT" >/dev/null || die "scale"
	wait_count "skiff.service=so-web" "$COUNT"
	skiff_ms+=($(($(now_ms) - t0)))
	skiff service scale -d so-web=0 >/dev/null
	wait_none "skiff.service=so-web"

	t0=$(now_ms)
	for ((i = 0; i < COUNT; i++)); do
		docker run -d --label "$LABEL" "$IMAGE" >/dev/null || die "docker run"
	done
	wait_count "$LABEL" "$COUNT"
	seq_ms+=($(($(now_ms) - t0)))
	docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null

	t0=$(now_ms)
	seq "$COUNT" | xargs -P 8 -I{} docker run -d --label "$LABEL" "$IMAGE" >/dev/null ||
		die "docker run"
	wait_count "$LABEL" "$COUNT"
	par_ms+=($(($(now_ms) - t0)))
	docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null
	log "trial $trial: skiff ${skiff_ms[-1]} ms, sequential ${seq_ms[-1]} ms, parallel ${par_ms[-1]} ms"
done

s=$(printf '%s\n' "${skiff_ms[@]}" | median)
q=$(printf '%s\n' "${seq_ms[@]}" | median)
p=$(printf '%s\n' "${par_ms[@]}" | median)
cat <<EOF

scale-out: 0 to $COUNT containers of $IMAGE running, $TRIALS trials, medians
($(nproc) cores, one engine, $(date -u +%Y-%m-%d))

| how                                     | time       | skiff's ratio | target |
|-----------------------------------------|------------|---------------|--------|
$(printf '| %-39s | %-10s | %-13s | %-6s |\n' \
	"skiff service scale, 3 nodes" "$s ms" "-" "-" \
	"docker run -d, one after another" "$q ms" "$(awk -v a="$s" -v b="$q" 'BEGIN { printf "%.2fx", a / b }')" "-" \
	"docker run -d, 8 at a time (xargs -P 8)" "$p ms" "$(awk -v a="$s" -v b="$p" 'BEGIN { printf "%.2fx", a / b }')" "<= 1.0x")
EOF
