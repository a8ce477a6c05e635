#!/usr/bin/env bats
# The load balancer on several threads (issue 21), against the real engine:
# agents run with --lb-threads 2, each thread with its own SO_REUSEPORT
# listener. The kernel spreads new connections over both threads, which the
# agents' /metrics show (skiff_lb_thread_connections_total{thread}); a
# replica taken out of a service is seen by both threads: no connection
# through either tries it again.
#
# One cluster per test (a controller and three agents on 127.0.0.2-4), every
# port from free_port. No assertion is on a timing.

load helpers

setup() {
	MPORT=$(free_port)
	SKIFF_AGENT_FLAGS="--lb-threads 2 --metrics-listen @ADDR@:$MPORT" cluster_start 3
}

teardown() {
	skiff_teardown
}

# metric ADDR NAME FILTER: the sum of NAME's samples on the agent at ADDR
# whose labels match the regex FILTER.
metric() {
	curl -s --noproxy '*' "http://$1:$MPORT/metrics" |
		awk -v n="$2" -v f="$3" '$1 ~ "^"n"[{]" && $1 ~ f { s += $2 } END { print s + 0 }'
}

# backends ADDR SERVICE: how many backends the agent at ADDR balances
# SERVICE over (its lb_stats rows: live ones, and removed ones still open).
backends() {
	curl -s --noproxy '*' "http://$1:$MPORT/metrics" |
		grep -c "^skiff_lb_connections_total{service=\"$2\"" || true
}

# answers ADDR PORT N: the host names that answered N requests, a new
# connection each.
answers() {
	local i out
	for ((i = 0; i < $3; i++)); do
		out=$(http_get "http://$1:$2/") || return 1
		cut -d' ' -f2 <<<"$out"
	done
}

@test "with --lb-threads 2, ~200 connections through one node are spread over both threads" {
	local port addr t0 t1 got counts
	port=$(free_port)
	addr=$(agent_addr 1)
	run skiff service create -q --name spread2 --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 500ms skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 90 "[ \"\$(backends $addr spread2)\" -eq 3 ]"
	wait_until 60 "http_get http://$addr:$port/ >/dev/null"
	got=$(answers "$addr" "$port" 200)
	[ "$(grep -c . <<<"$got")" -eq 200 ]
	t0=$(metric "$addr" skiff_lb_thread_connections_total 'thread="0"')
	t1=$(metric "$addr" skiff_lb_thread_connections_total 'thread="1"')
	echo "# thread 0: $t0, thread 1: $t1" >&3
	# A fair share each: the kernel hashes connections, about half each.
	[ "$t0" -ge 60 ]
	[ "$t1" -ge 60 ]
	# One shared cursor: strict round-robin over the three replicas still.
	counts=$(sort <<<"$got" | uniq -c | awk '{print $1}')
	echo "# per host: $(tr '\n' ' ' <<<"$counts")" >&3
	[ "$(grep -c . <<<"$counts")" -eq 3 ]
	[ $(($(sort -n <<<"$counts" | tail -n1) - $(sort -n <<<"$counts" | head -n1))) -le 1 ]
}

@test "with --lb-threads 2, a replica scaled away is tried by no thread of any node" {
	local port i addr before gone f0 f1 t0 t1
	port=$(free_port)
	run skiff service create -q --name drain2 --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 500ms skiff-test/web:v1
	[ "$status" -eq 0 ]
	for i in 1 2 3; do
		wait_until 90 "[ \"\$(backends $(agent_addr "$i") drain2)\" -eq 3 ]"
	done
	# Task id and host name of each replica, before one is taken out.
	before=$(for c in $(service_containers drain2); do
		docker inspect -f '{{index .Config.Labels "skiff.task"}} {{.Config.Hostname}}' "$c"
	done)
	run skiff service scale drain2=2
	[ "$status" -eq 0 ]
	for i in 1 2 3; do
		wait_until 90 "[ \"\$(backends $(agent_addr "$i") drain2)\" -eq 2 ]"
	done
	# The replica taken out (its container may still be stopping).
	gone=$(skiff service ps --format json drain2 |
		jq -r '.[] | select(.desired_state != "running") | .id' |
		while read -r id; do awk -v id="$id" '$1 == id { print $2 }' <<<"$before"; done)
	[ -n "$gone" ]
	echo "# removed: $gone" >&3
	for i in 1 2 3; do
		addr=$(agent_addr "$i")
		f0=$(metric "$addr" skiff_lb_connect_failures_total 'service="drain2"')
		t0=$(metric "$addr" skiff_lb_thread_connections_total 'thread="0"')
		t1=$(metric "$addr" skiff_lb_thread_connections_total 'thread="1"')
		run answers "$addr" "$port" 100
		[ "$status" -eq 0 ]
		[ "$(grep -c . <<<"$output")" -eq 100 ]
		! grep -qx "$gone" <<<"$output"
		# No connect to the removed replica, on either thread: no failure,
		# and both threads took part.
		f1=$(metric "$addr" skiff_lb_connect_failures_total 'service="drain2"')
		[ "$f1" -eq "$f0" ]
		[ "$(metric "$addr" skiff_lb_thread_connections_total 'thread="0"')" -gt "$t0" ]
		[ "$(metric "$addr" skiff_lb_thread_connections_total 'thread="1"')" -gt "$t1" ]
	done
}
