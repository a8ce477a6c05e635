#!/usr/bin/env bats
# Self-healing when nodes and the controller fail, against the real engine:
# an agent killed (kill -9) or frozen (SIGSTOP past the heartbeat timeout),
# a node back before its tasks' replacements are ready, the controller
# killed while idle, while scaling and while updating. Faults of the engine
# and of containers are in heal_engine.bats.
#
# Every case ends with the cluster exactly as desired (`exact`): the tasks
# that should run run, one per slot, each in one container on its node, as
# `skiff service ps --format json` and `docker ps` by label agree, and no
# other container of the cluster exists, running or not. Then the
# controller restarts on its data dir (`data_dir_intact`) and shows the same
# services and tasks, with nothing restarted.
#
# One cluster for the file (a controller and three agents, the default
# heartbeat timeout of 3s); after each case every daemon runs again (a
# frozen agent is continued, a dead one started), every service is removed
# and its containers are gone (heal_lib.bash), so that no fault or leftover
# reaches the next case. No assertion is on a timing; every wait is
# generous, since the machine may be loaded.

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

# ================================================================ agents

@test "kill -9 of an agent: its tasks move (spread, constraints), a pinned one is kept, its stale containers go" {
	local n1 n2 n3 port lost pinned_before
	n1=$(node_name 1) n2=$(node_name 2) n3=$(node_name 3)
	port=$(free_port)
	run skiff service create -d -q --name web --replicas 6 -p "$port:8080" skiff-test/web:v1
	[ "$status" -eq 0 ]
	run skiff service create -d -q --name notn3 --replicas 2 --constraint "node.name!=$n3" skiff-test/web:v1
	[ "$status" -eq 0 ]
	run skiff service create -d -q --name pinned --replicas 2 --constraint "node.name==$n1" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 90 web=6 notn3=2 pinned=2
	# Spread: two of web on each node.
	ps_is web 'all(group_by(.node_name)[]; length == 2) and length == 6'
	lost=$(running_json web | jq -c --arg n "$n1" '[.[] | select(.node_name == $n) | .id]')
	pinned_before=$(task_cids pinned)

	agent_kill 1 KILL
	wait_until 30 "[ \"\$(node_state $n1)\" = down ]"
	echo "# node 1 down" >&3

	# Its tasks run elsewhere: web spread 3/3 over the two nodes left,
	# notn3 only where its constraint allows (n2).
	wait_until 90 ps_is web '[.[] | select(.state == "running")] | length == 6 and
		([.[] | select(.node_name == $n2)] | length == 3) and ([.[] | select(.node_name == $n3)] | length == 3)' \
		--arg n2 "$n2" --arg n3 "$n3"
	wait_until 60 ps_is notn3 'length == 2 and all(.[]; .state == "running" and .node_name == $n2)' --arg n2 "$n2"
	# The lost web tasks are told to stop; none of them will run again.
	tasks_json web | jq -e --argjson lost "$lost" \
		'[.[] | select(.id as $id | $lost | index($id))] | length == 2 and all(.[]; .desired_state == "shutdown")' >/dev/null
	# pinned fits nowhere else: its tasks stay on n1 (orphaned, still
	# desired running), and their replacements wait, saying why.
	wait_until 30 ps_is pinned 'length == 4 and
		([.[] | select(.node_name == $n1 and .state == "orphaned")] | length == 2) and
		([.[] | select(.state == "pending" and (.message | test("no suitable node")))] | length == 2)' \
		--arg n1 "$n1"
	# With its agent dead, nobody stops node 1's containers: they still run.
	[ "$(docker ps -q --filter "label=skiff.cluster=$CLUSTER_ID" --filter "label=skiff.node=$n1" | wc -l)" -eq 5 ]

	agent_start 1
	wait_nodes_ready 3 60
	echo "# node 1 back" >&3
	# Its stale web and notn3 containers are removed; the pinned tasks were
	# never replaced, so they are adopted as they are: same tasks, same
	# containers, never restarted (hashicorp/nomad#5876); their
	# replacements, never placed, are dropped.
	wait_exact 90 web=6 notn3=2 pinned=2
	[ "$(task_cids pinned)" = "$pinned_before" ]
	ps_is pinned 'all(.[]; .restarts == 0)'
	tasks_json pinned | jq -e '[.[] | select(.desired_state != "running")] | length == 2 and
		all(.[]; .node_name == "" and .container_id == "")' >/dev/null
	grep -q "container removed" "$SKIFF_TEST_DIR/agent-1.log"
	# Nothing moves back, and no replacement was replaced again.
	ps_is web '[.[] | select(.node_name == $n1)] | length == 0' --arg n1 "$n1"
	tasks_json web | jq -e 'group_by(.slot) | all(.[]; length <= 2)' >/dev/null
	data_dir_intact web=6 notn3=2 pinned=2
}

@test "a node back before its tasks' replacements are ready: its tasks are kept, the replacements stop" {
	local n1 lost before health
	n1=$(node_name 1)
	# Healthy once the container has run for 25 s (web.sh writes
	# index.html as it starts): a replacement stays not ready that long.
	health='[ $(($(date +%s) - $(stat -c %Y /www/index.html))) -ge 25 ]'
	run skiff service create -d -q --name slow --replicas 3 --health-cmd "$health" \
		--health-interval 1s --health-start-period 5m skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 90 slow=3
	lost=$(running_json slow | jq -r --arg n "$n1" '.[] | select(.node_name == $n) | .id')
	[ -n "$lost" ]
	before=$(task_cids slow)

	agent_kill 1 KILL
	wait_until 30 "[ \"\$(node_state $n1)\" = down ]"
	# The replacement is placed and starts elsewhere, not healthy yet.
	wait_until 60 ps_is slow '[.[] | select(.node_name != $n1 and .node_name != "")] | length == 3' --arg n1 "$n1"
	ps_is slow '[.[] | select(.id == $id)] | length == 1' --arg id "$lost"
	echo "# node 1 down, its task's replacement placed" >&3

	agent_start 1
	# The task that never stopped running on node 1 is adopted; its
	# replacement, not ready, is the one that stops (hashicorp/nomad#5876).
	wait_exact 60 slow=3
	[ "$(task_cids slow)" = "$before" ]
	ps_is slow 'all(.[]; .restarts == 0)'
	tasks_json slow | jq -e '[.[] | select(.desired_state != "running")] | length == 1 and .[0].node_name != ""' >/dev/null
	data_dir_intact slow=3
}

@test "SIGSTOP of an agent past the timeout: its tasks are replaced, its endpoints leave every balancer; after SIGCONT the duplicates go" {
	local n1 port frozen_hosts frozen
	n1=$(node_name 1)
	port=$(free_port)
	run skiff service create -d -q --name web --replicas 6 -p "$port:8080" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 60 web=6
	frozen_hosts=$(hostnames_on "$n1" web)
	[ "$(grep -c . <<<"$frozen_hosts")" -eq 2 ]
	frozen=$(docker ps -q --no-trunc --filter "label=skiff.cluster=$CLUSTER_ID" --filter "label=skiff.node=$n1" | sort)
	# Before: node 2's balancer sends to node 1's containers too.
	wait_until 20 "lb_hosts $(agent_addr 2) $port 12 | grep -qxFf <(printf '%s\n' \"\$frozen_hosts\")"

	agent_kill 1 STOP
	wait_until 30 "[ \"\$(node_state $n1)\" = down ]"
	echo "# node 1 down" >&3
	# Node 1's containers still run and answer, but the balancers of the
	# other nodes no longer send to them: the endpoints left at once.
	[ "$(docker ps -q --no-trunc --filter "label=skiff.cluster=$CLUSTER_ID" --filter "label=skiff.node=$n1" | sort)" = "$frozen" ]
	wait_until 10 lb_avoids "$(agent_addr 2)" "$port" "$frozen_hosts"
	wait_until 10 lb_avoids "$(agent_addr 3)" "$port" "$frozen_hosts"
	# Replaced on the other nodes meanwhile.
	wait_until 90 ps_is web '[.[] | select(.state == "running" and .node_name != $n1)] | length == 6' --arg n1 "$n1"
	lb_avoids "$(agent_addr 2)" "$port" "$frozen_hosts"
	# Two slots now have a container on each side: the frozen agent cannot
	# stop its own.
	[ "$(docker ps -q --filter "label=skiff.cluster=$CLUSTER_ID" --filter status=running | wc -l)" -eq 8 ]

	agent_kill 1 CONT
	wait_nodes_ready 3 60
	echo "# node 1 continued" >&3
	# Its agent removes the containers of the tasks replaced meanwhile.
	wait_exact 90 web=6
	ps_is web '[.[] | select(.node_name == $n1)] | length == 0' --arg n1 "$n1"
	for c in $frozen; do
		run docker inspect "$c"
		[ "$status" -ne 0 ]
	done
	lb_avoids "$(agent_addr 1)" "$port" "$frozen_hosts"
	data_dir_intact web=6
}

# ================================================================ controller

@test "kill -9 of the controller while idle: the tasks keep running and nothing starts twice" {
	local port before
	port=$(free_port)
	run skiff service create -d -q --name web --replicas 3 -p "$port:8080" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 60 web=3
	before=$(engine_tasks)

	controller_kill KILL
	# Without a controller, the tasks run and the balancers serve.
	http_get "http://$(agent_addr 1):$port/" | grep -q '^v1 '
	[ "$(engine_tasks)" = "$before" ]
	controller_start
	wait_nodes_ready 3 60
	wait_exact 60 web=3
	[ "$(engine_tasks)" = "$before" ]
	running_json web | jq -e 'all(.[]; .restarts == 0)' >/dev/null
	[ "$(tasks_json web | jq length)" -eq 3 ]
	data_dir_intact web=3
}

@test "kill -9 of the controller while scaling 3 to 9: each new slot gets one task, the old ones stay" {
	local before
	run skiff service create -d -q --name web --replicas 3 skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 60 web=3
	before=$(task_cids web)

	run skiff service scale -d web=9
	[ "$status" -eq 0 ]
	controller_kill KILL
	echo "# controller killed while scaling" >&3
	controller_start
	wait_nodes_ready 3 60
	wait_exact 120 web=9
	# The first three: the same tasks and containers. Every slot has had one
	# task only, started once.
	[ "$(task_cids web | grep -xFf <(printf '%s\n' "$before") | sort)" = "$before" ]
	[ "$(tasks_json web | jq length)" -eq 9 ]
	running_json web | jq -e 'all(.[]; .restarts == 0)' >/dev/null
	data_dir_intact web=9
}

@test "kill -9 of the controller in the middle of a rolling update: it resumes, no task started twice" {
	local v2_before
	run skiff service create -d -q --name web --replicas 3 --update-parallelism 1 \
		--update-monitor 3s skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 60 web=3

	run skiff service update -d --image skiff-test/web:v2 web
	[ "$status" -eq 0 ]
	# In the middle: at least one slot runs v2, at least one still v1.
	wait_until 90 "running_json web | jq -e '([.[] | select(.image == \"skiff-test/web:v2\" and .state == \"running\")] | length >= 1) and ([.[] | select(.image == \"skiff-test/web:v1\")] | length >= 1)' >/dev/null"
	v2_before=$(running_json web | jq -r '.[] | select(.image == "skiff-test/web:v2" and .state == "running") | "\(.id) \(.container_id)"' | sort)
	controller_kill KILL
	echo "# controller killed during the update ($(grep -c . <<<"$v2_before") slot(s) done)" >&3
	controller_start
	wait_nodes_ready 3 60

	wait_until 180 "[ \"\$(update_state web)\" = completed ]"
	wait_exact 60 web=3
	running_json web | jq -e 'all(.[]; .image == "skiff-test/web:v2" and .restarts == 0)' >/dev/null
	# The v2 tasks that ran before the kill: the same tasks, same containers.
	[ "$(task_cids web | grep -xFf <(printf '%s\n' "$v2_before") | sort)" = "$v2_before" ]
	# Each slot: its one v1 task, and one v2 task (none started twice).
	tasks_json web | jq -e 'group_by(.slot) | length == 3 and all(.[]; length == 2 and ([.[].spec_version] | sort) == [1, 2])' >/dev/null
	data_dir_intact web=3
}
