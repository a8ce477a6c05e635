#!/usr/bin/env bats
# Autoscaling and rebalancing (issue 16), against the real engine: a service
# scaled by the balancers' own load, out under several hundred requests/s and
# back in after the cooldown, with 0 failed requests both ways; the decision
# in `service inspect`, `service ls` and `skiff events`; a manual scale within
# the range and refused outside it; bad flags refused with nothing stored;
# and a node that comes back getting its share of the tasks again (2/2/2)
# within 60 s, under load, with 0 failed requests.
#
# One cluster per test: a controller and three agents on 127.0.0.2-4.

load helpers

setup() {
	cluster_start 3
}

teardown() {
	skiff_teardown
}

# running SERVICE: tasks desired and observed running.
running() {
	skiff service ps --format json "$1" |
		jq '[.[] | select(.desired_state == "running" and .state == "running")] | length'
}

# per_node SERVICE: the running containers per node, as "n1:2 n2:2 n3:2".
per_node() {
	local i out=""
	for ((i = 1; i <= SKIFF_AGENTS; i++)); do
		out+="$(node_name "$i"):$(docker ps -q --filter "label=skiff.cluster=$CLUSTER_ID" \
			--filter "label=skiff.service=$1" --filter "label=skiff.node=$(node_name "$i")" \
			--filter status=running | wc -l) "
	done
	echo "${out% }"
}

@test "load through the balancers scales a service out and, after the cooldown, back in" {
	local port out
	port=$(free_port)
	skiff service create --name as-web --replicas 1 -p "$port:8080" --health-http / \
		--health-interval 500ms --update-order start-first \
		--autoscale-min 1 --autoscale-max 4 --autoscale-target-rps 50 \
		--autoscale-cooldown-down 20s skiff-test/web:v1 >/dev/null
	skiff service ls | grep -E 'as-web +replicated +1/1 \(auto 1-4\)'
	wait_until 30 http_get "http://127.0.0.2:$port/"
	# several hundred requests/s, a new connection each, through every node
	loadgen_start --url "http://127.0.0.2:$port/" --url "http://127.0.0.3:$port/" \
		--url "http://127.0.0.4:$port/" --concurrency 4 --interval 10ms
	wait_until 60 "[ \"\$(running as-web)\" -ge 3 ]"
	[ "$(count_running as-web)" -ge 3 ]
	sleep 3
	run loadgen_stop
	echo "$output"
	[ "$status" -eq 0 ] # 0 failed requests during the scale-out
	[ "$(jq .requests <<<"$output")" -gt 1000 ]
	# the decision, with the figures behind it
	out=$(skiff service inspect as-web)
	jq -e '.[0].spec.autoscale | .min == 1 and .max == 4 and .target_rps == 50' <<<"$out"
	jq -e '.[0].autoscale_status | .from >= 1 and .to >= 3 and (.reason | test("conn/s"))' <<<"$out"
	skiff events --since 2m --until 0s --format json --filter service=as-web |
		jq -se 'map(select(.action == "autoscale")) | length >= 1 and
			all(.[]; (.attributes | from_entries | .connections_per_second | tonumber) > 0)'
	# no load: back to 1 after the 20 s cooldown, no request failing meanwhile
	LOADGEN=quiet loadgen_start --url "http://127.0.0.2:$port/" --concurrency 1 --interval 500ms
	wait_until 90 "[ \"\$(running as-web)\" -eq 1 ]"
	sleep 3
	LOADGEN=quiet run loadgen_stop
	echo "$output"
	[ "$status" -eq 0 ]
	wait_until 30 "[ \"\$(count_running as-web)\" -eq 1 ]"
	skiff service ls | grep -E 'as-web +replicated +1/1 \(auto 1-4\)'
}

@test "a manual scale of an autoscaled service stays within the range" {
	skiff service create -d --name as-man --replicas 2 --autoscale-min 2 --autoscale-max 5 \
		--autoscale-target-cpu 80 skiff-test/web:v1 >/dev/null
	run skiff service scale as-man=4
	[ "$status" -eq 0 ]
	[[ "$output" == *"as-man scaled to 4 (autoscaled between 2 and 5"* ]]
	wait_until 30 "[ \"\$(count_running as-man)\" -eq 4 ]"
	run skiff service scale as-man=9
	[ "$status" -ne 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *"replicas: 9 is outside the autoscale range 2-5 of as-man"* ]]
	[ "$(skiff service inspect as-man | jq '.[0].spec.replicas')" -eq 4 ]
	# the policy goes with --no-autoscale; replicas are the user's again
	skiff service update -d --no-autoscale as-man >/dev/null
	skiff service inspect as-man | jq -e '.[0].spec.autoscale == null'
	skiff service scale -d as-man=9 >/dev/null
}

@test "bad autoscaling flags are one line naming the flag, and store nothing" {
	run skiff service create --name as-bad --autoscale-min 5 --autoscale-max 2 \
		--autoscale-target-rps 10 skiff-test/web:v1
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *'--autoscale-min: "5" (more than --autoscale-max 2)'* ]]
	run skiff service create --name as-bad --autoscale-min 1 --autoscale-max 3 \
		--autoscale-target-cpu -5 skiff-test/web:v1
	[ "$status" -eq 2 ]
	[[ "$output" == *'invalid value for --autoscale-target-cpu: "-5"'* ]]
	run skiff service create --name as-bad --autoscale-target-rps 10 skiff-test/web:v1
	[ "$status" -eq 2 ]
	[[ "$output" == *"--autoscale-min and --autoscale-max are both needed"* ]]
	run skiff service create --name as-bad --autoscale-min 1 --autoscale-max 3 skiff-test/web:v1
	[ "$status" -eq 2 ]
	[[ "$output" == *"autoscaling needs a target"* ]]
	run skiff service create --name as-bad --replicas 7 --autoscale-min 1 --autoscale-max 3 \
		--autoscale-target-rps 10 skiff-test/web:v1
	[ "$status" -eq 2 ]
	[[ "$output" == *'--replicas: "7" (outside the autoscale range 1-3)'* ]]
	run skiff service inspect as-bad
	[ "$status" -ne 0 ]
	# a Compose file says the same, with the line
	cat >"$SKIFF_TEST_DIR/bad.yml" <<-EOF
		services:
		  web:
		    image: skiff-test/web:v1
		    deploy:
		      x-skiff-autoscale: { min: 4, max: 2, target_rps: 10 }
	EOF
	run skiff stack deploy -c "$SKIFF_TEST_DIR/bad.yml" asbad
	[ "$status" -ne 0 ]
	[[ "$output" == *"x-skiff-autoscale"*"min (4) is more than max (2)"* ]]
	run skiff service inspect asbad_web
	[ "$status" -ne 0 ]
}

@test "a node that comes back gets its share again, with 0 failed requests" {
	local port
	port=$(free_port)
	skiff service create --name rb-web --replicas 6 -p "$port:8080" --health-http / \
		--health-interval 500ms skiff-test/web:v1 >/dev/null
	wait_until 30 "[ \"\$(per_node rb-web)\" = \"$(node_name 1):2 $(node_name 2):2 $(node_name 3):2\" ]"
	loadgen_start --url "http://127.0.0.2:$port/" --url "http://127.0.0.3:$port/" \
		--concurrency 2 --interval 20ms
	agent_kill 3
	# its tasks move to the other two
	wait_until 60 "[ \"\$(per_node rb-web | cut -d' ' -f1-2)\" = \"$(node_name 1):3 $(node_name 2):3\" ]"
	# its containers are gone once it is back; its share comes back to it
	agent_start 3
	local t0=$SECONDS
	wait_until 90 "[ \"\$(per_node rb-web)\" = \"$(node_name 1):2 $(node_name 2):2 $(node_name 3):2\" ]"
	echo "spread restored $((SECONDS - t0)) s after the node came back"
	[ $((SECONDS - t0)) -le 60 ]
	[ "$(running rb-web)" -eq 6 ]
	sleep 2
	run loadgen_stop
	echo "$output"
	[ "$status" -eq 0 ]
	# each move is an event, and counted
	[ "$(skiff events --since 3m --until 0s --format json --filter service=rb-web |
		jq -s 'map(select(.action == "move")) | length')" -ge 2 ]
}

# placed_on SERVICE I: its tasks desired running on node I.
placed_on() {
	skiff service ps --format json "$1" |
		jq --arg n "$(node_name "$2")" '[.[] | select(.desired_state == "running" and .node_name == $n)] | length'
}

@test "--no-rebalance keeps a service's tasks where they are" {
	skiff service create --name rb-stay --replicas 4 --no-rebalance skiff-test/web:v1 >/dev/null
	skiff service inspect rb-stay | jq -e '.[0].spec.no_rebalance == true'
	agent_kill 3
	# replaced on the other two; the returning agent removes what it ran
	wait_until 60 '[ "$(running rb-stay)" -eq 4 ] && [ "$(placed_on rb-stay 3)" -eq 0 ]'
	agent_start 3
	wait_nodes_ready 3 30
	wait_until 30 "[ \"\$(per_node rb-stay | cut -d' ' -f3)\" = \"$(node_name 3):0\" ]"
	sleep 40 # past the rebalance delay (30 s)
	[ "$(placed_on rb-stay 3)" -eq 0 ]
	[ "$(per_node rb-stay | cut -d' ' -f3)" = "$(node_name 3):0" ]
	run skiff-controller --rebalance sometimes
	[ "$status" -eq 2 ]
	[[ "$output" == *'--rebalance: "sometimes" (on or off)'* ]]
}
