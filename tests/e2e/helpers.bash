# Helpers for skiff's e2e tests (bats), against the real engine.
#
#   load helpers
#   setup()    { cluster_start 3; }          # or once per file in setup_file
#   teardown() { skiff_teardown; }           # logs on failure, then cluster_stop
#
# A cluster is one skiff-controller on 127.0.0.1:<free port> and N agents,
# agent i named ${SKIFF_PREFIX}-n<i> and advertising 127.0.0.<i+1>, all of them
# logging into their own file under $SKIFF_TEST_DIR. Every connection is TLS:
# agent i joins with the join token the first time and keeps its node
# certificate in its own state dir, $SKIFF_TEST_DIR/agent-<i>.state, which
# stays across its restarts within the cluster (agent_state_dir <i>). Every cluster gets a fresh
# data directory (so a fresh cluster id) and a random name prefix, so that
# test files run one after another, or leftovers of a failed one, never mix.
# Plain `skiff ...` commands talk to it: $SKIFF_BIN is first on PATH and
# SKIFF_HOST / SKIFF_TOKEN_FILE are exported.
#
# State that a test may read (exported, so a cluster made in setup_file is
# seen by its tests):
#   SKIFF_BIN            the binaries (default <repo>/build/bin)
#   SKIFF_TEST_DIR       this cluster's directory: *.log, pids/, data/, agent-<i>.state/
#   SKIFF_DATA_DIR       the controller's --data-dir ($SKIFF_TEST_DIR/data)
#   SKIFF_HOST           127.0.0.1:<controller port>
#   SKIFF_CONTROLLER_PORT, SKIFF_TOKEN_FILE (admin token), SKIFF_JOIN_TOKEN_FILE
#   CLUSTER_ID           the controller's cluster id (containers' skiff.cluster)
#   SKIFF_PREFIX         random prefix of the node names
#   SKIFF_AGENTS         number of agents started by cluster_start
#   NODES                "name1 name2 ..."; NODE_<i>, AGENT_ADDR_<i>, AGENT_PID_<i>
#   CONTROLLER_PID
# PIDs are also kept in files ($SKIFF_TEST_DIR/pids/), which stay right when a
# helper runs in a subshell (`run agent_kill 1`): prefer controller_pid and
# agent_pid <i>, node_name <i>, agent_addr <i>.
#
# Settings (environment): SKIFF_AGENT_FLAGS (extra flags for every agent,
# split on spaces; @ADDR@ in them becomes the agent's address), SKIFF_AGENT_TOKEN=none
# (agent_start gives no --join-token-file: an agent that has its certificate
# needs none), SKIFF_START_TIMEOUT (seconds, default 30),
# SKIFF_WAIT_NODES=0 (cluster_start does not wait for the nodes to be ready),
# SKIFF_LOG_LINES (lines per log in dump_logs, default 80),
# SKIFF_IGNORE_SANITIZER=1 (cluster_stop does not fail on sanitizer reports).

SKIFF_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export SKIFF_REPO
: "${SKIFF_BIN:=$SKIFF_REPO/build/bin}"
export SKIFF_BIN
case ":$PATH:" in
*":$SKIFF_BIN:"*) ;;
*) PATH="$SKIFF_BIN:$PATH" ;;
esac
export PATH
# The daemons may be built with the sanitizers: leaks at exit are not errors
# of a test, and UBSan should say where.
: "${ASAN_OPTIONS:=detect_leaks=0}"
: "${UBSAN_OPTIONS:=print_stacktrace=1}"
export ASAN_OPTIONS UBSAN_OPTIONS
unset SKIFF_TOKEN

# ---------------------------------------------------------------- small tools

_skiff_now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

# _skiff_workdir: where loadgen files and fallbacks go.
_skiff_workdir() {
	local d=${SKIFF_TEST_DIR:-${BATS_TEST_TMPDIR:-${BATS_FILE_TMPDIR:-/tmp/skiff-e2e.$$}}}
	mkdir -p "$d"
	echo "$d"
}

# _skiff_pid_alive PID: the process exists and is not a zombie.
_skiff_pid_alive() {
	local pid=$1 stat
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

# _skiff_pid_is PID NAME: the process is alive and runs the program NAME
# (so that a recycled pid is never signalled).
_skiff_pid_is() {
	local pid=$1 name=$2 cmd
	_skiff_pid_alive "$pid" || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ "$cmd" == *"$name"* ]]
}

# _skiff_wait_gone PID TIMEOUT_SECONDS
_skiff_wait_gone() {
	local pid=$1 deadline=$(($(_skiff_now_ms) + $2 * 1000))
	while _skiff_pid_alive "$pid"; do
		[ "$(_skiff_now_ms)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
	return 0
}

# _skiff_port_in_use PORT: some local socket (any state, any address) has it.
_skiff_port_in_use() {
	local port=$1 hex
	if command -v ss >/dev/null; then
		[ -n "$(ss -Hatun "( sport = :$port )" 2>/dev/null)" ]
		return
	fi
	hex=$(printf ':%04X' "$port")
	awk -v p="$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
		/proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null
}

# ---------------------------------------------------------------- ports

# free_port: prints a TCP port that nothing on this machine uses, in
# 20000-31999 (below the kernel's ephemeral range, where the engine and
# outgoing connections take theirs). Ports given out during a bats run are
# remembered, so two calls never return the same port.
free_port() {
	local given="${BATS_RUN_TMPDIR:-/tmp}/skiff-ports-given" port i
	for ((i = 0; i < 500; i++)); do
		port=$((20000 + ${SRANDOM:-$((RANDOM * 32768 + RANDOM))} % 12000))
		grep -qx "$port" "$given" 2>/dev/null && continue
		_skiff_port_in_use "$port" && continue
		echo "$port" >>"$given"
		echo "$port"
		return 0
	done
	echo "free_port: found no free port" >&2
	return 1
}

# free_ports N: prints N distinct free ports on one line.
free_ports() {
	local n=$1 i p ports=()
	for ((i = 0; i < n; i++)); do
		p=$(free_port) || return 1
		ports+=("$p")
	done
	echo "${ports[*]}"
}

# port_open ADDR PORT: something accepts TCP connections there.
port_open() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# wait_port ADDR PORT [TIMEOUT=10]
wait_port() {
	wait_until "${3:-10}" port_open "$1" "$2"
}

# ---------------------------------------------------------------- waiting

# wait_until TIMEOUT_SECONDS CMD [ARG...]
# wait_until TIMEOUT_SECONDS 'shell expression'
# Runs CMD (or evals the one string) every 0.2s until it succeeds; after
# TIMEOUT seconds (decimals allowed) fails, printing CMD's last output.
#   wait_until 20 '[ "$(count_running web)" -eq 3 ]'
#   wait_until 10 curl -fsS http://127.0.0.2:$port/
wait_until() {
	local timeout=$1 ms out
	shift
	ms=$(awk -v t="$timeout" 'BEGIN { printf "%d", t * 1000 }')
	local deadline=$(($(_skiff_now_ms) + ms))
	while :; do
		if [ $# -eq 1 ]; then
			out=$(eval "$1" 2>&1) && return 0
		else
			out=$("$@" 2>&1) && return 0
		fi
		if [ "$(_skiff_now_ms)" -ge "$deadline" ]; then
			echo "wait_until: timed out after ${timeout}s: $*" >&2
			[ -n "$out" ] && printf 'last output:\n%s\n' "$out" >&2
			return 1
		fi
		sleep 0.2
	done
}

# ---------------------------------------------------------------- images

# images_build: builds the test images if they are missing or stale (about a
# second when they exist; once per bats run).
images_build() {
	local mark="${BATS_RUN_TMPDIR:-/tmp}/skiff-images-built"
	[ -n "${BATS_RUN_TMPDIR:-}" ] && [ -e "$mark" ] && return 0
	"$SKIFF_REPO/tests/images/build.sh" --quiet || return 1
	[ -n "${BATS_RUN_TMPDIR:-}" ] && touch "$mark"
	return 0
}

# ---------------------------------------------------------------- cluster

# cluster_start [N_AGENTS=3] [extra controller flags...]
# Starts a controller and N agents, waits until the controller's files exist
# and its port listens, and (when the skiff CLI is built) until N nodes are
# ready. Fails, with the logs, if anything does not come up.
cluster_start() {
	local n=${1:-3}
	[ $# -gt 0 ] && shift
	local i port base

	if [ -n "${SKIFF_TEST_DIR:-}" ] && [ -e "${SKIFF_TEST_DIR}/pids/controller" ]; then
		echo "cluster_start: a cluster is already running in $SKIFF_TEST_DIR" >&2
		return 1
	fi
	for i in skiff-controller skiff-agent; do
		[ "$i" = skiff-agent ] && [ "$n" -eq 0 ] && continue
		if [ ! -x "$SKIFF_BIN/$i" ]; then
			echo "cluster_start: $SKIFF_BIN/$i not found (build first, or set SKIFF_BIN)" >&2
			return 1
		fi
	done
	images_build || return 1

	SKIFF_PREFIX=s$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	base=${BATS_TEST_TMPDIR:-${BATS_FILE_TMPDIR:-}}
	[ -n "$base" ] || base=$(mktemp -d /tmp/skiff-e2e.XXXXXX)
	SKIFF_TEST_DIR="$base/cluster-$SKIFF_PREFIX"
	SKIFF_DATA_DIR="$SKIFF_TEST_DIR/data"
	mkdir -p "$SKIFF_TEST_DIR/pids" "$SKIFF_DATA_DIR"
	port=$(free_port) || return 1
	SKIFF_CONTROLLER_PORT=$port
	SKIFF_HOST=127.0.0.1:$port
	SKIFF_TOKEN_FILE=$SKIFF_DATA_DIR/admin-token
	SKIFF_JOIN_TOKEN_FILE=$SKIFF_DATA_DIR/join-token
	SKIFF_AGENTS=$n
	CLUSTER_ID=
	NODES=
	export SKIFF_PREFIX SKIFF_TEST_DIR SKIFF_DATA_DIR SKIFF_CONTROLLER_PORT SKIFF_HOST \
		SKIFF_TOKEN_FILE SKIFF_JOIN_TOKEN_FILE SKIFF_AGENTS CLUSTER_ID NODES
	printf '%s\n' --listen "127.0.0.1:$port" --data-dir "$SKIFF_DATA_DIR" \
		--log-level debug "$@" >"$SKIFF_TEST_DIR/controller.args"

	if ! controller_start; then
		_skiff_start_failed
		return 1
	fi
	for ((i = 1; i <= n; i++)); do
		if ! agent_start "$i"; then
			_skiff_start_failed
			return 1
		fi
	done
	if [ "${SKIFF_WAIT_NODES:-1}" != 0 ] && [ -x "$SKIFF_BIN/skiff" ]; then
		if ! wait_nodes_ready "$n" "${SKIFF_START_TIMEOUT:-30}"; then
			echo "cluster_start: fewer than $n nodes ready; skiff node ls says:" >&2
			timeout 5 skiff node ls >&2 || true
			_skiff_start_failed
			return 1
		fi
	fi
	return 0
}

# The logs are printed once: here, not again by skiff_teardown.
_skiff_start_failed() {
	dump_logs
	SKIFF_LOGS_DUMPED=1
}

# controller_start: starts the controller with the flags cluster_start gave
# it (same port, same data dir) and waits until it is ready.
controller_start() {
	local args pid log="$SKIFF_TEST_DIR/controller.log"
	mapfile -t args <"$SKIFF_TEST_DIR/controller.args"
	if _skiff_pid_is "$(controller_pid)" skiff-controller; then
		echo "controller_start: the controller is running (pid $(controller_pid))" >&2
		return 1
	fi
	echo "=== $(date '+%H:%M:%S.%N' | cut -c1-12) skiff-controller ${args[*]}" >>"$log"
	"$SKIFF_BIN/skiff-controller" "${args[@]}" </dev/null >>"$log" 2>&1 3>&- 4>&- &
	pid=$!
	disown "$pid" 2>/dev/null || true   # no "Killed" job notices in test output
	echo "$pid" >"$SKIFF_TEST_DIR/pids/controller"
	export CONTROLLER_PID=$pid
	_skiff_wait_controller "$pid"
}

_skiff_wait_controller() {
	local pid=$1 f name
	local deadline=$(($(_skiff_now_ms) + ${SKIFF_START_TIMEOUT:-30} * 1000))
	while :; do
		if ! _skiff_pid_alive "$pid"; then
			echo "controller_start: skiff-controller (pid $pid) exited; see $SKIFF_TEST_DIR/controller.log" >&2
			return 1
		fi
		f=1
		for name in cluster-id join-token admin-token; do
			[ -s "$SKIFF_DATA_DIR/$name" ] || f=0
		done
		if [ "$f" = 1 ] && _skiff_listening 127.0.0.1 "$SKIFF_CONTROLLER_PORT"; then
			CLUSTER_ID=$(head -n1 "$SKIFF_DATA_DIR/cluster-id")
			export CLUSTER_ID
			return 0
		fi
		if [ "$(_skiff_now_ms)" -ge "$deadline" ]; then
			echo "controller_start: skiff-controller not ready after ${SKIFF_START_TIMEOUT:-30}s" \
				"(want cluster-id, join-token, admin-token in $SKIFF_DATA_DIR and port $SKIFF_CONTROLLER_PORT listening)" >&2
			return 1
		fi
		sleep 0.1
	done
}

# _skiff_listening ADDR PORT: a socket listens there (without connecting to
# it, which would put a stray connection in the daemon's log).
_skiff_listening() {
	if command -v ss >/dev/null; then
		[ -n "$(ss -Htln "( sport = :$2 )" 2>/dev/null)" ]
	else
		port_open "$1" "$2"
	fi
}

# controller_kill [SIGNAL=KILL]: signals the controller. For KILL, TERM, INT
# and QUIT waits until it is gone (10s); STOP and CONT return at once.
controller_kill() {
	local sig=${1:-KILL} pid
	pid=$(controller_pid)
	if ! _skiff_pid_is "$pid" skiff-controller; then
		echo "controller_kill: the controller is not running" >&2
		return 1
	fi
	_skiff_signal "$pid" "$sig" "$SKIFF_TEST_DIR/pids/controller"
}

# controller_restart: stops the controller (TERM, KILL after 5s) if it runs,
# and starts it again with the same flags and data directory.
controller_restart() {
	local pid
	pid=$(controller_pid)
	if _skiff_pid_is "$pid" skiff-controller; then
		_skiff_stop_pid "$pid"
	fi
	rm -f "$SKIFF_TEST_DIR/pids/controller"
	controller_start
}

controller_pid() {
	cat "$SKIFF_TEST_DIR/pids/controller" 2>/dev/null || true
}

node_name() { echo "$SKIFF_PREFIX-n$1"; }
agent_state_dir() { echo "$SKIFF_TEST_DIR/agent-$1.state"; }
agent_addr() { echo "127.0.0.$(($1 + 1))"; }
agent_pid() { cat "$SKIFF_TEST_DIR/pids/agent-$1" 2>/dev/null || true; }

# agent_start I [extra agent flags...]: starts agent I (any I >= 1, also
# beyond the first N) as node ${SKIFF_PREFIX}-nI advertising 127.0.0.(I+1),
# with its state dir (agent_state_dir I) unless the flags give another.
# Extra flags given once are kept for later restarts of the same agent.
agent_start() {
	local i=$1 pid name addr log extra=() flags=()
	shift
	name=$(node_name "$i")
	addr=$(agent_addr "$i")
	log="$SKIFF_TEST_DIR/agent-$i.log"
	if _skiff_pid_is "$(agent_pid "$i")" skiff-agent; then
		echo "agent_start: agent $i is running (pid $(agent_pid "$i"))" >&2
		return 1
	fi
	if [ $# -gt 0 ]; then
		printf '%s\n' "$@" >"$SKIFF_TEST_DIR/agent-$i.args"
	fi
	[ -e "$SKIFF_TEST_DIR/agent-$i.args" ] && mapfile -t extra <"$SKIFF_TEST_DIR/agent-$i.args"
	# shellcheck disable=SC2206 # split on purpose; @ADDR@ is this agent's address
	[ -n "${SKIFF_AGENT_FLAGS:-}" ] && flags=(${SKIFF_AGENT_FLAGS//@ADDR@/$addr})
	local state=(--state-dir "$(agent_state_dir "$i")") token=()
	[[ " ${extra[*]} ${flags[*]} " == *" --state-dir "* ]] && state=()
	[ "${SKIFF_AGENT_TOKEN:-file}" = none ] || token=(--join-token-file "$SKIFF_JOIN_TOKEN_FILE")
	local args=(--controller "127.0.0.1:$SKIFF_CONTROLLER_PORT" --name "$name"
		--advertise "$addr" "${token[@]}" "${state[@]}" "${flags[@]}" "${extra[@]}")
	echo "=== $(date '+%H:%M:%S.%N' | cut -c1-12) skiff-agent ${args[*]}" >>"$log"
	"$SKIFF_BIN/skiff-agent" "${args[@]}" </dev/null >>"$log" 2>&1 3>&- 4>&- &
	pid=$!
	disown "$pid" 2>/dev/null || true   # no "Killed" job notices in test output
	echo "$pid" >"$SKIFF_TEST_DIR/pids/agent-$i"
	grep -qx "$name" "$SKIFF_TEST_DIR/nodes" 2>/dev/null || echo "$name" >>"$SKIFF_TEST_DIR/nodes"
	NODES=$(tr '\n' ' ' <"$SKIFF_TEST_DIR/nodes")
	NODES=${NODES% }
	printf -v "NODE_$i" '%s' "$name"
	printf -v "AGENT_ADDR_$i" '%s' "$addr"
	printf -v "AGENT_PID_$i" '%s' "$pid"
	export NODES "NODE_$i" "AGENT_ADDR_$i" "AGENT_PID_$i"
	sleep 0.05
	if ! _skiff_pid_alive "$pid"; then
		echo "agent_start: skiff-agent $i exited at once; see $log" >&2
		return 1
	fi
	return 0
}

# agent_kill I [SIGNAL=KILL]: signals agent I. For KILL, TERM, INT and QUIT
# waits until it is gone (10s); STOP and CONT return at once.
agent_kill() {
	local i=$1 sig=${2:-KILL} pid
	pid=$(agent_pid "$i")
	if ! _skiff_pid_is "$pid" skiff-agent; then
		echo "agent_kill: agent $i is not running" >&2
		return 1
	fi
	_skiff_signal "$pid" "$sig" "$SKIFF_TEST_DIR/pids/agent-$i"
}

# agent_restart I: stops agent I (TERM, KILL after 5s) and starts it again.
agent_restart() {
	local i=$1 pid
	pid=$(agent_pid "$i")
	_skiff_pid_is "$pid" skiff-agent && _skiff_stop_pid "$pid"
	rm -f "$SKIFF_TEST_DIR/pids/agent-$i"
	agent_start "$i"
}

# _skiff_signal PID SIGNAL PIDFILE
_skiff_signal() {
	local pid=$1 sig=${2#SIG} pidfile=$3
	kill -s "$sig" "$pid" || return 1
	case $sig in
	KILL|TERM|INT|QUIT|9|15|2|3)
		# A stopped process acts on TERM only once continued.
		if [ "$sig" != KILL ] && [ "$sig" != 9 ]; then
			kill -s CONT "$pid" 2>/dev/null || true
		fi
		if ! _skiff_wait_gone "$pid" 10; then
			echo "signal $sig: pid $pid still alive after 10s" >&2
			return 1
		fi
		rm -f "$pidfile"
		;;
	esac
	return 0
}

# _skiff_stop_pid PID: TERM, then KILL after 5 seconds.
_skiff_stop_pid() {
	local pid=$1
	# Either may find the process gone already.
	kill -s TERM "$pid" 2>/dev/null || true
	kill -s CONT "$pid" 2>/dev/null || true
	if ! _skiff_wait_gone "$pid" 5; then
		echo "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)) ignored TERM for 5s; killing it" >&2
		kill -s KILL "$pid" 2>/dev/null || true
		_skiff_wait_gone "$pid" 5 || true
	fi
	return 0
}

# wait_nodes_ready N [TIMEOUT=30]: `skiff node ls` shows at least N ready
# nodes.
wait_nodes_ready() {
	local n=$1 timeout=${2:-30}
	wait_until "$timeout" "[ \"\$(nodes_ready)\" -ge $n ]"
}

# nodes_ready: how many nodes `skiff node ls --format json` shows as ready.
nodes_ready() {
	local json
	json=$(skiff node ls --format json) || return 1
	jq '[.[] | select([.. | strings | ascii_downcase] | index("ready"))] | length' <<<"$json"
}

# cluster_stop: stops every process this cluster's helpers started (TERM,
# KILL after 5s; any loadgen too), removes every container and volume with
# this cluster's label or one of its node names. Safe to call twice, and after
# a cluster_start that failed halfway. Fails (after cleaning up) if a daemon's
# log holds a sanitizer report.
cluster_stop() {
	local f pid name ids rc=0
	[ -n "${SKIFF_TEST_DIR:-}" ] && [ -d "$SKIFF_TEST_DIR" ] || return 0

	for f in "$SKIFF_TEST_DIR"/*.loadgen.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		_skiff_pid_is "$pid" skiff-loadgen && _skiff_stop_pid "$pid"
		rm -f "$f"
	done
	# Agents first, so that none restarts a container being removed. The
	# controllers: the one of cluster_start, and the others of an HA cluster
	# (pids/controller-<i>, ha_lib.bash).
	for f in "$SKIFF_TEST_DIR"/pids/agent-* "$SKIFF_TEST_DIR"/pids/controller*; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		case $f in
		*/controller*) name=skiff-controller ;;
		*) name=skiff-agent ;;
		esac
		if _skiff_pid_is "$pid" "$name"; then
			kill -s TERM "$pid" 2>/dev/null || true
			kill -s CONT "$pid" 2>/dev/null || true
		fi
	done
	for f in "$SKIFF_TEST_DIR"/pids/agent-* "$SKIFF_TEST_DIR"/pids/controller*; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		case $f in
		*/controller*) name=skiff-controller ;;
		*) name=skiff-agent ;;
		esac
		_skiff_pid_is "$pid" "$name" && _skiff_stop_pid "$pid"
		rm -f "$f"
	done

	if [ -z "${CLUSTER_ID:-}" ] && [ -s "${SKIFF_DATA_DIR:-/nonexistent}/cluster-id" ]; then
		CLUSTER_ID=$(head -n1 "$SKIFF_DATA_DIR/cluster-id")
	fi
	ids=()
	if [ -n "${CLUSTER_ID:-}" ]; then
		mapfile -t -O "${#ids[@]}" ids < <(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID")
	fi
	if [ -e "$SKIFF_TEST_DIR/nodes" ]; then
		while read -r name; do
			[ -n "$name" ] || continue
			mapfile -t -O "${#ids[@]}" ids < <(docker ps -aq --filter "label=skiff.node=$name")
		done <"$SKIFF_TEST_DIR/nodes"
	fi
	if [ "${#ids[@]}" -gt 0 ]; then
		mapfile -t ids < <(printf '%s\n' "${ids[@]}" | sort -u)
		docker rm -f -v "${ids[@]}" >/dev/null 2>&1 || true
	fi
	if [ -n "${CLUSTER_ID:-}" ]; then
		mapfile -t ids < <(docker volume ls -q --filter "label=skiff.cluster=$CLUSTER_ID")
		[ "${#ids[@]}" -gt 0 ] && { docker volume rm -f "${ids[@]}" >/dev/null 2>&1 || true; }
	fi
	# The agents' secrets tmpfs (<state-dir>/secrets) outlives them by
	# design; the containers that bound its files are gone now.
	while read -r f; do
		umount -l "$f" 2>/dev/null || true
	done < <(findmnt -rn -o TARGET 2>/dev/null | awk -v d="$SKIFF_TEST_DIR/" 'index($0, d) == 1')

	if [ "${SKIFF_IGNORE_SANITIZER:-0}" != 1 ] && [ ! -e "$SKIFF_TEST_DIR/.sanitizer-reported" ]; then
		for f in "$SKIFF_TEST_DIR"/*.log; do
			[ -e "$f" ] || continue
			if grep -qE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:' "$f"; then
				echo "cluster_stop: sanitizer report in $(basename "$f"):" >&2
				grep -E -A30 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:' "$f" | head -60 >&2
				touch "$SKIFF_TEST_DIR/.sanitizer-reported"
				rc=1
			fi
		done
	fi
	return $rc
}

# dump_logs: prints the tail of every log of the cluster, and the cluster's
# containers, for a failed test's output.
dump_logs() {
	local f lines=${SKIFF_LOG_LINES:-80}
	[ -n "${SKIFF_TEST_DIR:-}" ] && [ -d "$SKIFF_TEST_DIR" ] || return 0
	for f in "$SKIFF_TEST_DIR"/*.log; do
		[ -e "$f" ] || continue
		echo "----- $(basename "$f") (last $lines lines) -----"
		tail -n "$lines" "$f"
	done
	if [ -n "${CLUSTER_ID:-}" ]; then
		echo "----- containers of cluster $CLUSTER_ID -----"
		docker ps -a --filter "label=skiff.cluster=$CLUSTER_ID" \
			--format '{{.Names}}\t{{.Status}}\t{{.Label "skiff.node"}}\t{{.Ports}}' 2>&1 || true
	fi
	echo "----- end of logs -----"
}

# skiff_teardown: for teardown(). On a failed test prints the logs; stops
# the cluster if this test started it (a cluster from setup_file is left to
# skiff_teardown_file).
skiff_teardown() {
	if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -z "${SKIFF_LOGS_DUMPED:-}" ]; then
		dump_logs
		[ -n "${LOADGEN_LAST_OUT:-}" ] && [ -e "$LOADGEN_LAST_OUT" ] &&
			echo "loadgen summary: $(cat "$LOADGEN_LAST_OUT")"
	fi
	if [ -n "${SKIFF_TEST_DIR:-}" ] && [ -n "${BATS_TEST_TMPDIR:-}" ] &&
		[[ "$SKIFF_TEST_DIR" == "$BATS_TEST_TMPDIR"/* ]]; then
		cluster_stop
	fi
}

# skiff_teardown_file: for teardown_file() of a file whose cluster was made
# in setup_file.
skiff_teardown_file() {
	cluster_stop
}

# ---------------------------------------------------------------- containers

# containers_of CLUSTER [FILTER...]: "ID NAME" of every container (any
# state) with label skiff.cluster=CLUSTER. A FILTER is a docker filter
# ("status=running", "label=skiff.service=web") or "--filter X".
containers_of() {
	local cluster=$1 f=()
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--filter|-f) f+=(--filter "$2"); shift 2 ;;
		--filter=*) f+=("$1"); shift ;;
		*) f+=(--filter "$1"); shift ;;
		esac
	done
	docker ps -a --filter "label=skiff.cluster=$cluster" "${f[@]}" --format '{{.ID}} {{.Names}}'
}

# service_containers SERVICE [FILTER...]: ids of the running containers of
# SERVICE in this cluster.
service_containers() {
	local service=$1
	shift
	containers_of "$CLUSTER_ID" "label=skiff.service=$service" status=running "$@" | cut -d' ' -f1
}

# count_running SERVICE [CLUSTER=$CLUSTER_ID]: number of running containers
# of SERVICE (label skiff.service) in the cluster.
count_running() {
	local service=$1 cluster=${2:-${CLUSTER_ID:-}}
	if [ -z "$cluster" ]; then
		echo "count_running: no cluster id" >&2
		return 1
	fi
	docker ps -q --filter "label=skiff.cluster=$cluster" --filter "label=skiff.service=$service" \
		--filter status=running | wc -l
}

# container_label CONTAINER KEY
container_label() {
	docker inspect -f "{{index .Config.Labels \"$2\"}}" "$1"
}

# container_port CONTAINER [TARGET_PORT=8080]: the ADDR:PORT the engine
# published TARGET_PORT/tcp on (first one).
container_port() {
	docker port "$1" "${2:-8080}/tcp" | head -n1
}

# http_get URL: the body, failing on a connection error or a status >= 400.
http_get() {
	curl -fsS --noproxy '*' --max-time 5 "$1"
}

# http_status URL: the HTTP status code (000 when no answer).
http_status() {
	curl -s --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' "$1" || true
}

# ---------------------------------------------------------------- load

# loadgen_start [skiff-loadgen flags...]: runs skiff-loadgen in the
# background until loadgen_stop. Set LOADGEN=name to run several at once.
#   loadgen_start --url http://127.0.0.2:$port/ --concurrency 4 --interval 5ms
loadgen_start() {
	local d name=${LOADGEN:-loadgen} pid
	d=$(_skiff_workdir)
	rm -f "$d/$name.stop" "$d/$name.json"
	"$SKIFF_BIN/skiff-loadgen" --until-file "$d/$name.stop" --out "$d/$name.json" --quiet "$@" \
		</dev/null >/dev/null 2>"$d/$name.err" 3>&- 4>&- &
	pid=$!
	disown "$pid" 2>/dev/null || true   # no "Killed" job notices in test output
	echo "$pid" >"$d/$name.loadgen.pid"
	sleep 0.1
	if ! _skiff_pid_alive "$pid"; then
		echo "loadgen_start: skiff-loadgen exited at once: $(cat "$d/$name.err")" >&2
		return 1
	fi
}

# loadgen_stop: ends the run, prints its JSON summary (see tests/tools/
# loadgen.c) and succeeds only if it sent requests and none failed.
#   run loadgen_stop; [ "$status" -eq 0 ]; jq .bodies <<<"$output"
loadgen_stop() {
	local d name=${LOADGEN:-loadgen} pid
	d=$(_skiff_workdir)
	pid=$(cat "$d/$name.loadgen.pid" 2>/dev/null) || {
		echo "loadgen_stop: no loadgen '$name' started" >&2
		return 1
	}
	touch "$d/$name.stop"
	if ! _skiff_wait_gone "$pid" 30; then
		echo "loadgen_stop: skiff-loadgen did not stop" >&2
		kill -s KILL "$pid" 2>/dev/null || true
		return 1
	fi
	rm -f "$d/$name.loadgen.pid"
	export LOADGEN_LAST_OUT="$d/$name.json"
	if [ ! -s "$d/$name.json" ]; then
		echo "loadgen_stop: no summary: $(cat "$d/$name.err")" >&2
		return 1
	fi
	cat "$d/$name.json"
	jq -e '.failures == 0 and .requests > 0' "$d/$name.json" >/dev/null
}

# dockerd_restart: stops dockerd (TERM; it stops its containers first) and
# starts it again the way it was started, then waits until it answers. This
# stops every container on the machine, not only the test's; the lock keeps
# two test files from restarting it at once.
dockerd_restart() {
	local pid cmd=() log=/var/log/skiff-test-dockerd.log t0
	t0=$(_skiff_now_ms)
	exec 8>/tmp/skiff-dockerd-restart.lock
	flock 8
	if command -v systemctl >/dev/null && systemctl is-active -q docker 2>/dev/null; then
		systemctl restart docker
	else
		pid=$(pidof dockerd | cut -d' ' -f1)
		mapfile -d '' -t cmd <"/proc/$pid/cmdline"
		[ "${#cmd[@]}" -gt 0 ] || return 1
		kill -s TERM "$pid"
		if ! _skiff_wait_gone "$pid" 90; then
			echo "dockerd_restart: dockerd (pid $pid) did not stop" >&2
			return 1
		fi
		echo "# dockerd stopped after $(($(_skiff_now_ms) - t0)) ms" >&3
		# Started apart from this test: its own session, and none of the
		# test's descriptors (bats' pipes, the lock), so that it outlives the
		# test without holding them.
		(
			for fd in $(seq 3 255); do eval "exec $fd>&-"; done 2>/dev/null
			exec setsid nohup "${cmd[@]}" </dev/null >>"$log" 2>&1
		) &
		disown $! 2>/dev/null || true
	fi
	wait_until 90 docker info
	echo "# dockerd answers again after $(($(_skiff_now_ms) - t0)) ms" >&3
	flock -u 8
	exec 8>&-
}
