#!/usr/bin/env bats
# Rolling updates and rollback (issue 6), against the real engine: v1 x3 to
# v2 in each order, checked through the balancers' answers and with docker
# inspect, with the serving capacity sampled all along; the replaced tasks
# as history in `service ps`, the update status in `service inspect`; an
# update whose health check fails, rolled back or paused (and resumed by a
# later update, or by the same spec); a controller killed mid-update; --force;
# a change of the replica count alone; `service rollback` on demand.
#
# One cluster per test (a controller and three agents on 127.0.0.2-4). No
# assertion is on a timing: versions, tasks and failures are counted, and
# every wait is generous, since the machine may be loaded.

load helpers

setup() {
	cluster_start 3
}

teardown() {
	sampler_stop >/dev/null 2>&1 || true
	skiff_teardown
	if [ -n "${UPD_TAG:-}" ]; then
		docker rmi "$UPD_TAG" >/dev/null 2>&1 || true
	fi
}

# ---------------------------------------------------------------- views

# ready SERVICE: its tasks that should run and are running, healthy where
# checked: the ones the balancers get.
ready() {
	skiff service ps --format json "$1" |
		jq '[.[] | select(.desired_state == "running" and .state == "running" and
			(.health == "healthy" or .health == "none"))] | length'
}

# update_state SERVICE
update_state() {
	skiff service inspect "$1" | jq -r '.[0].update_status.state'
}

# version SERVICE: its spec version.
version() {
	skiff service inspect "$1" | jq -r '.[0].version'
}

# running_tasks SERVICE: "slot id" of the tasks that should run, by slot.
running_tasks() {
	skiff service ps --format json "$1" |
		jq -r '.[] | select(.desired_state == "running") | "\(.slot) \(.id)"' | sort -n
}

# lb_answers ADDR PORT N: N requests through the balancer at ADDR:PORT, a
# new connection each; prints the answers, one per line.
lb_answers() {
	local i
	for ((i = 0; i < $3; i++)); do
		http_get "http://$1:$2/" || return 1
	done
}

# lb_spreads ADDR PORT N: N requests answered by N distinct hosts.
lb_spreads() {
	local got
	got=$(lb_answers "$1" "$2" "$3" | cut -d' ' -f2) || return 1
	[ "$(sort -u <<<"$got" | grep -c .)" -eq "$3" ]
}

# wait_balanced PORT N: every node's balancer spreads N requests over N
# backends.
wait_balanced() {
	local i
	for i in 1 2 3; do
		wait_until 90 lb_spreads "$(agent_addr "$i")" "$1" "$2" || return 1
	done
}

# all_answer VERSION PORT: every node's balancer answers VERSION only.
all_answer() {
	local i out
	for i in 1 2 3; do
		out=$(lb_answers "$(agent_addr "$i")" "$2" 6) || return 1
		if [ "$(grep -c "^$1 " <<<"$out")" -ne 6 ]; then
			echo "$(agent_addr "$i"):$2 answered: $(tr '\n' ' ' <<<"$out")"
			return 1
		fi
	done
}

# engine_is SERVICE IMAGE VERSION N: the engine runs exactly N containers of
# SERVICE, each of IMAGE and labelled skiff.version=VERSION (an extended
# regular expression: "1|3").
engine_is() {
	local c n=0 img ver
	for c in $(service_containers "$1"); do
		img=$(docker inspect -f '{{.Config.Image}}' "$c")
		ver=$(container_label "$c" skiff.version)
		if [ "$img" != "$2" ] || ! [[ "$ver" =~ ^($3)$ ]]; then
			echo "container $c: image $img, skiff.version $ver (want $2, $3)"
			return 1
		fi
		n=$((n + 1))
	done
	[ "$n" -eq "$4" ] || {
		echo "$n containers of $1 run, want $4"
		return 1
	}
}

# one_per_slot SERVICE VERSION N: every slot 1..N has exactly one task of
# spec version VERSION (history included), and it runs.
one_per_slot() {
	skiff service ps --format json "$1" | jq -e --argjson v "$2" --argjson n "$3" '
		[.[] | select(.spec_version == $v)] as $t
		| ([$t[].slot] | sort) == [range(1; $n + 1)]
		and ([$t[] | select(.desired_state == "running" and .state == "running")] | length) == $n' \
		>/dev/null || {
		skiff service ps --format json "$1" |
			jq -r '.[] | "slot \(.slot) v\(.spec_version) \(.id) \(.desired_state) \(.state) \(.image)"'
		return 1
	}
}

# ---------------------------------------------------------------- capacity

# sampler_start SERVICE: samples `ready SERVICE` in the background, as often
# as the CLI answers, until sampler_stop (or 10 minutes).
sampler_start() {
	local d
	d=$(_skiff_workdir)
	rm -f "$d/sampler.stop" "$d/sampler.out"
	(
		end=$(($(date +%s) + 600))
		while [ ! -e "$d/sampler.stop" ] && [ "$(date +%s)" -lt "$end" ]; do
			n=$(ready "$1" 2>/dev/null) && echo "$n" >>"$d/sampler.out"
		done
	) </dev/null >/dev/null 2>&1 3>&- 4>&- &
	echo $! >"$d/sampler.pid"
}

# sampler_stop: ends the sampling; prints "SAMPLES MIN MAX".
sampler_stop() {
	local d pid
	d=$(_skiff_workdir)
	[ -e "$d/sampler.pid" ] || return 1
	pid=$(cat "$d/sampler.pid")
	touch "$d/sampler.stop"
	_skiff_wait_gone "$pid" 30 || kill "$pid" 2>/dev/null || true
	rm -f "$d/sampler.pid"
	sort -n "$d/sampler.out" | awk 'NR == 1 { min = $1 } { n++; max = $1 } END { print n + 0, min + 0, max + 0 }'
}

# ---------------------------------------------------------------- v1 to v2

# v1_to_v2 ORDER MIN: creates web (3 replicas of v1, HTTP health check,
# ORDER), updates it to v2 while sampling its ready tasks, and checks the
# outcome: the CLI followed it to the end, every balancer answers v2, the
# engine runs three v2 containers of the new version, ps shows one replaced
# task per slot as history, inspect says completed, and the ready tasks
# never were fewer than MIN.
v1_to_v2() {
	local order=$1 min=$2 v1 stats
	PORT=$(free_port)
	run skiff service create -q --name web --replicas 3 -p "$PORT:8080" \
		--health-http /health --health-interval 500ms --update-order "$order" \
		--update-monitor 2s skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_balanced "$PORT" 3
	all_answer v1 "$PORT"
	v1=$(version web)
	engine_is web skiff-test/web:v1 "$v1" 3
	OLD_TASKS=$(running_tasks web | cut -d' ' -f2)

	sampler_start web
	run timeout 300 skiff service update --image skiff-test/web:v2 web
	stats=$(sampler_stop)
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Service converged"* ]]
	echo "# $order: ready tasks during the update: $stats (samples min max)" >&3
	set -- $stats
	[ "$1" -ge 5 ]        # it did sample during the update
	[ "$2" -ge "$min" ]   # the capacity never fell below min

	# The balancers answer v2 only; the engine runs v2 of the new version.
	[ "$(version web)" -eq $((v1 + 1)) ]
	wait_until 60 all_answer v2 "$PORT"
	engine_is web skiff-test/web:v2 $((v1 + 1)) 3

	# ps: per slot, the new task runs and the old one is history.
	run skiff service ps --format json web
	jq -e --argjson v "$((v1 + 1))" '
		[.[] | select(.desired_state == "running")] as $r
		| ($r | length) == 3 and ([$r[] | select(.spec_version == $v and .image == "skiff-test/web:v2"
			and .state == "running" and .health == "healthy")] | length) == 3
		and ([.[] | select(.desired_state != "running" and .image == "skiff-test/web:v1"
			and .state == "shutdown")] | length) == 3
		and ([.[].slot] | sort) == [1, 1, 2, 2, 3, 3]' <<<"$output" >/dev/null
	for id in $OLD_TASKS; do
		jq -e --arg id "$id" '.[] | select(.id == $id) | .desired_state != "running"' <<<"$output" >/dev/null
	done
	run skiff service ps web
	[ "$(grep -c '\\_ web\.[123] ' <<<"$output")" -eq 3 ]

	# inspect: completed, with its message.
	run skiff service inspect web
	[ "$(jq -r '.[0].update_status.state' <<<"$output")" = completed ]
	[ "$(jq -r '.[0].update_status.message' <<<"$output")" = "update completed" ]
	[ "$(jq -r '.[0].spec.image' <<<"$output")" = skiff-test/web:v2 ]
}

@test "v1 x3 to v2, stop-first: v2 everywhere, history in ps, completed in inspect; capacity never below replicas - parallelism; rollback on demand" {
	v1_to_v2 stop-first 2

	# service rollback: back to v1, followed to the end.
	local v
	v=$(version web)
	run timeout 300 skiff service rollback web
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(update_state web)" = rollback_completed ]
	[ "$(skiff service inspect web | jq -r '.[0].spec.image')" = skiff-test/web:v1 ]
	wait_until 60 all_answer v1 "$PORT"
	engine_is web skiff-test/web:v1 $((v + 1)) 3
}

@test "v1 x3 to v2, start-first: v2 everywhere, history in ps, completed in inspect; capacity never below replicas" {
	v1_to_v2 start-first 3
}

# ---------------------------------------------------------------- failures

@test "an update whose health check fails is rolled back: every task back on v1 and healthy, the CLI exits non-zero" {
	local v1
	PORT=$(free_port)
	run skiff service create -q --name web --replicas 3 -p "$PORT:8080" \
		--health-http /health --health-interval 500ms --health-retries 2 \
		--update-failure-action rollback --update-monitor 2s skiff-test/web:v1
	[ "$status" -eq 0 ]
	v1=$(version web)

	run timeout 300 skiff service update --image skiff-test/web:bad-health web
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "${lines[-1]}" == "skiff: update rolled back: "* ]]

	run skiff service inspect web
	[ "$(jq -r '.[0].update_status.state' <<<"$output")" = rollback_completed ]
	[ "$(jq -r '.[0].update_status.message' <<<"$output")" = "rollback completed" ]
	[ "$(jq -r '.[0].spec.image' <<<"$output")" = skiff-test/web:v1 ]
	# The rollback is a new version (v1's spec again).
	[ "$(jq -r '.[0].version' <<<"$output")" -eq $((v1 + 2)) ]
	wait_until 60 "[ \"\$(ready web)\" -eq 3 ]"
	run skiff service ps --format json web
	[ "$(jq '[.[] | select(.desired_state == "running" and .image == "skiff-test/web:v1"
		and .state == "running" and .health == "healthy")] | length' <<<"$output")" -eq 3 ]
	# Only the slot that was updated is replaced again: the others already
	# ran v1's spec, and keep their tasks of the first version. A restart
	# of the failed task whose start crossed its shutdown may still be in
	# its stop grace period: it goes within that, unreported.
	wait_until 30 engine_is web skiff-test/web:v1 "$v1|$((v1 + 2))" 3
	[ "$(jq --argjson v "$((v1 + 2))" '[.[] | select(.desired_state == "running"
		and .spec_version == $v)] | length' <<<"$output")" -eq 1 ]
	wait_balanced "$PORT" 3
	all_answer v1 "$PORT"
}

@test "an update whose health check fails pauses with failure action pause; a later update to a good image resumes and completes" {
	PORT=$(free_port)
	run skiff service create -q --name web --replicas 3 -p "$PORT:8080" \
		--health-http /health --health-interval 500ms --health-retries 2 \
		--update-failure-action pause --update-monitor 2s skiff-test/web:v1
	[ "$status" -eq 0 ]

	run timeout 300 skiff service update --image skiff-test/web:bad-health web
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "${lines[-1]}" == "skiff: update paused: "* ]]
	run skiff service inspect web
	[ "$(jq -r '.[0].update_status.state' <<<"$output")" = paused ]
	[[ "$(jq -r '.[0].update_status.message' <<<"$output")" == "update paused: "*"failed during the update" ]]

	# It stays paused: the other slots keep v1, and they serve.
	sleep 3
	[ "$(update_state web)" = paused ]
	[ "$(skiff service ps --format json web | jq '[.[] | select(.desired_state == "running"
		and .image == "skiff-test/web:v1")] | length')" -eq 2 ]
	all_answer v1 "$PORT"

	# A later update, to a good image, resumes and completes.
	run timeout 300 skiff service update --image skiff-test/web:v2 web
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(update_state web)" = completed ]
	engine_is web skiff-test/web:v2 "$(version web)" 3
	wait_until 60 all_answer v2 "$PORT"
}

@test "a paused update is resumed by the same spec (skiff service update SERVICE) and completes" {
	local rport
	PORT=$(free_port)
	rport=$(free_port) # nothing listens there: a pull from it fails
	UPD_TAG=127.0.0.1:$rport/web:upd-$SKIFF_PREFIX
	run skiff service create -q --name web --replicas 3 -p "$PORT:8080" \
		--health-http /health --health-interval 500ms \
		--update-failure-action pause --update-monitor 2s skiff-test/web:v1
	[ "$status" -eq 0 ]

	# An image that cannot be pulled: the first new task is rejected, the
	# update pauses.
	run timeout 300 skiff service update --image "$UPD_TAG" web
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "${lines[-1]}" == "skiff: update paused: "* ]]
	[ "$(update_state web)" = paused ]

	# The image appears (as if pushed); the same spec resumes the update.
	docker tag skiff-test/web:v2 "$UPD_TAG"
	run timeout 300 skiff service update web
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(update_state web)" = completed ]
	engine_is web "$UPD_TAG" "$(version web)" 3
	wait_until 60 all_answer v2 "$PORT"
}

# ---------------------------------------------------------------- restarts

@test "a controller killed mid-update finishes the update after its restart: no slot updated twice or skipped" {
	local v done_before
	PORT=$(free_port)
	run skiff service create -q --name web --replicas 3 -p "$PORT:8080" \
		--health-http /health --health-interval 500ms --update-parallelism 1 \
		--update-monitor 4s skiff-test/web:v1
	[ "$status" -eq 0 ]

	run skiff service update -d --image skiff-test/web:v2 web
	[ "$status" -eq 0 ]
	v=$(version web)
	# Once the first slot runs v2, and the update is still going on.
	wait_until 120 "[ \"\$(skiff service ps --format json web | jq --argjson v $v \
		'[.[] | select(.spec_version == \$v and .state == \"running\")] | length')\" -ge 1 ]"
	[ "$(update_state web)" = updating ]
	done_before=$(skiff service ps --format json web |
		jq --argjson v "$v" '[.[] | select(.spec_version == $v)] | length')
	controller_kill KILL
	echo "# controller killed with $done_before of 3 slots on the new version" >&3
	[ "$done_before" -lt 3 ]
	sleep 2
	controller_start
	wait_nodes_ready 3 60

	wait_until 240 "[ \"\$(update_state web)\" = completed ]"
	# Exactly one task per slot at the new version, running; none of v1 left.
	one_per_slot web "$v" 3
	engine_is web skiff-test/web:v2 "$v" 3
	wait_until 60 all_answer v2 "$PORT"
	# The CLI agrees that it converged.
	run timeout 120 skiff service update web
	[ "$status" -eq 0 ]
}

# ---------------------------------------------------------------- scale, force

@test "a change of the replica count alone only scales (no task replaced); --force redeploys every task" {
	local before after v
	PORT=$(free_port)
	run skiff service create -q --name web --replicas 3 -p "$PORT:8080" \
		--health-http /health --health-interval 500ms --update-monitor 1s skiff-test/web:v1
	[ "$status" -eq 0 ]
	before=$(running_tasks web)

	# Up to 5 and back to 3 with update --replicas: slots 1-3 keep their
	# tasks, there is no history, no update.
	run timeout 300 skiff service update --replicas 5 web
	[ "$status" -eq 0 ]
	[ "$(running_tasks web | head -n3)" = "$before" ]
	[ "$(running_tasks web | wc -l)" -eq 5 ]
	[ "$(update_state web)" = none ]
	run timeout 300 skiff service update --replicas 3 web
	[ "$status" -eq 0 ]
	wait_until 60 "[ \"\$(count_running web)\" -eq 3 ]"
	[ "$(running_tasks web)" = "$before" ]
	[ "$(update_state web)" = none ]
	[ "$(skiff service ps --format json web | jq '[.[] | select(.slot <= 3)] | length')" -eq 3 ]

	# --force: the same spec, every task replaced.
	v=$(version web)
	run timeout 300 skiff service update --force web
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(update_state web)" = completed ]
	after=$(running_tasks web)
	[ "$(wc -l <<<"$after")" -eq 3 ]
	[ "$(cut -d' ' -f1 <<<"$after" | tr '\n' ' ')" = "1 2 3 " ]
	for id in $(cut -d' ' -f2 <<<"$before"); do
		! grep -q " $id\$" <<<"$after"
	done
	one_per_slot web "$(version web)" 3
	[ "$(version web)" -gt "$v" ]
	engine_is web skiff-test/web:v1 "$(version web)" 3
	wait_until 60 all_answer v1 "$PORT"
}
