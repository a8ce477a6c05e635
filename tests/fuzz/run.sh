#!/bin/bash
# Runs skiff's libFuzzer targets for a given time each:
#
#   tests/fuzz/run.sh SECONDS [TARGET...]     (default: every target)
#   tests/fuzz/run.sh 600 fuzz_frame fuzz_spec
#
# Builds them first when needed (clang, -DSKIFF_FUZZ=ON, into build-fuzz/;
# installs clang and libclang-rt-14-dev with apt-get when they are missing
# and this runs as root, or says why it skips). Each target starts from a
# scratch copy of its seed corpus (tests/fuzz/corpus/<target>/, made by
# make_corpus.sh) and of the inputs of the bugs it found
# (tests/fuzz/regress/<target>/, replayed first on every run), so runs never
# grow the committed corpus, with its dictionary (tests/fuzz/dict/) when it
# has one. Prints the executions of every target; exits 1 when one
# found a crash, a leak, a hang or a sanitizer report, keeping the input
# under tests/fuzz/artifacts/<target>/ (git-ignored) and printing how to
# run it again.
#
# Environment: SKIFF_FUZZ_BUILD_DIR (default build-fuzz), SKIFF_FUZZ_JOBS
# (targets run at once; default: the number of CPUs), SKIFF_FUZZ_KEEP=1
# (keep the scratch corpora, printing where), SKIFF_FUZZ_ARGS (more
# libFuzzer flags).
set -uo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BUILD=${SKIFF_FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${SKIFF_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
ALL=(fuzz_frame fuzz_controller fuzz_compose fuzz_spec fuzz_duration fuzz_engine_json fuzz_flags
	fuzz_pki)

usage() {
	echo "usage: tests/fuzz/run.sh SECONDS [TARGET...]   targets: ${ALL[*]}" >&2
	exit 2
}
[ $# -ge 1 ] && [[ "$1" =~ ^[1-9][0-9]*$ ]] || usage
SECONDS_EACH=$1
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
	[[ " ${ALL[*]} " == *" $t "* ]] || { echo "run.sh: unknown target $t" >&2; usage; }
done

# ------------------------------------------------------------ the compiler
# libFuzzer comes with clang's runtime libraries (libclang-rt-14-dev on
# Debian 12); the check compiles and links a tiny fuzzer.
have_libfuzzer() {
	command -v clang >/dev/null || return 1
	local d
	d=$(mktemp -d) || return 1
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
		>"$d/t.c"
	clang -fsanitize=fuzzer,address,undefined "$d/t.c" -o "$d/t" >/dev/null 2>&1
	local rc=$?
	rm -rf "$d"
	return $rc
}

if ! have_libfuzzer; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "fuzz: installing clang and libclang-rt-14-dev (libFuzzer)"
		export DEBIAN_FRONTEND=noninteractive
		{ apt-get install -y -q --no-install-recommends clang libclang-rt-14-dev ||
			{ apt-get update -q && apt-get install -y -q --no-install-recommends clang \
				libclang-rt-14-dev; }; } >/dev/null 2>&1
	fi
	if ! have_libfuzzer; then
		echo "fuzz: SKIPPED: clang with libFuzzer is not available" \
			"(apt-get install clang libclang-rt-14-dev, as root)"
		exit 0
	fi
fi

# ------------------------------------------------------------ the build
if [ ! -e "$BUILD/CMakeCache.txt" ] || ! grep -q '^SKIFF_FUZZ:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	echo "fuzz: configuring $BUILD (clang, SKIFF_FUZZ=ON)"
	CC=clang cmake -S . -B "$BUILD" -DSKIFF_FUZZ=ON -DSKIFF_E2E=OFF \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD.configure.log" 2>&1 || {
		cat "$BUILD.configure.log" >&2
		echo "run.sh: cmake failed for the fuzz build" >&2
		exit 1
	}
	rm -f "$BUILD.configure.log"
else
	# A target added since the last configure is only known after this.
	cmake -S . -B "$BUILD" >/dev/null 2>&1 || true
fi
echo "fuzz: building ${TARGETS[*]}"
if ! cmake --build "$BUILD" -j"$(nproc 2>/dev/null || echo 2)" --target "${TARGETS[@]}" \
	>"$BUILD/fuzz-build.log" 2>&1; then
	tail -n 40 "$BUILD/fuzz-build.log" >&2
	echo "run.sh: building the fuzz targets failed" >&2
	exit 1
fi

# ------------------------------------------------------------ the runs
SCRATCH=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo /tmp)/skiff-fuzz.XXXXXX")
cleanup() {
	if [ "${SKIFF_FUZZ_KEEP:-0}" = 1 ]; then
		echo "fuzz: scratch corpora kept in $SCRATCH"
	else
		rm -rf "$SCRATCH"
	fi
}
trap cleanup EXIT
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM

# The sanitizers stop at the first report, so that libFuzzer keeps the input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64:max_malloc_fill_size=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export SKIFF_FUZZ_TMP=$SCRATCH   # fuzz_controller's data dirs

max_len() {
	case $1 in
	fuzz_frame) echo 65536 ;;
	fuzz_duration) echo 64 ;;
	fuzz_flags) echo 2048 ;;
	fuzz_spec) echo 8192 ;;
	*) echo 16384 ;;
	esac
}

# run_one TARGET: runs it; its log is $SCRATCH/TARGET.log, its status
# $SCRATCH/TARGET.rc.
run_one() {
	local t=$1 corpus=$SCRATCH/$t/corpus art=$ROOT/tests/fuzz/artifacts/$t/ dict=()
	mkdir -p "$corpus" "$art" "$SCRATCH/$t/tmp"
	[ -d "tests/fuzz/corpus/$t" ] && cp -r "tests/fuzz/corpus/$t/." "$corpus/"
	[ -d "tests/fuzz/regress/$t" ] && cp -r "tests/fuzz/regress/$t/." "$corpus/"
	[ -e "tests/fuzz/dict/$t.dict" ] && dict=(-dict="$ROOT/tests/fuzz/dict/$t.dict")
	# shellcheck disable=SC2086 # SKIFF_FUZZ_ARGS is split on purpose
	( cd "$SCRATCH/$t/tmp" && SKIFF_FUZZ_TMP="$SCRATCH/$t/tmp" \
		"$ROOT/$BUILD/fuzz/$t" "$corpus" "${dict[@]}" -max_total_time="$SECONDS_EACH" \
		-max_len="$(max_len "$t")" -timeout=60 -rss_limit_mb=3072 -print_final_stats=1 \
		-artifact_prefix="$art" ${SKIFF_FUZZ_ARGS:-} ) >"$SCRATCH/$t.log" 2>&1
	echo $? >"$SCRATCH/$t.rc"
}

echo "fuzz: ${#TARGETS[@]} target(s), ${SECONDS_EACH}s each, $JOBS at a time"
running=0
for t in "${TARGETS[@]}"; do
	if [ "$running" -ge "$JOBS" ]; then
		wait -n
		running=$((running - 1))
	fi
	run_one "$t" &
	running=$((running + 1))
done
wait

status=0
printf '%-18s %12s %10s %8s  %s\n' TARGET EXECUTIONS EXEC/S CORPUS RESULT
for t in "${TARGETS[@]}"; do
	log=$SCRATCH/$t.log
	rc=$(cat "$SCRATCH/$t.rc" 2>/dev/null || echo 1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	[ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
	files=$(find "$SCRATCH/$t/corpus" -type f | wc -l)
	if [ "$rc" = 0 ]; then
		result=clean
	else
		result="FAILED (exit $rc)"
		status=1
	fi
	printf '%-18s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$files" "$result"
done
for t in "${TARGETS[@]}"; do
	rc=$(cat "$SCRATCH/$t.rc" 2>/dev/null || echo 1)
	[ "$rc" = 0 ] && continue
	echo
	echo "----- $t: the report (last 60 lines of its log) -----"
	grep -v -E '^#[0-9]+ *(NEW|REDUCE|pulse|RELOAD)' "$SCRATCH/$t.log" | tail -n 60
	input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$SCRATCH/$t.log" | tail -n1)
	if [ -n "$input" ]; then
		echo "input kept: $input"
		echo "again:      $BUILD/fuzz/$t $input"
	fi
done
exit $status
