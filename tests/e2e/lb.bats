#!/usr/bin/env bats
# The built-in load balancer (issue 7), against the real engine: containers
# reach services by name through their node's balancer (an exposed-only port
# too, which the node's address does not serve); requests are spread evenly
# over the replicas; a replica that is unhealthy, or never healthy, gets no
# traffic; under steady load a rolling update, in each order, and a docker
# kill of a replica fail no request; `service inspect` shows the per-backend
# counters.
#
# One cluster per test (a controller and three agents on 127.0.0.2-4), every
# port from free_port (the bridge gateway's ports are shared by every
# cluster on this engine). No assertion is on a timing: failures, hosts and
# versions are counted, and every wait is generous, since the machine may be
# loaded.

load helpers

setup() {
	cluster_start 3
}

teardown() {
	skiff_teardown
}

# ---------------------------------------------------------------- views

# hostname_of CONTAINER: its host name, the second word of the web image's
# answers.
hostname_of() {
	docker inspect -f '{{.Config.Hostname}}' "$1"
}

# hostnames SERVICE: the host names of its running containers, sorted.
hostnames() {
	local c
	for c in $(service_containers "$1"); do
		hostname_of "$c"
	done | sort
}

# lb_answers ADDR PORT N: N requests through the balancer at ADDR:PORT, a
# new connection each; prints the answers, one per line.
lb_answers() {
	local i
	for ((i = 0; i < $3; i++)); do
		http_get "http://$1:$2/" || return 1
	done
}

# lb_hosts ADDR PORT N: the host names that answered N requests.
lb_hosts() {
	local out
	out=$(lb_answers "$@") || return 1
	cut -d' ' -f2 <<<"$out"
}

# lb_spreads ADDR PORT N: N requests through the balancer were answered by N
# distinct hosts (it knows N backends, in round-robin).
lb_spreads() {
	local got
	got=$(lb_hosts "$1" "$2" "$3") || return 1
	[ "$(sort -u <<<"$got" | grep -c .)" -eq "$3" ] || {
		echo "answered by: $(tr '\n' ' ' <<<"$got")"
		return 1
	}
}

# ready SERVICE: its tasks that should run and are running and healthy (as
# the balancers get them).
ready() {
	skiff service ps --format json "$1" |
		jq '[.[] | select(.desired_state == "running" and .state == "running" and
			.health == "healthy")] | length'
}

# wait_ready SERVICE N [TIMEOUT=90]: N tasks ready.
wait_ready() {
	wait_until "${3:-90}" "[ \"\$(ready $1)\" -eq $2 ]"
}

# wait_balanced PORT N [TIMEOUT=60]: every node's balancer on PORT spreads N
# requests over N backends.
wait_balanced() {
	local i
	for i in 1 2 3; do
		wait_until "${3:-60}" lb_spreads "$(agent_addr "$i")" "$1" "$2" || return 1
	done
}

# lb_connections SERVICE: the sum of the connections of its backends, as
# `service inspect` shows them (lb_stats, from every agent's reports).
lb_connections() {
	skiff service inspect "$1" | jq '[.[0].lb_stats[].connections] | add // 0'
}

# in_container SERVICE CMD...: runs CMD in one of SERVICE's containers.
in_container() {
	local svc=$1 c
	shift
	c=$(service_containers "$svc" | head -n1)
	[ -n "$c" ] || {
		echo "no running container of $svc" >&2
		return 1
	}
	docker exec "$c" "$@"
}

# loads_stop: stops the loadgens started as new and ka, prints both
# summaries, and fails unless both sent requests and none failed.
loads_stop() {
	local rc=0
	LOADGEN=new loadgen_stop || rc=1
	echo
	LOADGEN=ka loadgen_stop || rc=1
	return $rc
}

# ---------------------------------------------------------------- by name

@test "a container reaches other services by name; an exposed-only port is not served on the node's address" {
	local port xport i got h
	port=$(free_port)
	xport=$(free_port)
	# db: internal only, answering on xport (the web image listens on $PORT);
	# api: published. A container resolves the services that exist when it
	# is created, so the callers come last.
	run skiff service create -q --name db --replicas 2 -e "PORT=$xport" --expose "$xport" \
		--health-http /health --health-interval 500ms skiff-test/web:v2
	[ "$status" -eq 0 ]
	run skiff service create -q --name api --replicas 2 -p "$port:8080" \
		--health-http /health --health-interval 500ms skiff-test/web:v1
	[ "$status" -eq 0 ]
	run skiff service create -q --name front --replicas 1 skiff-test/web:v1
	[ "$status" -eq 0 ]

	# api's containers reach db by its name, on the exposed port, through
	# the balancer on the bridge gateway; the answers come from db's
	# containers. (busybox's wget -T crashes: timeout(1) bounds it.)
	run in_container api cat /etc/hosts
	[[ "$output" == *"	db"* ]]
	wait_until 60 in_container api timeout 10 wget -q -O- "http://db:$xport/"
	got=""
	for ((i = 0; i < 6; i++)); do
		run in_container api timeout 10 wget -q -O- "http://db:$xport/"
		[ "$status" -eq 0 ]
		[[ "$output" == "v2 "* ]]
		got+="${output#v2 }"$'\n'
	done
	for h in $(sort -u <<<"$got"); do
		hostnames db | grep -qx "$h"
	done

	# front's container reaches both: db on its exposed port, api on its
	# published one.
	run in_container front timeout 10 wget -q -O- "http://db:$xport/"
	[ "$status" -eq 0 ]
	[[ "$output" == "v2 "* ]]
	run in_container front timeout 10 wget -q -O- "http://api:$port/"
	[ "$status" -eq 0 ]
	[[ "$output" == "v1 "* ]]

	# api is served on every node's address; db's exposed port on none:
	# the connection is refused there.
	for i in 1 2 3; do
		run http_get "http://$(agent_addr "$i"):$port/"
		[ "$status" -eq 0 ]
		[[ "$output" == "v1 "* ]]
		run curl -sS --noproxy '*' --max-time 5 "http://$(agent_addr "$i"):$xport/"
		[ "$status" -eq 7 ] # CURLE_COULDNT_CONNECT
		# shellcheck disable=SC2016 # expanded by the inner shell
		run timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$(agent_addr "$i")" "$xport"
		[ "$status" -ne 0 ]
		[[ "$output" == *"Connection refused"* ]]
	done
}

# ---------------------------------------------------------------- spread

@test "N requests over 3 replicas through one node's balancer are spread evenly; inspect shows the counters grow" {
	local port n=30 before got h counts min max
	port=$(free_port)
	run skiff service create -q --name spread --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 500ms skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_balanced "$port" 3

	# lb_stats come with the agents' full reports (every second): read them
	# once they have settled.
	wait_until 30 "[ \"\$(lb_connections spread)\" -gt 0 ]"
	sleep 2
	before=$(skiff service inspect spread | jq -c '.[0].lb_stats')
	[ "$(jq length <<<"$before")" -eq 3 ]

	got=$(lb_hosts "$(agent_addr 2)" "$port" "$n")
	[ "$(grep -c . <<<"$got")" -eq "$n" ]
	# Exactly the service's three containers answered, each n/3 times
	# (within one).
	[ "$(sort -u <<<"$got")" = "$(hostnames spread)" ]
	counts=$(sort <<<"$got" | uniq -c | awk '{print $1}')
	echo "# per host: $(tr '\n' ' ' <<<"$counts")" >&3
	min=$(sort -n <<<"$counts" | head -n1)
	max=$(sort -n <<<"$counts" | tail -n1)
	[ $((max - min)) -le 1 ]

	# Each backend's counters grew: n more connections in all, bytes both
	# ways, no connect failure.
	local total_before
	total_before=$(jq '[.[].connections] | add' <<<"$before")
	wait_until 30 "[ \"\$(lb_connections spread)\" -ge $((total_before + n)) ]"
	run skiff service inspect spread
	local after=$output
	for b in $(jq -r '.[].backend' <<<"$before"); do
		local c0 c1
		c0=$(jq --arg b "$b" '.[] | select(.backend == $b) | .connections' <<<"$before")
		c1=$(jq --arg b "$b" '.[0].lb_stats[] | select(.backend == $b) | .connections' <<<"$after")
		[ "$c1" -ge $((c0 + n / 3 - 1)) ]
	done
	[ "$(jq '[.[0].lb_stats[] | select(.bytes_in > 0 and .bytes_out > 0)] | length' <<<"$after")" -eq 3 ]
	[ "$(jq '[.[0].lb_stats[].connect_failures] | add' <<<"$after")" -eq 0 ]
}

# ---------------------------------------------------------------- health

@test "a replica reported unhealthy gets no traffic, and taking it out fails no request" {
	local port c h i tid
	port=$(free_port)
	run skiff service create -q --name sick --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 500ms --health-retries 2 \
		--restart-delay 5s skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_balanced "$port" 3

	c=$(service_containers sick | head -n1)
	h=$(hostname_of "$c")
	tid=$(container_label "$c" skiff.task)
	LOADGEN=new loadgen_start --url "http://$(agent_addr 1):$port/" --concurrency 2 --interval 10ms
	LOADGEN=ka loadgen_start --url "http://$(agent_addr 2):$port/" --concurrency 2 --interval 10ms \
		--keepalive

	docker exec "$c" rm /www/health
	# The task is reported unhealthy (then stopped, and started again after
	# the restart delay, in a new container).
	wait_until 60 "skiff service ps --format json sick | jq -e --arg t '$tid' \
		'.[] | select(.id == \$t) | .health == \"unhealthy\" or (.message | test(\"unhealthy\"))'"
	# From then on, no balancer sends it anything.
	for i in 1 2 3; do
		run lb_hosts "$(agent_addr "$i")" "$port" 12
		[ "$status" -eq 0 ]
		! grep -qx "$h" <<<"$output"
	done
	wait_ready sick 3
	run loads_stop
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "a replica that never becomes healthy gets no traffic, though it runs and answers" {
	local port i bad
	port=$(free_port)
	run skiff service create -q --name never --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 500ms --health-retries 2 \
		--update-order start-first --update-failure-action pause --update-monitor 2s \
		skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_balanced "$port" 3

	LOADGEN=new loadgen_start --url "http://$(agent_addr 1):$port/" --concurrency 2 --interval 10ms
	LOADGEN=ka loadgen_start --url "http://$(agent_addr 3):$port/" --concurrency 2 --interval 10ms \
		--keepalive
	# start-first: the bad-health task runs beside the old one of slot 1 and
	# never becomes healthy (its start period gives it time to run and
	# answer, health starting); then it is unhealthy and the update pauses.
	run skiff service update -d --health-start-period 30s --image skiff-test/web:bad-health never
	[ "$status" -eq 0 ]
	# It runs and answers whoever asks it directly...
	direct() {
		local c hp
		for c in $(service_containers never); do
			[ "$(docker inspect -f '{{.Config.Image}}' "$c")" = skiff-test/web:bad-health ] || continue
			hp=$(container_port "$c") || continue
			http_get "http://$hp/" && return 0
		done
		return 1
	}
	wait_until 90 direct
	# ... but no balancer sends it anything, before or after the pause.
	for i in 1 2 3; do
		run lb_answers "$(agent_addr "$i")" "$port" 9
		[ "$status" -eq 0 ]
		[ "$(grep -c '^v1 ' <<<"$output")" -eq 9 ]
	done
	wait_until 120 "[ \"\$(skiff service inspect never | jq -r '.[0].update_status.state')\" = paused ]"
	for i in 1 2 3; do
		run lb_answers "$(agent_addr "$i")" "$port" 9
		[ "$status" -eq 0 ]
		[ "$(grep -c '^v1 ' <<<"$output")" -eq 9 ]
	done
	run loads_stop
	echo "$output"
	[ "$status" -eq 0 ]
	bad=$(jq -s '[.[].bodies["bad-health"] // 0] | add' "$(_skiff_workdir)/new.json" \
		"$(_skiff_workdir)/ka.json")
	[ "$bad" -eq 0 ]
}

# ---------------------------------------------------------------- load

# update_under_load ORDER: a rolling update of 3 replicas, v1 to v2, in
# ORDER, under steady load through two nodes' balancers (a new connection
# per request through one, keep-alive through another): no request fails,
# both versions answer during it, only v2 once it is done.
update_under_load() {
	local order=$1 port i
	port=$(free_port)
	run skiff service create -q --name roll --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 500ms --update-order "$order" \
		--update-monitor 2s skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_balanced "$port" 3

	LOADGEN=new loadgen_start --url "http://$(agent_addr 1):$port/" --concurrency 2 --interval 10ms
	LOADGEN=ka loadgen_start --url "http://$(agent_addr 2):$port/" --concurrency 2 --interval 10ms \
		--keepalive
	sleep 1
	run timeout 300 skiff service update --image skiff-test/web:v2 roll
	echo "$output"
	[ "$status" -eq 0 ]
	sleep 1
	run loads_stop
	echo "$output"
	[ "$status" -eq 0 ]
	for f in new ka; do
		local json="$(_skiff_workdir)/$f.json"
		[ "$(jq '.bodies.v1 // 0' "$json")" -gt 0 ]
		[ "$(jq '.bodies.v2 // 0' "$json")" -gt 0 ]
	done
	for i in 1 2 3; do
		run lb_answers "$(agent_addr "$i")" "$port" 6
		[ "$status" -eq 0 ]
		[ "$(grep -c '^v2 ' <<<"$output")" -eq 6 ]
	done
}

@test "under steady load, a stop-first rolling update of 3 replicas fails no request" {
	update_under_load stop-first
}

@test "under steady load, a start-first rolling update of 3 replicas fails no request" {
	update_under_load start-first
}

@test "docker kill of a replica's container fails no new connection" {
	local port c tid
	port=$(free_port)
	run skiff service create -q --name victim --replicas 3 -p "$port:8080" \
		--health-http /health --health-interval 500ms skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_balanced "$port" 3

	LOADGEN=new loadgen_start --url "http://$(agent_addr 1):$port/" \
		--url "http://$(agent_addr 2):$port/" --url "http://$(agent_addr 3):$port/" \
		--concurrency 3 --interval 10ms
	sleep 1
	c=$(service_containers victim | shuf -n1)
	tid=$(container_label "$c" skiff.task)
	docker kill "$c" >/dev/null
	# The agent starts it again (the same task, a restart counted); wait
	# until it serves everywhere.
	wait_until 90 "skiff service ps --format json victim |
		jq -e --arg t '$tid' '.[] | select(.id == \$t) | .restarts >= 1' >/dev/null"
	wait_ready victim 3
	wait_balanced "$port" 3
	sleep 1
	LOADGEN=new run loadgen_stop
	echo "$output"
	[ "$status" -eq 0 ]
	# Every replica answered, the killed ones too, before and after.
	[ "$(jq '.hosts | length' <<<"$output")" -ge 3 ]
}
