#!/usr/bin/env bats
# skiff-agent against the real engine: restarts from the event stream
# (docker kill), health checks that fail (the agent's HTTP probe and the
# engine's own check), the restart policy giving up (exit codes, OOM kills),
# adoption across an agent's kill -9 and restart (same containers, none
# twice, none left over), an agent that starts while the controller is away,
# containers that are not this agent's, and a clean SIGTERM that leaves the
# tasks running. (A restart of dockerd is in heal_engine.bats.)
#
# One cluster for the file: a controller and two agents; each test pins its
# service to a node with a constraint and uses its own ports.

load helpers

setup_file() {
	cluster_start 2
}

teardown_file() {
	skiff_teardown_file
}

teardown() {
	registry_stop
	skiff_teardown
}

# registry_start: a registry (docker-registry) on 127.0.0.1:$REGISTRY_PORT,
# which the engine trusts without TLS (it is on the loopback network).
registry_start() {
	local d=$BATS_TEST_TMPDIR/registry
	command -v docker-registry >/dev/null || skip "no docker-registry"
	REGISTRY_PORT=$(free_port)
	mkdir -p "$d/data"
	cat >"$d/config.yml" <<-EOF
		version: 0.1
		storage:
		  filesystem:
		    rootdirectory: $d/data
		http:
		  addr: 127.0.0.1:$REGISTRY_PORT
	EOF
	docker-registry serve "$d/config.yml" </dev/null >"$d/registry.log" 2>&1 3>&- 4>&- &
	echo $! >"$d/pid"
	disown $! 2>/dev/null || true
	wait_port 127.0.0.1 "$REGISTRY_PORT" 10
}

registry_stop() {
	local f=$BATS_TEST_TMPDIR/registry/pid
	[ -e "$f" ] || return 0
	_skiff_pid_is "$(cat "$f")" docker-registry && _skiff_stop_pid "$(cat "$f")"
	rm -f "$f"
}

# tasks SERVICE: the JSON of the service's tasks that should run.
tasks() {
	skiff service ps --format json "$1" | jq -c '[.[] | select(.desired_state == "running")]'
}

# slot SERVICE N FIELD: a field of the running task of slot N.
slot() {
	skiff service ps --format json "$1" |
		jq -r --argjson n "$2" --arg f "$3" \
			'[.[] | select(.desired_state == "running" and .slot == $n)][0][$f] // empty'
}

# slot_is SERVICE N STATE [HEALTH]
slot_is() {
	[ "$(slot "$1" "$2" state)" = "$3" ] || return 1
	[ -z "${4:-}" ] || [ "$(slot "$1" "$2" health)" = "$4" ]
}

# cid_of SERVICE N: the container of slot N (full id).
cid_of() {
	slot "$1" "$2" container_id
}

# running_ids SERVICE: the ids of its tasks that should run, sorted.
running_ids() {
	skiff service ps --format json "$1" |
		jq -r '[.[] | select(.desired_state == "running") | .id] | sort | join(" ")'
}

# all_of_cluster: every container of the cluster, running or not, sorted.
all_of_cluster() {
	docker ps -aq --no-trunc --filter "label=skiff.cluster=$CLUSTER_ID" | sort
}

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

@test "docker kill of a task's container: the agent starts it again at once" {
	local port cid t0 t1 id
	port=$(free_port)
	run skiff service create -q --name kill1 --replicas 2 -p "$port:8080" \
		--constraint "node.name==$(node_name 1)" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 60 slot_is kill1 1 running
	cid=$(cid_of kill1 1)
	id=$(slot kill1 1 id)
	[ -n "$cid" ]

	t0=$(now_ms)
	docker kill "$cid" >/dev/null
	wait_until 20 "[ \"\$(docker inspect -f '{{.State.Running}}' $cid)\" = true ]"
	t1=$(now_ms)
	echo "# killed container running again after $((t1 - t0)) ms" >&3

	# The same task and the same container, restarted once, and no other.
	wait_until 20 "[ \"\$(slot kill1 1 restarts)\" = 1 ]"
	wait_until 40 slot_is kill1 1 running
	[ "$(slot kill1 1 id)" = "$id" ]
	[ "$(cid_of kill1 1)" = "$cid" ]
	[ "$(count_running kill1)" -eq 2 ]
	[ "$(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID" --filter "label=skiff.service=kill1" | wc -l)" -eq 2 ]
	[[ "$(docker logs "$cid" 2>&1 | grep -c listening)" -eq 2 ]]
	http_get "http://$(agent_addr 1):$port/" | grep -q '^v1 '
	skiff service rm kill1
}

@test "a task whose HTTP probe fails is reported unhealthy and replaced" {
	local port cid id
	port=$(free_port)
	run skiff service create -q --name probe1 -p "$port:8080" \
		--constraint "node.name==$(node_name 1)" \
		--health-http /health --health-interval 500ms --health-retries 2 \
		skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 60 slot_is probe1 1 running healthy
	cid=$(cid_of probe1 1)
	id=$(slot probe1 1 id)

	docker exec "$cid" rm /www/health
	# Reported unhealthy, then replaced by a new container of the same task
	# (the old one's file system is what is broken).
	wait_until 60 "[ \"\$(slot probe1 1 restarts)\" = 1 ]"
	grep -q "probe1\.1\..*(unhealthy): unhealthy: HTTP 404" "$SKIFF_TEST_DIR/agent-1.log"
	wait_until 40 slot_is probe1 1 running healthy
	[ "$(slot probe1 1 id)" = "$id" ]
	[ "$(cid_of probe1 1)" != "$cid" ]
	run docker inspect "$cid"
	[ "$status" -ne 0 ]
	[ "$(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID" --filter "label=skiff.service=probe1" | wc -l)" -eq 1 ]
	http_get "http://$(agent_addr 1):$port/health"
	skiff service rm probe1
}

@test "a task whose engine health check fails is reported unhealthy and replaced" {
	local port cid
	port=$(free_port)
	run skiff service create -q --name hcmd1 -p "$port:8080" \
		--constraint "node.name==$(node_name 2)" \
		--health-cmd "wget -q -O /dev/null http://127.0.0.1:8080/health" \
		--health-interval 500ms --health-retries 2 skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 60 slot_is hcmd1 1 running healthy
	cid=$(cid_of hcmd1 1)
	[ "$(docker inspect -f '{{.State.Health.Status}}' "$cid")" = healthy ]

	docker exec "$cid" rm /www/health
	wait_until 60 "[ \"\$(slot hcmd1 1 restarts)\" = 1 ]"
	wait_until 40 slot_is hcmd1 1 running healthy
	[ "$(cid_of hcmd1 1)" != "$cid" ]
	grep -q "hcmd1.1.*unhealthy" "$SKIFF_TEST_DIR/agent-2.log"
	skiff service rm hcmd1
}

@test "the restart policy gives up: the task fails and the controller replaces it" {
	local id
	run skiff service create -d -q --name exit1 --constraint "node.name==$(node_name 1)" \
		--restart-condition on-failure --restart-delay 50ms --restart-max-attempts 2 \
		skiff-test/exit:latest
	[ "$status" -eq 0 ]
	wait_until 60 "skiff service ps --format json exit1 | jq -e '[.[] | select(.state == \"failed\")] | length >= 1' >/dev/null"
	run skiff service ps --format json exit1
	[ "$(jq -r '[.[] | select(.state == "failed")][0].message' <<<"$output")" = \
		"exited with code 1; gave up after 2 restarts" ]
	[ "$(jq -r '[.[] | select(.state == "failed")][0].exit_code' <<<"$output")" = 1 ]
	[ "$(jq -r '[.[] | select(.state == "failed")][0].restarts' <<<"$output")" = 2 ]
	id=$(jq -r '[.[] | select(.state == "failed")][0].id' <<<"$output")
	# A replacement: another task in slot 1.
	wait_until 60 "skiff service ps --format json exit1 | jq -e --arg id $id '[.[] | select(.slot == 1 and .id != \$id)] | length >= 1' >/dev/null"
	skiff service rm exit1
}

@test "an OOM kill is a failure" {
	run skiff service create -d -q --name oom1 --constraint "node.name==$(node_name 2)" \
		--limit-memory 8m --restart-condition on-failure --restart-max-attempts 1 \
		skiff-test/oom:latest
	[ "$status" -eq 0 ]
	wait_until 60 "skiff service ps --format json oom1 | jq -e '[.[] | select(.state == \"failed\")] | length >= 1' >/dev/null"
	run skiff service ps --format json oom1
	jq -e '[.[] | select(.state == "failed")][0].message | test("^OOM killed")' <<<"$output"
	skiff service rm oom1
}

@test "a missing image is pulled; one that cannot be pulled is rejected with the engine's message" {
	local image
	registry_start
	image=127.0.0.1:$REGISTRY_PORT/web:v2
	docker tag skiff-test/web:v2 "$image"
	docker push -q "$image" >/dev/null
	docker rmi "$image" >/dev/null
	run docker image inspect "$image"
	[ "$status" -ne 0 ]

	run skiff service create -q --name pull1 --constraint "node.name==$(node_name 1)" "$image"
	[ "$status" -eq 0 ]
	wait_until 60 slot_is pull1 1 running
	docker image inspect "$image" >/dev/null
	grep -q "pulling $image" "$SKIFF_TEST_DIR/agent-1.log"

	run skiff service create -d -q --name pull2 --constraint "node.name==$(node_name 1)" \
		"127.0.0.1:$REGISTRY_PORT/nope:v1"
	[ "$status" -eq 0 ]
	wait_until 60 "skiff service ps --format json pull2 | jq -e '[.[] | select(.state == \"rejected\")] | length >= 1' >/dev/null"
	skiff service ps --format json pull2 |
		jq -e '[.[] | select(.state == "rejected")][0].message | test("manifest unknown|not found")' >/dev/null
	skiff service rm pull1 pull2
	wait_until 20 "[ \"\$(docker ps -aq --filter label=skiff.cluster=$CLUSTER_ID --filter label=skiff.service=pull1 | wc -l)\" -eq 0 ]"
	docker rmi "$image" >/dev/null
}

@test "kill -9 of an agent and a restart adopt the same containers" {
	local port before after tasks_before
	port=$(free_port)
	run skiff service create -q --name adopt1 --replicas 3 -p "$port:8080" \
		--constraint "node.name==$(node_name 1)" --health-http /health skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 60 "[ \"\$(count_running adopt1)\" -eq 3 ]"
	before=$(all_of_cluster)
	tasks_before=$(running_ids adopt1)

	agent_kill 1 KILL
	# While the agent is away, its tasks keep running.
	[ "$(count_running adopt1)" -eq 3 ]
	agent_start 1
	wait_until 60 "[ \"\$(grep -c 'registered as node' $SKIFF_TEST_DIR/agent-1.log)\" -ge 2 ]"
	wait_until 60 "skiff service ps --format json adopt1 | jq -e '[.[] | select(.desired_state == \"running\" and .state == \"running\" and .health == \"healthy\")] | length == 3' >/dev/null"
	sleep 2 # anything left over or started twice would show now
	after=$(all_of_cluster)
	[ "$before" = "$after" ]
	[ "$(count_running adopt1)" -eq 3 ]
	# The same tasks, none restarted. (On a loaded machine the agent may come
	# back after the heartbeat timeout: the controller then makes stand-ins
	# that cannot be placed, and drops them when the node returns, so its
	# history may hold more; what runs is the same.)
	[ "$(running_ids adopt1)" = "$tasks_before" ]
	[ "$(skiff service ps --format json adopt1 | jq '[.[] | select(.desired_state == "running" and .restarts > 0)] | length')" -eq 0 ]
	http_get "http://$(agent_addr 1):$port/" | grep -q '^v1 '
	skiff service rm adopt1
}

@test "an agent that starts while the controller is away changes nothing" {
	local port before
	port=$(free_port)
	run skiff service create -q --name away1 --replicas 2 -p "$port:8080" \
		--constraint "node.name==$(node_name 2)" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 60 "[ \"\$(count_running away1)\" -eq 2 ]"
	before=$(all_of_cluster)

	agent_kill 2 KILL
	controller_kill KILL
	agent_start 2
	sleep 3
	# Nothing removed, nothing stopped, while no set has come.
	[ "$(all_of_cluster)" = "$before" ]
	[ "$(count_running away1)" -eq 2 ]
	grep -q "cannot reach the controller" "$SKIFF_TEST_DIR/agent-2.log"

	controller_start
	wait_nodes_ready 2 30
	wait_until 20 "skiff service ps --format json away1 | jq -e '[.[] | select(.desired_state == \"running\" and .state == \"running\")] | length == 2' >/dev/null"
	sleep 1
	[ "$(all_of_cluster)" = "$before" ]
	skiff service rm away1
}

@test "containers of other clusters are never touched; unknown ones of ours are removed" {
	local foreign stray node
	node=$(node_name 1)
	foreign=$(docker run -d --label skiff.cluster=not-this-one --label "skiff.node=$node" \
		--label skiff.task=x1 --label skiff.service=x skiff-test/web:v1)
	stray=$(docker run -d --label "skiff.cluster=$CLUSTER_ID" --label "skiff.node=$node" \
		--label skiff.task=nosuchtask --label skiff.service=x skiff-test/web:v1)
	# The agent notices on its next listing (the start event of a container
	# it does not know triggers one).
	wait_until 40 "! docker inspect $stray >/dev/null 2>&1"
	sleep 1
	[ "$(docker inspect -f '{{.State.Running}}' "$foreign")" = true ]
	docker rm -f "$foreign" >/dev/null
}

@test "SIGTERM closes the agent cleanly and its tasks keep running" {
	local port before
	port=$(free_port)
	run skiff service create -q --name term1 -p "$port:8080" \
		--constraint "node.name==$(node_name 2)" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 60 slot_is term1 1 running
	before=$(all_of_cluster)
	agent_kill 2 TERM
	grep -q "closing (the tasks keep running)" "$SKIFF_TEST_DIR/agent-2.log"
	[ "$(count_running term1)" -eq 1 ]
	[ "$(all_of_cluster)" = "$before" ]
	agent_start 2
	wait_nodes_ready 2 30
	wait_until 40 slot_is term1 1 running
	[ "$(all_of_cluster)" = "$before" ]
	skiff service rm term1
}

@test "service logs come from the agents, whole lines, task by task" {
	run skiff service create -q --name logs1 --replicas 2 \
		--constraint "node.name==$(node_name 1)" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 60 "[ \"\$(count_running logs1)\" -eq 2 ]"
	wait_until 20 "[ \"\$(skiff service logs logs1 | grep -c 'listening on :8080')\" -eq 2 ]"
	run skiff service logs logs1
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == logs1.* ]]
	skiff service rm logs1
}

@test "bad flags: one line naming the flag, exit 2" {
	run skiff-agent --advertise nope
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *"--advertise"* ]]
	run skiff-agent --heartbeat-interval 5 --join-token-file "$SKIFF_JOIN_TOKEN_FILE"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--heartbeat-interval"* ]]
	run skiff-agent --docker-host tcp://127.0.0.1:2375 --join-token-file "$SKIFF_JOIN_TOKEN_FILE"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--docker-host"* ]]
	run skiff-agent --label nolabel --join-token-file "$SKIFF_JOIN_TOKEN_FILE"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--label"* ]]
	# No token and no certificate in its state dir: it cannot join.
	run env -u SKIFF_JOIN_TOKEN timeout 20 skiff-agent --state-dir "$BATS_TEST_TMPDIR/empty"
	[ "$status" -eq 2 ]
	[[ "$output" == *"join token"* ]]
	run skiff-agent --frobnicate
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
}
