# Helpers for the fault-injection suites (heal.bats, heal_engine.bats): one
# cluster per file, reset after each case (heal_clean), and the checks that
# every case ends with (exact, data_dir_intact). Loaded after helpers.bash.
#
#   load helpers
#   load heal_lib
#   setup_file()    { cluster_start 3; }
#   teardown_file() { skiff_teardown_file; }
#   teardown()      { skiff_teardown; heal_clean; }

# agents_running: how many agents run (so many nodes should be ready).
agents_running() {
	local f n=0
	for f in "$SKIFF_TEST_DIR"/pids/agent-*; do
		[ -e "$f" ] && _skiff_pid_is "$(cat "$f")" skiff-agent && n=$((n + 1))
	done
	echo "$n"
}

# heal_daemons: the controller and agents 1-3 run (a frozen agent is
# continued, a dead one started again); if one did not, waits until the
# nodes of the running agents are ready.
heal_daemons() {
	local i pid stat changed=0
	if ! _skiff_pid_is "$(controller_pid)" skiff-controller; then
		rm -f "$SKIFF_TEST_DIR/pids/controller"
		controller_start
		changed=1
	fi
	for i in 1 2 3; do
		pid=$(agent_pid "$i")
		if _skiff_pid_is "$pid" skiff-agent; then
			stat=$(cat "/proc/$pid/stat")
			stat=${stat##*) }
			if [ "${stat%% *}" = T ]; then
				kill -s CONT "$pid"
				changed=1
			fi
		else
			rm -f "$SKIFF_TEST_DIR/pids/agent-$i"
			agent_start "$i"
			changed=1
		fi
	done
	[ "$changed" = 0 ] || wait_nodes_ready "$(agents_running)" 60
}

# heal_extra_agents_stop: agents beyond the third are stopped and their
# nodes removed (their certificates revoked: their state dirs go too, so
# that a later agent of that number joins again).
heal_extra_agents_stop() {
	local i pid f
	for f in "$SKIFF_TEST_DIR"/pids/agent-*; do
		[ -e "$f" ] || continue
		i=${f##*/agent-}
		[ "$i" -le 3 ] && continue
		pid=$(cat "$f")
		_skiff_pid_is "$pid" skiff-agent && _skiff_stop_pid "$pid"
		rm -f "$f"
		skiff node rm --force "$(node_name "$i")" >/dev/null 2>&1 || true
		rm -rf "$(agent_state_dir "$i")"
	done
}

# heal_clean: every daemon runs, every service is removed and every
# container of the cluster gone (removed through the engine if the agents
# did not within a minute), and only the three first agents remain.
heal_clean() {
	local svcs left
	heal_daemons
	svcs=$(skiff service ls --format json | jq -r '.[].spec.name')
	# shellcheck disable=SC2086 # one name per word
	[ -z "$svcs" ] || skiff service rm $svcs >/dev/null
	if ! wait_until 60 "[ -z \"\$(docker ps -aq --filter label=skiff.cluster=$CLUSTER_ID)\" ]"; then
		mapfile -t left < <(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID")
		[ "${#left[@]}" -eq 0 ] || docker rm -f -v "${left[@]}" >/dev/null 2>&1 || true
	fi
	wait_until 60 "[ \"\$(skiff service ls --format json | jq length)\" -eq 0 ]"
	heal_extra_agents_stop
}

# ---------------------------------------------------------------- views

# tasks_json SERVICE: the service's tasks, history included.
tasks_json() {
	skiff service ps --format json "$1"
}

# running_json SERVICE: its tasks whose desired state is running.
running_json() {
	skiff service ps --format json "$1" | jq -c '[.[] | select(.desired_state == "running")]'
}

# ps_is SERVICE FILTER [JQ-ARGS...]: FILTER is true of the array of the
# service's tasks that should run (running_json).
ps_is() {
	local svc=$1 filter=$2
	shift 2
	running_json "$svc" | jq -e "$@" "$filter" >/dev/null
}

# slot SERVICE N FIELD: a field of the task of slot N that should run.
slot() {
	skiff service ps --format json "$1" |
		jq -r --argjson n "$2" --arg f "$3" \
			'[.[] | select(.desired_state == "running" and .slot == $n)][0][$f] // empty'
}

# task_cids SERVICE: "task-id container-id" of the tasks that should run, sorted.
task_cids() {
	skiff service ps --format json "$1" |
		jq -r '.[] | select(.desired_state == "running") | "\(.id) \(.container_id)"' | sort
}

# node_state NODE: ready | down, as `skiff node ls` says.
node_state() {
	skiff node ls --format json | jq -r --arg n "$1" '.[] | select(.name == $n) | .state'
}

# update_state SERVICE
update_state() {
	skiff service inspect "$1" | jq -r '.[0].update_status.state'
}

# engine_tasks [FILTER...]: "container-id node task" of the cluster's
# containers, as the engine labels them, sorted.
engine_tasks() {
	local f=(--filter "label=skiff.cluster=$CLUSTER_ID") a
	for a in "$@"; do f+=(--filter "$a"); done
	docker ps -a --no-trunc "${f[@]}" \
		--format '{{.ID}} {{.Label "skiff.node"}} {{.Label "skiff.task"}}' | LC_ALL=C sort
}

# ---------------------------------------------------------------- exact

# exact SERVICE=N...: the cluster is exactly as desired, for these services
# (every service of the cluster must be named):
#   - each has N tasks desired running, all running, one per slot 1..N;
#   - the engine runs one container per such task, on the task's node, and
#     the controller and the engine agree on which container;
#   - the cluster has no other container at all (running or not).
# Prints what differs, for wait_until's last output.
exact() {
	local arg svc n json want have total=0 all
	for arg in "$@"; do
		svc=${arg%=*}
		n=${arg#*=}
		json=$(tasks_json "$svc") || return 1
		want=$(jq -r --argjson n "$n" '
			[.[] | select(.desired_state == "running")] as $r
			| if ($r | length) == $n and all($r[]; .state == "running")
			     and ([$r[].slot] | sort) == [range(1; $n + 1)]
			  then $r | map("\(.container_id) \(.node_name) \(.id)") | sort | .[]
			  else "not exact" end' <<<"$json")
		if [ "$want" = "not exact" ]; then
			echo "$svc: want $n tasks running, one per slot; the controller says:"
			jq -r '.[] | "  \(.slot) \(.id) \(.node_name) desired \(.desired_state) state \(.state) \(.message)"' <<<"$json"
			return 1
		fi
		have=$(engine_tasks "label=skiff.service=$svc" status=running)
		if [ "$want" != "$have" ]; then
			printf '%s: the controller says\n%s\nthe engine runs\n%s\n' "$svc" "$want" "$have"
			return 1
		fi
		total=$((total + n))
	done
	all=$(engine_tasks)
	if [ "$(grep -c . <<<"$all")" -ne "$total" ]; then
		printf 'want %d containers in the cluster, the engine has:\n%s\n' "$total" "$all"
		return 1
	fi
}

# wait_exact TIMEOUT SERVICE=N...
wait_exact() {
	local timeout=$1
	shift
	wait_until "$timeout" exact "$@"
}

# services_view: what must survive a restart of the controller: every
# service's name, spec version, replicas and image, and the tasks that
# should run (id, slot, node, container, restarts).
services_view() {
	local s
	skiff service ls --format json |
		jq -c '[.[] | {name: .spec.name, version, replicas: .spec.replicas, image: .spec.image}] | sort_by(.name)'
	for s in $(skiff service ls --format json | jq -r '.[].spec.name' | sort); do
		skiff service ps --format json "$s" |
			jq -c '[.[] | select(.desired_state == "running") | {id, slot, node_name, container_id, restarts}] | sort_by(.slot)'
	done
}

# registrations: how many times each running agent has registered, from
# their logs ("1:3 2:3 3:2").
registrations() {
	local f i out=()
	for f in "$SKIFF_TEST_DIR"/pids/agent-*; do
		[ -e "$f" ] || continue
		i=${f##*/agent-}
		out+=("$i:$(grep -c 'registered as node' "$SKIFF_TEST_DIR/agent-$i.log")")
	done
	echo "${out[*]}"
}

# registered_since REGISTRATIONS: every agent has registered again since.
registered_since() {
	local r i n
	for r in $1; do
		i=${r%%:*} n=${r#*:}
		[ "$(grep -c 'registered as node' "$SKIFF_TEST_DIR/agent-$i.log")" -gt "$n" ] || return 1
	done
}

# data_dir_intact SERVICE=N...: the controller, stopped and started again on
# its data dir, shows the same services and tasks once every agent has
# registered again, and the cluster is exact with the same tasks in the
# same containers, none restarted.
data_dir_intact() {
	local before after cids_before regs
	before=$(services_view)
	cids_before=$(engine_tasks)
	regs=$(registrations)
	controller_restart
	wait_until 60 registered_since "$regs"
	wait_exact 60 "$@"
	after=$(services_view)
	if [ "$before" != "$after" ]; then
		printf 'after a controller restart:\nbefore %s\nafter  %s\n' "$before" "$after" >&2
		return 1
	fi
	[ "$(engine_tasks)" = "$cids_before" ]
}

# ---------------------------------------------------------------- balancers

# lb_hosts ADDR PORT N: the hosts (container host names) that answer N
# requests through the balancer at ADDR:PORT, one per line.
lb_hosts() {
	local i body
	for ((i = 0; i < $3; i++)); do
		body=$(http_get "http://$1:$2/") || return 1
		echo "${body#* }"
	done
}

# hostnames_on NODE SERVICE: the host names of the service's running
# containers on NODE (the web image answers with its host name).
hostnames_on() {
	local c
	for c in $(docker ps -q --filter "label=skiff.cluster=$CLUSTER_ID" \
		--filter "label=skiff.service=$2" --filter "label=skiff.node=$1" --filter status=running); do
		docker inspect -f '{{.Config.Hostname}}' "$c"
	done
}

# lb_avoids ADDR PORT HOSTS: N requests through the balancer, none answered
# by any of HOSTS (a newline-separated list).
lb_avoids() {
	local got
	got=$(lb_hosts "$1" "$2" 12) || return 1
	if grep -qxFf <(printf '%s\n' "$3") <<<"$got"; then
		echo "answered by a host it should not use: $(grep -xFf <(printf '%s\n' "$3") <<<"$got" | sort -u | tr '\n' ' ')"
		return 1
	fi
}
