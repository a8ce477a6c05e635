# Helpers for the high-availability suite (ha.bats): a real 3-member etcd
# cluster on loopback ports, 3 controllers sharing it, and agents that know
# all three. Loaded after helpers.bash.
#
#   load helpers
#   load ha_lib
#   setup_file()    { ha_start 3; }     # etcd x3, controllers x3, 3 agents
#   teardown_file() { ha_stop; }
#
# Controller 1 is helpers.bash's own (pids/controller, controller.log,
# $SKIFF_DATA_DIR); controllers 2 and 3 have pids/controller-<i>,
# controller-<i>.log and data-<i>/. Every controller has its own data dir
# and port; they share the store prefix $HA_PREFIX, so the tokens of
# controller 1's data dir are every controller's. SKIFF_HOST lists all
# three (the CLI finds the leader), and so does every agent's --controller.
#
# State (exported): HA_DIR (etcd's data dirs, logs and pids), ETCD_ENDPOINTS
# ("127.0.0.1:P1,..."), HA_PREFIX, HA_HOSTS, CTL_PORT_<i>, ETCD_PORT_<i>.

# etcdctl_ha ARGS...: etcdctl on the cluster (any member that answers).
etcdctl_ha() {
	ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" --command-timeout=5s \
		--dial-timeout=2s "$@"
}

# etcd_rev: the store's revision now.
etcd_rev() {
	etcdctl_ha get -w json --limit 1 "$HA_PREFIX" | jq -r '.header.revision'
}

etcd_pid() { cat "$HA_DIR/pids/etcd-$1" 2>/dev/null || true; }

# etcd_start I: starts member I with the arguments ha_etcd_start gave it
# (its data dir kept: a member that comes back rejoins).
etcd_start() {
	local i=$1 args pid
	mapfile -t args <"$HA_DIR/etcd-$i.args"
	echo "=== $(date '+%H:%M:%S.%N' | cut -c1-12) etcd ${args[*]}" >>"$HA_DIR/etcd-$i.log"
	etcd "${args[@]}" </dev/null >>"$HA_DIR/etcd-$i.log" 2>&1 3>&- 4>&- &
	pid=$!
	disown "$pid" 2>/dev/null || true
	echo "$pid" >"$HA_DIR/pids/etcd-$i"
}

# etcd_kill I [SIGNAL=KILL]
etcd_kill() {
	local i=$1 sig=${2:-KILL} pid
	pid=$(etcd_pid "$i")
	_skiff_pid_is "$pid" etcd || return 1
	kill -s "$sig" "$pid"
	_skiff_wait_gone "$pid" 10
	rm -f "$HA_DIR/pids/etcd-$i"
}

# etcd_healthy I: member I answers and has a leader.
etcd_healthy() {
	ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$(eval echo "\$ETCD_PORT_$1")" \
		--command-timeout=2s endpoint health >/dev/null 2>&1
}

# ha_etcd_start N: a new N-member etcd cluster on free loopback ports.
ha_etcd_start() {
	local n=${1:-3} i cluster="" peer client
	HA_DIR=${BATS_FILE_TMPDIR:-$(mktemp -d /tmp/skiff-ha.XXXXXX)}/ha-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	mkdir -p "$HA_DIR/pids"
	ETCD_ENDPOINTS=
	for ((i = 1; i <= n; i++)); do
		client=$(free_port) || return 1
		peer=$(free_port) || return 1
		printf -v "ETCD_PORT_$i" '%s' "$client"
		printf -v "ETCD_PEER_$i" '%s' "$peer"
		export "ETCD_PORT_$i" "ETCD_PEER_$i"
		cluster+="${cluster:+,}e$i=http://127.0.0.1:$peer"
		ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}127.0.0.1:$client"
	done
	export HA_DIR ETCD_ENDPOINTS
	for ((i = 1; i <= n; i++)); do
		client=$(eval echo "\$ETCD_PORT_$i")
		peer=$(eval echo "\$ETCD_PEER_$i")
		printf '%s\n' --name "e$i" --data-dir "$HA_DIR/etcd-$i" \
			--listen-client-urls "http://127.0.0.1:$client" \
			--advertise-client-urls "http://127.0.0.1:$client" \
			--listen-peer-urls "http://127.0.0.1:$peer" \
			--initial-advertise-peer-urls "http://127.0.0.1:$peer" \
			--initial-cluster "$cluster" --initial-cluster-token "skiff-${HA_DIR##*/}" \
			--initial-cluster-state new --log-level warn >"$HA_DIR/etcd-$i.args"
		etcd_start "$i"
	done
	for ((i = 1; i <= n; i++)); do
		if ! wait_until 30 etcd_healthy "$i"; then
			echo "ha_etcd_start: etcd member $i is not healthy; its log:" >&2
			tail -n 30 "$HA_DIR/etcd-$i.log" >&2
			return 1
		fi
	done
}

ctl_port() { eval echo "\$CTL_PORT_$1"; }

ctl_pid() {
	if [ "$1" = 1 ]; then controller_pid; else cat "$SKIFF_TEST_DIR/pids/controller-$1" 2>/dev/null || true; fi
}

ctl_log() {
	if [ "$1" = 1 ]; then echo "$SKIFF_TEST_DIR/controller.log"; else echo "$SKIFF_TEST_DIR/controller-$1.log"; fi
}

# ctl_start I: starts controller I (again) with its flags and data dir.
ctl_start() {
	local i=$1 args pid log
	if [ "$i" = 1 ]; then
		controller_start
		return
	fi
	log=$(ctl_log "$i")
	mapfile -t args <"$SKIFF_TEST_DIR/controller-$i.args"
	echo "=== $(date '+%H:%M:%S.%N' | cut -c1-12) skiff-controller ${args[*]}" >>"$log"
	"$SKIFF_BIN/skiff-controller" "${args[@]}" </dev/null >>"$log" 2>&1 3>&- 4>&- &
	pid=$!
	disown "$pid" 2>/dev/null || true
	echo "$pid" >"$SKIFF_TEST_DIR/pids/controller-$i"
	wait_until 30 "_skiff_pid_alive $pid && [ -s '$SKIFF_TEST_DIR/data-$i/admin-token' ] && _skiff_listening 127.0.0.1 $(ctl_port "$i")"
}

# ctl_kill I [SIGNAL=KILL]: as controller_kill, for controller I.
ctl_kill() {
	local i=$1 sig=${2:-KILL}
	if [ "$i" = 1 ]; then
		controller_kill "$sig"
		return
	fi
	_skiff_pid_is "$(ctl_pid "$i")" skiff-controller || return 1
	_skiff_signal "$(ctl_pid "$i")" "$sig" "$SKIFF_TEST_DIR/pids/controller-$i"
}

# ha_controllers_json: `skiff controller ls --format json`, as the first
# controller that answers sees it.
ha_controllers_json() {
	skiff controller ls --format json
}

# ha_leader: the index of the controller that leads, as the controllers say
# (the answer of one that is not itself stale: its own view, or a follower's
# whose leader is alive); empty when none.
ha_leader() {
	local addr i
	addr=$(ha_controllers_json 2>/dev/null | jq -r '.[] | select(.role == "leader") | .address' | head -n1)
	[ -n "$addr" ] || return 0
	for i in 1 2 3; do
		if [ "$addr" = "127.0.0.1:$(ctl_port "$i")" ] && _skiff_pid_alive "$(ctl_pid "$i")"; then
			echo "$i"
			return 0
		fi
	done
}

# ha_leads I: controller I says it leads (asked alone).
ha_leads() {
	SKIFF_HOST=127.0.0.1:$(ctl_port "$1") skiff controller ls --format json 2>/dev/null |
		jq -e --arg a "127.0.0.1:$(ctl_port "$1")" '.[] | select(.address == $a and .role == "leader")' >/dev/null
}

# ha_wait_leader TIMEOUT [NOT]: waits until a controller (other than NOT)
# says it leads; prints its index.
ha_wait_leader() {
	local timeout=$1 not=${2:-0} deadline i
	deadline=$(($(_skiff_now_ms) + timeout * 1000))
	while [ "$(_skiff_now_ms)" -lt "$deadline" ]; do
		for i in 1 2 3; do
			[ "$i" = "$not" ] && continue
			_skiff_pid_alive "$(ctl_pid "$i")" || continue
			if ha_leads "$i"; then
				echo "$i"
				return 0
			fi
		done
		sleep 0.1
	done
	echo "ha_wait_leader: no controller leads after ${timeout}s" >&2
	return 1
}

# ha_start [N_AGENTS=3]: etcd, three controllers on it, N agents.
ha_start() {
	local n=${1:-3} i port store
	ha_etcd_start 3 || return 1
	HA_PREFIX=/skiff/ha-${HA_DIR##*/ha-}/
	export HA_PREFIX
	store=(--store "etcd://$ETCD_ENDPOINTS" --store-prefix "$HA_PREFIX" --leader-lease 3s)
	SKIFF_WAIT_NODES=0 cluster_start 0 "${store[@]}" || return 1
	CTL_PORT_1=$SKIFF_CONTROLLER_PORT
	export CTL_PORT_1
	HA_HOSTS=127.0.0.1:$CTL_PORT_1
	for i in 2 3; do
		port=$(free_port) || return 1
		printf -v "CTL_PORT_$i" '%s' "$port"
		export "CTL_PORT_$i"
		printf '%s\n' --listen "127.0.0.1:$port" --data-dir "$SKIFF_TEST_DIR/data-$i" \
			--log-level debug "${store[@]}" >"$SKIFF_TEST_DIR/controller-$i.args"
		HA_HOSTS+=",127.0.0.1:$port"
	done
	export HA_HOSTS
	for i in 2 3; do
		if ! ctl_start "$i"; then
			_skiff_start_failed
			return 1
		fi
	done
	SKIFF_HOST=$HA_HOSTS
	SKIFF_AGENT_FLAGS="--controller $HA_HOSTS"
	export SKIFF_HOST SKIFF_AGENT_FLAGS
	for ((i = 1; i <= n; i++)); do
		agent_start "$i" || { _skiff_start_failed; return 1; }
	done
	wait_nodes_ready "$n" 60 || { _skiff_start_failed; return 1; }
}

# ha_daemons: every controller, agent and etcd member runs (a stopped one
# continued, a dead one started again).
ha_daemons() {
	local i pid stat
	for i in 1 2 3; do
		pid=$(etcd_pid "$i")
		_skiff_pid_is "$pid" etcd || etcd_start "$i"
	done
	for i in 1 2 3; do
		pid=$(ctl_pid "$i")
		if _skiff_pid_is "$pid" skiff-controller; then
			stat=$(cat "/proc/$pid/stat")
			stat=${stat##*) }
			[ "${stat%% *}" = T ] && kill -s CONT "$pid"
		else
			if [ "$i" = 1 ]; then rm -f "$SKIFF_TEST_DIR/pids/controller"; else rm -f "$SKIFF_TEST_DIR/pids/controller-$i"; fi
			ctl_start "$i"
		fi
	done
	for i in 1 2 3; do
		_skiff_pid_is "$(agent_pid "$i")" skiff-agent || agent_start "$i"
	done
	for i in 1 2 3; do wait_until 30 etcd_healthy "$i"; done
	ha_wait_leader 30 >/dev/null
	wait_nodes_ready 3 60
}

# ha_stop: the cluster (helpers.bash's cluster_stop: agents, controllers,
# containers), then etcd.
ha_stop() {
	local f rc=0
	cluster_stop || rc=$?
	for f in "$HA_DIR"/pids/etcd-*; do
		[ -e "$f" ] || continue
		_skiff_pid_is "$(cat "$f")" etcd && _skiff_stop_pid "$(cat "$f")"
		rm -f "$f"
	done
	return $rc
}

# ha_dump_etcd_logs: the tail of each member's log, for a failed case.
ha_dump_etcd_logs() {
	local f
	for f in "$HA_DIR"/etcd-*.log; do
		[ -e "$f" ] || continue
		echo "----- $(basename "$f") (last 20 lines) -----"
		tail -n 20 "$f"
	done
}
