#!/bin/bash
# The one test command: on a fresh Debian 12 machine (as root) it installs
# what is missing, starts dockerd if none answers, builds skiff with the
# sanitizers into build-test/, builds the test images, and runs ctest (unit
# tests and e2e tests against the real engine). Exits with ctest's status.
#
#   tests/run.sh                  everything (then a short fuzz run, if any)
#   tests/run.sh -L unit          extra arguments go to ctest
#   tests/run.sh -R e2e/images
#
# Environment: SKIFF_BUILD_DIR (default build-test), SKIFF_SKIP_FUZZ=1,
# SKIFF_FUZZ_SECONDS (default 10), JOBS (default: number of CPUs).
# CI runs it through .ci/run.

set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${SKIFF_BUILD_DIR:-build-test}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
START=$(date +%s)

section() {
	printf '\n==== %s  [%s, +%ss]\n' "$*" "$(date +%H:%M:%S)" "$(($(date +%s) - START))"
}
die() {
	echo "run.sh: error: $*" >&2
	exit 1
}

PACKAGES=(
	cmake gcc clang pkg-config
	libuv1-dev libprotobuf-c-dev protobuf-c-compiler libcurl4-openssl-dev
	libsqlite3-dev libjansson-dev libyaml-dev libcmocka-dev uthash-dev
	libh2o-dev libssl-dev
	bats jq docker.io busybox-static docker-registry etcd-server etcd-client
	iproute2 procps psmisc curl openssl prometheus tcpdump
	libjs-chart.js chromium nodejs python3
)

# ---------------------------------------------------------------------------
section "packages"
missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "all ${#PACKAGES[@]} packages installed"
else
	echo "missing: ${missing[*]}"
	[ "$(id -u)" = 0 ] || die "not root: install them with: sudo apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install failed"
fi

# npm (Debian's, unless nodejs brought its own) and puppeteer-core for the
# dashboard's browser test, into the build dir (never committed).
if ! command -v npm >/dev/null 2>&1; then
	[ "$(id -u)" = 0 ] || die "not root: install npm with: sudo apt-get install npm"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm ||
		die "apt-get install npm failed"
fi
if [ ! -d "$BUILD/e2e-npm/node_modules/puppeteer-core" ]; then
	mkdir -p "$BUILD/e2e-npm"
	cp tests/e2e/dashboard/package.json "$BUILD/e2e-npm/"
	(cd "$BUILD/e2e-npm" && npm install --no-audit --no-fund) || die "npm install puppeteer-core failed"
fi

# ---------------------------------------------------------------------------
section "docker engine"
if docker info >/dev/null 2>&1; then
	echo "dockerd answers"
else
	[ "$(id -u)" = 0 ] || die "docker does not answer and only root can start dockerd here"
	log=/var/log/skiff-test-dockerd.log
	echo "starting dockerd (log: $log)"
	nohup dockerd </dev/null >"$log" 2>&1 &
	for ((i = 0; i < 120; i++)); do
		docker info >/dev/null 2>&1 && break
		if ! kill -0 $! 2>/dev/null; then
			tail -n 30 "$log" >&2
			die "dockerd exited; see $log"
		fi
		sleep 0.5
	done
	if ! docker info >/dev/null 2>&1; then
		tail -n 30 "$log" >&2
		die "dockerd did not answer within 60s; see $log"
	fi
	echo "dockerd answers"
fi
docker version --format 'engine {{.Server.Version}}, api {{.Server.APIVersion}}' || true

# ---------------------------------------------------------------------------
section "build ($BUILD, sanitizers on)"
cmake -S . -B "$BUILD" -DSKIFF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug || die "cmake configure failed"
cmake --build "$BUILD" -j"$JOBS" || die "build failed"

# ---------------------------------------------------------------------------
section "test images"
tests/images/build.sh || die "building the test images failed"

# ---------------------------------------------------------------------------
section "ctest $*"
set +e
ctest --test-dir "$BUILD" --output-on-failure --no-tests=error "$@"
status=$?
set -e

# ---------------------------------------------------------------------------
# A short fuzz run, on a full run only (not when ctest arguments pick tests).
if [ $# -eq 0 ] && [ "${SKIFF_SKIP_FUZZ:-0}" != 1 ] && [ -x tests/fuzz/run.sh ]; then
	section "fuzz (${SKIFF_FUZZ_SECONDS:-10}s per target)"
	if ! tests/fuzz/run.sh "${SKIFF_FUZZ_SECONDS:-10}"; then
		echo "run.sh: fuzzing found a problem" >&2
		[ "$status" -ne 0 ] || status=1
	fi
fi

section "done: $([ "$status" -eq 0 ] && echo PASS || echo "FAIL (status $status)")"
exit "$status"
