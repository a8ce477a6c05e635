#!/usr/bin/env bats
# The skiff command, verb by verb, against a running cluster (a controller
# and three agents on 127.0.0.2-4): what it prints (tables and --format json,
# read with jq), that create, update, scale and rollback wait until the
# service converged, and that every mistake ends with one line on stderr and
# a non-zero exit, having changed nothing.
#
# One cluster for the file; each test uses its own service names and ports.

load helpers

setup_file() {
	cluster_start 3
}

teardown_file() {
	skiff_teardown_file
}

teardown() {
	skiff_teardown
}

# one_line: the output is exactly one line.
one_line() {
	[ "$(printf '%s\n' "$output" | wc -l)" -eq 1 ]
}

# running_on SERVICE NODE: how many of SERVICE's tasks should run on NODE.
running_on() {
	skiff service ps --format json "$1" |
		jq -r --arg n "$2" '[.[] | select(.desired_state == "running" and .node_name == $n)] | length'
}

# body_from ADDR PORT: what the service answers on /.
body_from() {
	http_get "http://$1:$2/"
}

@test "node ls shows the three agents, as a table and as JSON" {
	run skiff node ls
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "ID"*"HOSTNAME"*"STATUS"*"AVAILABILITY"*"ADDRESS"*"TASKS" ]]
	[ "${#lines[@]}" -eq 4 ]
	for i in 1 2 3; do
		[[ "$output" == *"$(node_name $i)"*"Ready"*"Active"*"$(agent_addr $i)"* ]]
	done

	run skiff node ls --format json
	[ "$status" -eq 0 ]
	[ "$(jq length <<<"$output")" -eq 3 ]
	[ "$(jq -r '[.[] | select(.state == "ready" and .availability == "active")] | length' \
		<<<"$output")" -eq 3 ]
	[ "$(jq -r --arg n "$(node_name 2)" '.[] | select(.name == $n) | .address' <<<"$output")" = \
		"$(agent_addr 2)" ]

	run skiff node ls -q
	[ "${#lines[@]}" -eq 3 ]
	[ "${#lines[0]}" -eq 12 ]

	run skiff node inspect "$(node_name 1)"
	[ "$status" -eq 0 ]
	[ "$(jq -r '.[0].name' <<<"$output")" = "$(node_name 1)" ]
	[ "$(jq -r '.[0].last_heartbeat | test("^20[0-9-]+T")' <<<"$output")" = true ]
}

@test "service create waits until the service converged, with its progress" {
	port=$(free_port)
	run skiff service create --name cweb --replicas 3 -p "$port:8080" --health-http /health \
		--health-interval 500ms skiff-test/web:v1
	[ "$status" -eq 0 ]
	[[ "$output" == *"overall progress: 3 out of 3 tasks"* ]]
	[[ "$output" == *"1/3: running"* ]]
	[[ "${lines[-1]}" == "verify: Service converged" ]]
	# converged means running and healthy, now, without waiting
	[ "$(count_running cweb)" -eq 3 ]
	run skiff service ls --format json
	[ "$(jq -r '.[] | select(.spec.name == "cweb") | "\(.running_tasks)/\(.desired_tasks)"' \
		<<<"$output")" = "3/3" ]
	# published on every node's address
	for i in 1 2 3; do
		wait_until 10 body_from "$(agent_addr $i)" "$port"
		[[ "$(body_from "$(agent_addr $i)" "$port")" == "v1 "* ]]
	done
}

@test "service ls and ps print Docker's tables; -q prints ids" {
	run skiff service ls
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "ID"*"NAME"*"MODE"*"REPLICAS"*"IMAGE"*"PORTS" ]]
	[[ "$output" == *"cweb"*"replicated"*"3/3"*"skiff-test/web:v1"*"*:"*"->8080/tcp"* ]]

	run skiff service ps cweb
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "ID"*"NAME"*"IMAGE"*"NODE"*"DESIRED STATE"*"CURRENT STATE"*"ERROR" ]]
	for slot in 1 2 3; do
		[[ "$output" == *"cweb.$slot "*"skiff-test/web:v1"*"$SKIFF_PREFIX-n"*"Running"*"Running (healthy)"*"ago"* ]]
	done

	run skiff service ps --format json cweb
	[ "$(jq -r '[.[] | select(.state == "running" and .health == "healthy")] | length' \
		<<<"$output")" -eq 3 ]
	[ "$(jq -r '[.[].slot] | sort | join(",")' <<<"$output")" = "1,2,3" ]

	run skiff service ps -q cweb
	[ "${#lines[@]}" -eq 3 ]
	run skiff service ls -q
	[ "$status" -eq 0 ]
	for l in "${lines[@]}"; do
		[[ "$l" =~ ^[0-9a-z]{1,12}$ ]]
	done
}

@test "service inspect prints the service as JSON, with readable enums and durations" {
	run skiff service inspect cweb
	[ "$status" -eq 0 ]
	[ "$(jq length <<<"$output")" -eq 1 ]
	[ "$(jq -r '.[0].spec.name' <<<"$output")" = cweb ]
	[ "$(jq -r '.[0].spec.health.http_path' <<<"$output")" = /health ]
	[ "$(jq -r '.[0].spec.health.interval' <<<"$output")" = 500ms ]
	[ "$(jq -r '.[0].spec.update.order' <<<"$output")" = stop-first ]
	[ "$(jq -r '.[0].spec.restart.condition' <<<"$output")" = any ]
	# by id prefix too
	id=$(jq -r '.[0].id' <<<"$output")
	run skiff service inspect "${id:0:8}"
	[ "$status" -eq 0 ]
	[ "$(jq -r '.[0].id' <<<"$output")" = "$id" ]
}

# per_node SERVICE: how many of its containers run on each node, as the
# engine's labels say, sorted ("2 2 2").
per_node() {
	docker ps --filter "label=skiff.cluster=$CLUSTER_ID" --filter "label=skiff.service=$1" \
		--filter status=running --format '{{.Label "skiff.node"}}' |
		sort | uniq -c | awk '{ print $1 }' | sort -n | xargs
}

@test "create --replicas 6 runs 6 containers, 2 per node; scaled to 9 and back to 3, still spread" {
	run skiff service create -q --name cspread --replicas 6 skiff-test/web:v1
	[ "$status" -eq 0 ]
	[ "$(per_node cspread)" = "2 2 2" ]
	run skiff service scale cspread=9
	[ "$status" -eq 0 ]
	[ "$(per_node cspread)" = "3 3 3" ]
	run skiff service scale cspread=3
	[ "$status" -eq 0 ]
	wait_until 30 '[ "$(per_node cspread)" = "1 1 1" ]'
	skiff service rm cspread
}

@test "service scale follows the service up and down" {
	run skiff service scale cweb=5
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "cweb scaled to 5" ]]
	[[ "$output" == *"verify: Service converged"* ]]
	[ "$(count_running cweb)" -eq 5 ]
	run skiff service scale cweb=2
	[ "$status" -eq 0 ]
	wait_until 20 '[ "$(count_running cweb)" -eq 2 ]'
	run skiff service ls --format json
	[ "$(jq -r '.[] | select(.spec.name == "cweb") | .spec.replicas' <<<"$output")" -eq 2 ]
}

@test "service update --image rolls the tasks over; ps shows the history" {
	port=$(skiff service inspect cweb | jq -r '.[0].spec.ports[0].published')
	run skiff service update --image skiff-test/web:v2 --update-parallelism 2 cweb
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == cweb ]]
	[[ "${lines[-1]}" == "verify: Service converged" ]]
	run skiff service inspect cweb
	[ "$(jq -r '.[0].update_status.state' <<<"$output")" = completed ]
	[ "$(jq -r '.[0].spec.image' <<<"$output")" = skiff-test/web:v2 ]
	wait_until 10 '[[ "$(body_from 127.0.0.2 '"$port"')" == "v2 "* ]]'
	run skiff service ps cweb
	[[ "$output" == *' \_ cweb.1'*'skiff-test/web:v1'* ]]
	run skiff service ps --format json cweb
	[ "$(jq -r '[.[] | select(.desired_state == "running")] | map(.image) | unique | join(",")' \
		<<<"$output")" = skiff-test/web:v2 ]
}

@test "service rollback goes back to the previous spec and waits" {
	port=$(skiff service inspect cweb | jq -r '.[0].spec.ports[0].published')
	run skiff service rollback cweb
	[ "$status" -eq 0 ]
	[[ "$output" == *"verify: Service converged"* ]]
	run skiff service inspect cweb
	[ "$(jq -r '.[0].spec.image' <<<"$output")" = skiff-test/web:v1 ]
	[ "$(jq -r '.[0].update_status.state' <<<"$output")" = rollback_completed ]
	wait_until 10 '[[ "$(body_from 127.0.0.3 '"$port"')" == "v1 "* ]]'
}

@test "service update changes only what its flags say (read-modify-write)" {
	run skiff service update -d --env-add COLOR=blue --label-add team=shop \
		--constraint-add 'node.name!=nowhere' cweb
	[ "$status" -eq 0 ]
	run skiff service inspect cweb
	[ "$(jq -r '.[0].spec.env | join(",")' <<<"$output")" = COLOR=blue ]
	[ "$(jq -r '.[0].spec.labels[0].key' <<<"$output")" = team ]
	[ "$(jq -r '.[0].spec.replicas' <<<"$output")" -eq 2 ]
	[ "$(jq -r '.[0].spec.health.http_path' <<<"$output")" = /health ]
	run skiff service update --env-rm COLOR --label-rm team --constraint-rm 'node.name!=nowhere' \
		cweb
	[ "$status" -eq 0 ]
	[[ "$output" == *"verify: Service converged"* ]]
	run skiff service inspect cweb
	[ "$(jq -r '.[0].spec.env | length' <<<"$output")" -eq 0 ]
	[ "$(jq -r '.[0].spec.labels | length' <<<"$output")" -eq 0 ]
	# the containers carry the service's labels
	run skiff service update --label-add tier=front cweb
	[ "$status" -eq 0 ]
	c=$(service_containers cweb | head -n1)
	[ "$(container_label "$c" tier)" = front ]
}

@test "service logs prints each line prefixed with its task" {
	run skiff service logs cweb
	[ "$status" -eq 0 ]
	[[ "$output" =~ cweb\.[0-9]+\.[0-9a-z]{12}\ +\|\ web\ v1\ listening ]]

	run skiff service logs --tail 1 cweb
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -ge 1 ]
	for l in "${lines[@]}"; do
		[[ "$l" =~ ^cweb\.[0-9]+\.[0-9a-z]{12}\ +\|\  ]]
	done

	# -f follows until interrupted
	out=$SKIFF_TEST_DIR/logs-follow.out
	skiff service logs -f cweb >"$out" 2>&1 &
	pid=$!
	wait_until 10 "grep -q 'listening' '$out'"
	kill -INT "$pid"
	wait "$pid" || true
	! _skiff_pid_alive "$pid"
}

@test "a task that fits nowhere is pending, with the reason, and create keeps waiting" {
	run skiff service create -d --name cpend --constraint node.labels.zone==mars skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 10 "skiff service ps cpend | grep -q 'Pending.*no suitable node'"
	run skiff service ps --format json --no-trunc cpend
	[[ "$(jq -r '.[0].message' <<<"$output")" == "no suitable node"*zone==mars* ]]

	# Ctrl-C stops the waiting, not the operation
	out=$SKIFF_TEST_DIR/scale.out
	skiff service scale cpend=2 >"$out" 2>&1 &
	pid=$!
	wait_until 10 "grep -q '2/2: pending (no suitable node' '$out'"
	kill -INT "$pid"
	rc=0
	wait "$pid" || rc=$?   # not `run wait`: its subshell is not the job's parent
	[ "$rc" -eq 130 ]
	grep -q 'the operation goes on in the background' "$out"
	run skiff service inspect cpend
	[ "$(jq -r '.[0].spec.replicas' <<<"$output")" -eq 2 ]
	skiff service rm cpend
}

@test "create of a service whose tasks keep failing ends with the task's error" {
	run timeout 60 skiff service create --name cfail skiff-test/exit:latest
	[ "$status" -eq 1 ]
	[[ "${lines[-1]}" == "skiff: task cfail.1 keeps failing: "*"(the controller keeps trying; see skiff service ps cfail)" ]]
	skiff service rm cfail
}

@test "an update that fails its health checks is rolled back, and says so" {
	port=$(free_port)
	run skiff service create --name chealth --replicas 2 -p "$port:8080" --health-http /health \
		--health-interval 300ms --health-retries 2 --update-failure-action rollback \
		--update-monitor 3s skiff-test/web:v1
	[ "$status" -eq 0 ]
	run timeout 120 skiff service update --image skiff-test/web:bad-health chealth
	[ "$status" -eq 1 ]
	[[ "${lines[-1]}" == "skiff: update rolled back: "* ]]
	run skiff service inspect chealth
	[ "$(jq -r '.[0].spec.image' <<<"$output")" = skiff-test/web:v1 ]
	[ "$(jq -r '.[0].update_status.state' <<<"$output")" = rollback_completed ]
	skiff service rm chealth
}

@test "create -d returns at once; rm removes the service and its containers" {
	run skiff service create -d --name cdet --replicas 2 skiff-test/web:v1
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "${lines[0]}" =~ ^[0-9a-z]+$ ]]
	wait_until 30 '[ "$(count_running cdet)" -eq 2 ]'
	run skiff service rm cdet
	[ "$status" -eq 0 ]
	[ "$output" = cdet ]
	wait_until 30 '[ "$(count_running cdet)" -eq 0 ]'
	run skiff service ps cdet
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: no such service: cdet" ]
}

@test "node update --availability drain moves the node's tasks away" {
	run skiff service create --name cdrain --replicas 3 skiff-test/web:v1
	[ "$status" -eq 0 ]
	n3=$(node_name 3)
	run skiff node update --availability drain "$n3"
	[ "$status" -eq 0 ]
	[ "$output" = "$n3" ]
	wait_until 30 '[ "$(running_on cdrain '"$n3"')" -eq 0 ]'
	[ "$(count_running cdrain)" -ge 3 ]
	run skiff node ls --format json
	[ "$(jq -r --arg n "$n3" '.[] | select(.name == $n) | .availability' <<<"$output")" = drain ]
	skiff node update --availability active "$n3"
	skiff service rm cdrain
}

@test "node update --label-add places constrained tasks; --label-rm moves them; bad labels refused" {
	n2=$(node_name 2)
	run skiff node update --label-add zone=edge --label-add tier=1 "$n2"
	[ "$status" -eq 0 ]
	[ "$output" = "$n2" ]
	run skiff node inspect "$n2"
	[ "$(jq -r '.[0].spec_labels | map(.key + "=" + .value) | sort | join(",")' <<<"$output")" = "tier=1,zone=edge" ]
	run skiff node ls --format json
	[ "$(jq -r --arg n "$n2" '.[] | select(.name == $n) | .spec_labels | length' <<<"$output")" -eq 2 ]
	run skiff service create --name cedge --replicas 2 --constraint node.labels.zone==edge skiff-test/web:v1
	[ "$status" -eq 0 ]
	[ "$(running_on cedge "$n2")" -eq 2 ]
	[ "$(per_node cedge)" = 2 ]
	# the label moves to node 3: so do the tasks
	n3=$(node_name 3)
	skiff node update --label-add zone=edge "$n3"
	run skiff node update --label-rm zone "$n2"
	[ "$status" -eq 0 ]
	wait_until 60 '[ "$(running_on cedge "$n3")" -eq 2 ] && [ "$(running_on cedge "$n2")" -eq 0 ]'
	wait_until 30 '[ "$(docker ps -q --filter "label=skiff.cluster=$CLUSTER_ID" --filter label=skiff.service=cedge --filter "label=skiff.node=$n2" | wc -l)" -eq 0 ]'
	[ "$(skiff node inspect "$n2" | jq -r '.[0].spec_labels | map(.key) | join(",")')" = tier ]

	# mistakes: one line naming it, a non-zero exit, nothing sent
	run skiff node update --label-add skiff.zone=x "$n2"
	[ "$status" -eq 2 ]
	one_line
	[ "$output" = "skiff: --label-add: skiff.zone: the skiff. prefix is reserved" ]
	run skiff node update --label-add =x "$n2"
	[ "$status" -eq 2 ]
	[ "$output" = "skiff: --label-add: empty key" ]
	run skiff node update --label-rm zone=edge "$n2"
	[ "$status" -eq 2 ]
	[ "$output" = 'skiff: invalid value for --label-rm: "zone=edge" (a key, without =VALUE)' ]
	run skiff node update "$n2"
	[ "$status" -eq 2 ]
	one_line
	# refused by the controller: a key the node does not have
	run skiff node update --label-rm nosuch "$n2"
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: node $n2 has no label nosuch" ]
	[ "$(skiff node inspect "$n2" | jq -r '.[0].spec_labels | length')" -eq 1 ]

	skiff service rm cedge
	skiff node update --label-rm tier "$n2"
	skiff node update --label-rm zone "$n3"
}

@test "mistakes: one line, a non-zero exit, nothing changed" {
	before=$(skiff service ls --format json | jq -c 'map(.spec.name) | sort')

	run skiff service ps nosuch
	[ "$status" -eq 1 ]
	one_line
	[ "$output" = "skiff: no such service: nosuch" ]

	run skiff service update --replicas 2 nosuch
	[ "$status" -eq 1 ]
	one_line

	run skiff service create --name cweb skiff-test/web:v1
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: service cweb already exists" ]

	run skiff service create --update-order sideways --name cbad skiff-test/web:v1
	[ "$status" -eq 2 ]
	[ "$output" = 'skiff: invalid value for --update-order: "sideways" (stop-first or start-first)' ]

	run skiff service create --bogus skiff-test/web:v1
	[ "$status" -eq 2 ]
	[ "$output" = "skiff: unknown flag: --bogus (see skiff service create --help)" ]

	run skiff service update --reserve-memory lots cweb
	[ "$status" -eq 2 ]
	one_line

	run skiff service scale cweb=many
	[ "$status" -eq 2 ]
	one_line

	run skiff node rm "$(node_name 1)"
	[ "$status" -eq 1 ]
	one_line
	[[ "$output" == *"is ready"* ]]

	tok=$SKIFF_TEST_DIR/wrong-token
	echo "SKIFF-1-$(cut -d- -f3 "$SKIFF_TOKEN_FILE")-0000000000000000000000000000000000000000000000000000000000000000" >"$tok"
	run skiff --token-file "$tok" service ls
	[ "$status" -eq 1 ]
	one_line
	[[ "$output" == "skiff: "*"(check --token-file, SKIFF_TOKEN_FILE or SKIFF_TOKEN)" ]]

	# A token of the old format says where the new one is.
	echo 0000000000000000000000000000000000000000000000000000000000000000 >"$tok"
	run skiff --token-file "$tok" service ls
	[ "$status" -eq 1 ]
	one_line
	[[ "$output" == *"old token"*"admin-token"* ]]

	run env SKIFF_TOKEN_FILE= SKIFF_TOKEN=nottherightone skiff service ls
	[ "$status" -eq 1 ]
	one_line

	run skiff --token-file /nonexistent/token service ls
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: cannot read token file /nonexistent/token: No such file or directory" ]

	port=$(free_port)
	run skiff --host "127.0.0.1:$port" service ls
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: cannot connect to the controller at 127.0.0.1:$port: connection refused (is skiff-controller running?)" ]

	run env SKIFF_HOST=127.0.0.1:$port skiff node ls
	[ "$status" -eq 1 ]
	one_line

	run skiff --host nowhere service ls
	[ "$status" -eq 2 ]
	one_line

	[ "$(skiff service ls --format json | jq -c 'map(.spec.name) | sort')" = "$before" ]
}

@test "skiff-controller: a bad flag is one line naming it, exit 2, and no data dir is made" {
	local dir=$BATS_TEST_TMPDIR/ctl-bad-flags
	for args in "--listen nope" "--listen 127.0.0.1" "--listen 127.0.0.1:99999" \
		"--heartbeat-timeout 5" "--max-frame 10" "--max-connections 0" "--log-level loud" \
		"--rotate-token other"; do
		run skiff-controller --data-dir "$dir" $args
		echo "$args: $output"
		[ "$status" -eq 2 ]
		[ "${#lines[@]}" -eq 1 ]
		[[ "$output" == *"${args%% *}"* ]]
		[ ! -e "$dir" ]
	done
	run skiff-controller --frobnicate
	[ "$status" -eq 2 ]
}

@test "help for every command, on stdout, exit 0" {
	for cmd in "" "node" "service" "stack" "cluster" "cluster ca" "cluster client-cert" \
		"node ls" "node inspect" "node update" "node rm" \
		"service create" "service update" "service scale" "service ls" "service ps" \
		"service inspect" "service rollback" "service rm" "service logs" \
		"stack deploy" "stack ls" "stack services" "stack ps" "stack rm"; do
		# shellcheck disable=SC2086
		run skiff $cmd --help
		[ "$status" -eq 0 ]
		[[ "${lines[0]}" == "Usage:  skiff"* ]]
	done
	run skiff service create --help
	[[ "$output" == *"--update-failure-action ACTION"* ]]
	[[ "$output" == *"--drain-delay DURATION"* ]]
}
