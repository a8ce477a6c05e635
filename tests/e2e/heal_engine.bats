#!/usr/bin/env bats
# Self-healing when the engine or a container fails, against the real
# engine: dockerd restarted, a container killed or OOM-killed, an image that
# cannot be pulled, a service that fits no node. Node and controller faults
# are in heal.bats; the checks every case ends with (`exact`,
# `data_dir_intact`) and the reset between cases are in heal_lib.bash.
#
# The dockerd restart (helpers.bash) stops every container on this machine,
# not only this file's; it happens once.

load helpers
load heal_lib

setup_file() {
	cluster_start 3
}

teardown_file() {
	skiff_teardown_file
}

teardown() {
	skiff_teardown # the logs, when the case failed
	heal_clean
}

# ================================================================ engine

# healthy SERVICE N: N of its tasks run, healthy.
healthy() {
	ps_is "$1" '[.[] | select(.state == "running" and .health == "healthy")] | length == $n' \
		--argjson n "$2"
}

@test "a dockerd restart: every task runs again, the same tasks, healthy, restarts counted" {
	local port ids t0
	[ "$(id -u)" = 0 ] || skip "only root restarts dockerd"
	pidof dockerd >/dev/null || skip "no dockerd process to restart"
	port=$(free_port)
	# Both kinds of health check: skiff's HTTP probe and Docker's own.
	run skiff service create -d -q --name web --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 1s skiff-test/web:v1
	[ "$status" -eq 0 ]
	run skiff service create -d -q --name db --replicas 2 \
		--health-cmd "wget -q -O /dev/null http://127.0.0.1:8080/health" \
		--health-interval 1s skiff-test/web:v2
	[ "$status" -eq 0 ]
	wait_exact 60 web=3 db=2
	wait_until 30 healthy web 3
	wait_until 30 healthy db 2
	ids=$( (running_json web; running_json db) | jq -r '.[].id' | sort)

	t0=$(_skiff_now_ms)
	dockerd_restart
	# The same tasks (restarted by their agents, not replaced), each in one
	# container, nothing else of the cluster, healthy again.
	wait_exact 120 web=3 db=2
	wait_until 60 healthy web 3
	wait_until 60 healthy db 2
	echo "# every task running and healthy again after $(($(_skiff_now_ms) - t0)) ms" >&3
	[ "$( (running_json web; running_json db) | jq -r '.[].id' | sort)" = "$ids" ]
	(running_json web; running_json db) | jq -s -e 'add | all(.[]; .restarts >= 1)' >/dev/null
	# Reachable again through the balancers, on the new host ports.
	wait_until 30 http_get "http://$(agent_addr 1):$port/"
	wait_until 30 http_get "http://$(agent_addr 2):$port/"
	grep -q "event stream dropped" "$SKIFF_TEST_DIR/agent-1.log"
	data_dir_intact web=3 db=2
}

@test "docker kill of a container: the same task runs again in its slot, the restart counted" {
	local cid id
	run skiff service create -d -q --name web --replicas 3 skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 60 web=3
	cid=$(slot web 1 container_id)
	id=$(slot web 1 id)

	docker kill "$cid" >/dev/null
	wait_until 30 "[ \"\$(slot web 1 restarts)\" = 1 ] && [ \"\$(slot web 1 state)\" = running ]"
	[ "$(slot web 1 id)" = "$id" ]
	[ "$(slot web 1 container_id)" = "$cid" ]
	[ "$(docker inspect -f '{{.State.Running}}' "$cid")" = true ]
	wait_exact 30 web=3
	[ "$(tasks_json web | jq length)" -eq 3 ]
	data_dir_intact web=3
}

@test "OOM kills: the agent restarts per policy; past --restart-max-attempts the task fails and is replaced with backoff" {
	local first json failed next
	run skiff service create -d -q --name web --replicas 2 skiff-test/web:v1
	[ "$status" -eq 0 ]
	run skiff service create -d -q --name oom --limit-memory 16m --restart-max-attempts 2 \
		skiff-test/oom:latest
	[ "$status" -eq 0 ]

	# The agent sees the OOM kill and restarts the same task, by its policy.
	wait_until 120 "[ \"\$(slot oom 1 restarts)\" -ge 1 ] 2>/dev/null"
	first=$(slot oom 1 id)
	[ "$(tasks_json oom | jq length)" -eq 1 ]
	grep -E "oom\.1\.$first: .*OOM killed \(exit code 137\); restart 1 in " "$SKIFF_TEST_DIR"/agent-*.log

	# Two restarts allowed: then the task fails, and the controller places
	# a replacement, not at once but after its backoff (1s for a first
	# failure).
	wait_until 180 "tasks_json oom | jq -e --arg id $first '.[] | select(.id == \$id) | .state == \"failed\"' >/dev/null"
	wait_until 30 "[ \"\$(tasks_json oom | jq length)\" -ge 2 ]"
	json=$(tasks_json oom)
	failed=$(jq -c --arg id "$first" '.[] | select(.id == $id)' <<<"$json")
	jq -e '.message == "OOM killed (exit code 137); gave up after 2 restarts" and .restarts == 2 and .desired_state == "shutdown"' <<<"$failed" >/dev/null
	next=$(jq -c --argjson f "$failed" '[.[] | select(.created_ms > $f.created_ms)] | sort_by(.created_ms) | .[0]' <<<"$json")
	[ "$(jq -r .slot <<<"$next")" -eq 1 ]
	[ $(($(jq -r .created_ms <<<"$next") - $(jq -r .state_since_ms <<<"$failed"))) -ge 900 ]
	# One task of the slot should run at a time, and the failed task's
	# container goes with it.
	[ "$(running_json oom | jq length)" -eq 1 ]
	wait_until 30 "[ \"\$(docker ps -aq --filter label=skiff.cluster=$CLUSTER_ID --filter label=skiff.service=oom | wc -l)\" -le 1 ]"

	run skiff service rm oom
	[ "$status" -eq 0 ]
	wait_exact 60 web=2
	data_dir_intact web=2
}

@test "an image that cannot be pulled: rejected with the engine's message, retried with backoff, never in a hot loop" {
	local image=127.0.0.1:5999/nope:v1 attempts
	run skiff service create -d -q --name web --replicas 2 skiff-test/web:v1
	[ "$status" -eq 0 ]
	run skiff service create -d -q --name nope "$image"
	[ "$status" -eq 0 ]
	wait_until 60 "tasks_json nope | jq -e '[.[] | select(.state == \"rejected\")] | length >= 1' >/dev/null"
	# The engine's own words, in the ERROR column of `service ps`.
	run skiff service ps --no-trunc nope
	[ "$status" -eq 0 ]
	grep -E 'Rejected .*127\.0\.0\.1:5999.*(connection refused|dial tcp)' <<<"$output"
	tasks_json nope | jq -e '[.[] | select(.state == "rejected")][0].message | test("127.0.0.1:5999")' >/dev/null

	# Over the next 15 s: retried (new tasks), but a few times, not a loop
	# (a backoff of 1, 2, 4, 8 s allows about five attempts).
	sleep 15
	attempts=$(cat "$SKIFF_TEST_DIR"/agent-*.log | grep -c "pulling $image")
	echo "# $attempts pull attempts" >&3
	[ "$attempts" -ge 2 ]
	[ "$attempts" -le 7 ]
	[ "$(running_json nope | jq length)" -le 1 ]
	[ "$(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID" --filter label=skiff.service=nope | wc -l)" -eq 0 ]

	run skiff service rm nope
	[ "$status" -eq 0 ]
	wait_exact 60 web=2
	data_dir_intact web=2
}

@test "a service that fits no node: pending, with the reason; placed when a node that fits joins" {
	run skiff service create -d -q --name mars --constraint node.labels.zone==mars skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 30 "[ \"\$(slot mars 1 state)\" = pending ]"
	[[ "$(slot mars 1 message)" == *"no suitable node"*"node.labels.zone==mars"* ]]
	run skiff service ps mars
	[ "$status" -eq 0 ]
	grep -E 'Pending .*no suitable node' <<<"$output"
	run skiff service ls
	grep -E 'mars .* 0/1 ' <<<"$output"
	sleep 2 # nothing runs, nothing is retried in a loop
	[ "$(tasks_json mars | jq length)" -eq 1 ]
	[ "$(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID" | wc -l)" -eq 0 ]

	agent_start 4 --label zone=mars
	wait_nodes_ready 4 60
	wait_exact 60 mars=1
	[ "$(slot mars 1 node_name)" = "$(node_name 4)" ]
	data_dir_intact mars=1
}
