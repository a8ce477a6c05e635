#!/usr/bin/env bats
# Early failure detection (issue 21): a node whose agent's connection closes
# is down after --disconnect-grace (1 s), not the whole heartbeat timeout,
# so a killed agent's tasks are replaced within 3 s; an agent that is only
# paused (SIGSTOP for 1.5 s, its containers serving under load) keeps its
# tasks; an agent restarted within the grace keeps them too.
#
# One cluster per test: a controller (default timeouts) and three agents.

load helpers

setup() {
	cluster_start 3
}

teardown() {
	skiff_teardown
}

# task_ids SERVICE: the ids of its tasks desired running, sorted.
task_ids() {
	skiff service ps --format json "$1" |
		jq -r '.[] | select(.desired_state == "running") | .id' | sort
}

# away_from SERVICE I: its tasks desired running on a node other than I.
away_from() {
	skiff service ps --format json "$1" | jq --arg n "$(node_name "$2")" \
		'[.[] | select(.desired_state == "running" and .node_name != $n and .node_name != "")] | length'
}

@test "a killed agent's tasks are replaced within 3 s" {
	local t0 took
	skiff service create --name fo-web --replicas 6 skiff-test/web:v1 >/dev/null
	[ "$(away_from fo-web 3)" -eq 4 ]
	t0=$(_skiff_now_ms)
	agent_kill 3
	wait_until 10 '[ "$(away_from fo-web 3)" -eq 6 ]'
	took=$(($(_skiff_now_ms) - t0))
	echo "replaced (placed elsewhere) $took ms after the kill"
	[ "$took" -le 3000 ]
	skiff events --since 1m --until 0s --filter type=node --format json |
		jq -se --arg n "$(node_name 3)" 'any(.[]; .action == "down" and .name == $n and
			(.attributes | from_entries | .why) == "its agent'"'"'s connection closed")'
	wait_until 30 '[ "$(count_running fo-web)" -ge 6 ]'
}

@test "a paused agent keeps its tasks, and so does one restarted at once" {
	local port before
	port=$(free_port)
	skiff service create --name fo-pause --replicas 6 -p "$port:8080" skiff-test/web:v1 >/dev/null
	before=$(task_ids fo-pause)
	loadgen_start --url "http://127.0.0.2:$port/" --concurrency 2 --interval 10ms
	agent_kill 3 STOP
	sleep 1.5
	agent_kill 3 CONT
	sleep 4 # past the heartbeat timeout, had the node been thought lost
	[ "$(task_ids fo-pause)" = "$before" ]
	[ "$(skiff node ls --format json | jq -r --arg n "$(node_name 3)" '.[] | select(.name == $n) | .state')" = ready ]
	# a restart (the connection closes, the agent is back within the grace)
	agent_restart 3
	sleep 3
	[ "$(task_ids fo-pause)" = "$before" ]
	run loadgen_stop
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(skiff events --since 1m --until 0s --filter type=node --format json |
		jq -s 'map(select(.action == "down")) | length')" -eq 0 ]
	run skiff-controller --disconnect-grace soon
	[ "$status" -eq 2 ]
	[[ "$output" == *'--disconnect-grace: "soon"'* ]]
}
