#!/usr/bin/env bats
# A restart of the container engine itself: dockerd stops every container
# when it goes down, and the agents' event streams and calls fail until it
# is back. Then every task must run again, in its own container (none twice,
# none lost), be healthy, and be reachable through the balancers.
#
# This restarts the machine's dockerd, which stops every container on it,
# not only this test's: it is a file of its own so that it runs alone (ctest
# runs e2e files one at a time). It is skipped when dockerd cannot be
# restarted from here (not root, or no dockerd process to restart).

load helpers

setup() {
	[ "$(id -u)" = 0 ] || skip "only root restarts dockerd"
	pidof dockerd >/dev/null || skip "no dockerd process to restart"
	cluster_start 2
}

teardown() {
	skiff_teardown
}

# dockerd_restart: stops dockerd (TERM; it stops its containers first) and
# starts it again the way it was started, then waits until it answers.
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

# ready SERVICE N: N tasks of SERVICE run, healthy.
ready() {
	skiff service ps --format json "$1" | jq -e --argjson n "$2" \
		'[.[] | select(.desired_state == "running" and .state == "running" and .health == "healthy")] | length == $n' >/dev/null
}

task_ids() {
	skiff service ps --format json "$1" | jq -r '[.[] | select(.desired_state == "running") | .id] | sort | join(" ")'
}

@test "a dockerd restart brings every task back to running" {
	local port ids_web ids_db t0
	port=$(free_port)
	run skiff service create -q --name eweb --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 1s skiff-test/web:v1
	[ "$status" -eq 0 ]
	run skiff service create -q --name edb --replicas 2 \
		--health-cmd "wget -q -O /dev/null http://127.0.0.1:8080/health" \
		--health-interval 1s skiff-test/web:v2
	[ "$status" -eq 0 ]
	wait_until 30 ready eweb 3
	wait_until 30 ready edb 2
	ids_web=$(task_ids eweb)
	ids_db=$(task_ids edb)

	t0=$(_skiff_now_ms)
	dockerd_restart

	wait_until 90 ready eweb 3
	wait_until 90 ready edb 2
	echo "# every task running and healthy again after $(($(_skiff_now_ms) - t0)) ms" >&3
	# The same tasks (restarted by their agents, not replaced), each in one
	# container, and nothing else of the cluster.
	[ "$(task_ids eweb)" = "$ids_web" ]
	[ "$(task_ids edb)" = "$ids_db" ]
	[ "$(count_running eweb)" -eq 3 ]
	[ "$(count_running edb)" -eq 2 ]
	[ "$(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID" | wc -l)" -eq 5 ]
	skiff service ps --format json eweb | jq -e '[.[] | select(.restarts >= 1)] | length == 3' >/dev/null
	# Reachable again through both balancers, on the new host ports.
	wait_until 20 http_get "http://$(agent_addr 1):$port/"
	wait_until 20 http_get "http://$(agent_addr 2):$port/"
	grep -q "event stream dropped" "$SKIFF_TEST_DIR/agent-1.log"
	skiff service rm eweb edb
}
