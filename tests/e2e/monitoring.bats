#!/usr/bin/env bats
# Monitoring (issue 15), against the real engine and a real Prometheus
# (Debian's prometheus, started here on a loopback port, scraping the
# controller's and every agent's /metrics each second): the replica counts
# Prometheus sees follow a scale, the balancer's connection counter grows by
# the requests sent through it, promtool accepts both pages; `skiff events`
# tells a create, a scale, a docker kill and a node loss with the right
# fields, a reader that does not read is bounded and told what it lost;
# `skiff service stats` shows the running tasks' figures; bad flags are one
# line and exit 2.
#
# One cluster for the file: a controller and three agents, each with
# --metrics-listen on its own address (@ADDR@) and one free port.

load helpers

setup_file() {
	export METRICS_PORT CONTROLLER_METRICS_PORT PROM_PORT
	read -r METRICS_PORT CONTROLLER_METRICS_PORT PROM_PORT < <(free_ports 3)
	SKIFF_AGENT_FLAGS="--metrics-listen @ADDR@:$METRICS_PORT" \
		cluster_start 3 --metrics-listen "127.0.0.1:$CONTROLLER_METRICS_PORT" --event-buffer 500
	prometheus_start
}

teardown_file() {
	prometheus_stop
	skiff_teardown_file
}

teardown() {
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		dump_logs
		[ -f "$SKIFF_TEST_DIR/prometheus.log" ] && tail -n 20 "$SKIFF_TEST_DIR/prometheus.log"
	fi
	true
}

# ------------------------------------------------------------ prometheus

prometheus_start() {
	local d=$SKIFF_TEST_DIR/prometheus i targets=""
	mkdir -p "$d/data"
	for ((i = 1; i <= SKIFF_AGENTS; i++)); do
		targets+="'$(agent_addr "$i"):$METRICS_PORT', "
	done
	cat >"$d/prometheus.yml" <<-EOF
		global:
		  scrape_interval: 1s
		  scrape_timeout: 900ms
		scrape_configs:
		  - job_name: skiff-controller
		    static_configs:
		      - targets: ['127.0.0.1:$CONTROLLER_METRICS_PORT']
		  - job_name: skiff-agent
		    static_configs:
		      - targets: [${targets%, }]
	EOF
	prometheus --config.file="$d/prometheus.yml" --storage.tsdb.path="$d/data" \
		--web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn \
		</dev/null >"$SKIFF_TEST_DIR/prometheus.log" 2>&1 3>&- &
	echo $! >"$SKIFF_TEST_DIR/pids/prometheus"
	disown $! 2>/dev/null || true
	wait_until 60 curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready"
}

prometheus_stop() {
	local pid
	pid=$(cat "$SKIFF_TEST_DIR/pids/prometheus" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null || true
	_skiff_wait_gone "$pid" 20 || kill -s KILL "$pid" 2>/dev/null || true
}

# promql QUERY: the value of the query's first sample, or nothing.
promql() {
	curl -fsS --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
		jq -r '.data.result[0].value[1] // empty'
}

# ------------------------------------------------------------ the tests

@test "Prometheus sees skiff_service_replicas_running follow a scale" {
	skiff service create --name prom-web --replicas 3 -p "$(free_port):8080" \
		skiff-test/web:v1 >/dev/null
	wait_until 60 "[ \"\$(promql 'skiff_service_replicas_running{service=\"prom-web\"}')\" = 3 ]"
	[ "$(promql 'skiff_service_replicas_desired{service="prom-web"}')" = 3 ]
	[ "$(promql 'sum(skiff_nodes{state="ready"})')" = 3 ]
	skiff service scale prom-web=5 >/dev/null
	[ "$(count_running prom-web)" -eq 5 ]
	wait_until 30 "[ \"\$(promql 'skiff_service_replicas_running{service=\"prom-web\"}')\" = 5 ]"
	[ "$(promql 'skiff_tasks{service="prom-web",state="running"}')" = 5 ]
	# every target is up
	[ "$(promql 'sum(up)')" = 4 ]
}

@test "skiff_lb_connections_total grows by the requests sent through a balancer" {
	local port before after i
	port=$(free_port)
	skiff service create --name prom-lb --replicas 2 -p "$port:8080" skiff-test/web:v1 >/dev/null
	wait_until 30 http_get "http://127.0.0.2:$port/"
	query='sum(skiff_lb_connections_total{service="prom-lb"})'
	wait_until 30 "[ -n \"\$(promql '$query')\" ]"
	sleep 2 # a scrape after the first request
	before=$(promql "$query")
	for ((i = 0; i < 60; i++)); do
		http_get "http://127.0.0.$((i % 3 + 2)):$port/" >/dev/null
	done
	wait_until 30 "[ \"\$(promql '$query')\" -ge $((before + 60)) ]"
	after=$(promql "$query")
	echo "before $before after $after"
	[ "$after" -ge $((before + 60)) ]
	# the containers' figures come from the engine's stats streams
	wait_until 30 "[ -n \"\$(promql 'sum(skiff_container_memory_bytes{service=\"prom-lb\"})')\" ]"
	[ "$(promql 'count(skiff_container_cpu_seconds_total{service="prom-lb"})')" = 2 ]
}

@test "promtool check metrics accepts the controller's and the agents' pages" {
	run bash -c "curl -fsS http://127.0.0.1:$CONTROLLER_METRICS_PORT/metrics | promtool check metrics"
	echo "$output"
	[ "$status" -eq 0 ]
	run bash -c "curl -fsS http://127.0.0.2:$METRICS_PORT/metrics | promtool check metrics"
	echo "$output"
	[ "$status" -eq 0 ]
	curl -fsS "http://127.0.0.1:$CONTROLLER_METRICS_PORT/metrics" |
		grep -q '^skiff_store_commit_seconds_bucket{le="+Inf"}'
	curl -fsS "http://127.0.0.1:$CONTROLLER_METRICS_PORT/metrics" | grep -q '^process_open_fds '
	curl -fsS "http://127.0.0.2:$METRICS_PORT/metrics" | grep -q '^skiff_engine_requests_total{op="create",code="201"}'
	# only /metrics, only GET
	[ "$(http_status "http://127.0.0.1:$CONTROLLER_METRICS_PORT/other")" = 404 ]
	[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$CONTROLLER_METRICS_PORT/metrics")" = 405 ]
}

# has_event FILTER [skiff events flags...]: some event since the test began
# passes the jq FILTER (jq -s, since jq 1.6's -e succeeds on no input).
has_event() {
	local filter=$1
	shift
	skiff events --since "$T0" --until 0s --format json "$@" |
		jq -se "any(.[]; $filter)" >/dev/null
}

@test "skiff events tells a create, a scale, a docker kill and a node loss" {
	local out victim
	export T0
	T0=$(date +%s)
	skiff service create --name ev-web --replicas 2 skiff-test/web:v1 >/dev/null
	skiff service scale ev-web=3 >/dev/null
	victim=$(service_containers ev-web | head -n1)
	docker kill "$victim" >/dev/null
	wait_until 30 has_event '.type == "task" and .action == "running" and
		(.attributes | from_entries | .restarts) == "1"' --filter service=ev-web
	agent_kill 3
	wait_until 30 has_event ".action == \"down\" and .name == \"$(node_name 3)\"" --filter type=node
	out=$(skiff events --since 1m --until 0s --format json)
	# the create, with its figures
	jq -se 'map(select(.type == "service" and .action == "create" and .name == "ev-web" and
		(.attributes | from_entries | .replicas == "2" and .image == "skiff-test/web:v1"))) |
		length == 1' <<<"$out"
	# the scale, from and to
	jq -se 'map(select(.type == "service" and .action == "scale" and .name == "ev-web" and
		(.attributes | from_entries | .from == "2" and .to == "3"))) | length == 1' <<<"$out"
	# three tasks that ran, each on a node, each named SERVICE.SLOT
	jq -se '[.[] | select(.type == "task" and .action == "running" and .service == "ev-web" and
		.node != "" and (.name | test("^ev-web\\.[0-9]+$")))] | length >= 3' <<<"$out"
	# the kill: the container that died, restarted by its agent
	jq -se 'map(select(.type == "task" and .service == "ev-web" and
		(.attributes | from_entries | .restarts == "1"))) | length >= 1' <<<"$out"
	# the node loss
	jq -se --arg n "$(node_name 3)" 'map(select(.type == "node" and .action == "down" and
		.name == $n and .node == $n and (.attributes | from_entries | .silent_ms | tonumber) > 0)) |
		length == 1' <<<"$out"
	# every event has a time and a seq, and the seqs grow
	jq -se 'all(.[]; .time_ms > 0 and .seq > 0 and (.time | test("Z$")))' <<<"$out"
	jq -se '[.[].seq] == ([.[].seq] | sort)' <<<"$out"
	# the human line, and filters
	skiff events --since 1m --until 0s --filter type=service --filter service=ev-web |
		grep -E '^[0-9-]+T[0-9:.]+Z service scale ev-web \(from=2, to=3\)'
	[ "$(skiff events --since 1m --until 0s --filter type=node | grep -c ' task ' || true)" -eq 0 ]
	agent_start 3
	wait_nodes_ready 3 30
	wait_until 30 has_event ".action == \"up\" and .name == \"$(node_name 3)\"" --filter type=node
}

@test "a reader that does not read is bounded and told what it lost" {
	local metrics unsent out i
	# a reader with a small receive buffer that reads nothing for 40 s
	python3 "$SKIFF_REPO/tests/tools/slow_events_reader.py" "$SKIFF_HOST" "$SKIFF_TOKEN_FILE" \
		40 10 >"$SKIFF_TEST_DIR/slow.out" 2>&1 &
	local reader=$!
	wait_until 10 "curl -fsS http://127.0.0.1:$CONTROLLER_METRICS_PORT/metrics |
		grep -q '^skiff_events_readers [1-9]'"
	# thousands of events at little cost: tasks that fit no node come and go
	skiff service create -d --name ev-churn --replicas 0 --constraint node.labels.nowhere==1 \
		skiff-test/web:v1 >/dev/null
	for ((i = 0; i < 20; i++)); do
		skiff service scale -d ev-churn=300 >/dev/null
		skiff service scale -d ev-churn=0 >/dev/null
		sleep 0.2
	done
	# (the controller's RSS says nothing here: the sanitizers' quarantine
	# keeps freed memory; the queue the reader left is what is bounded)
	metrics=$(curl -fsS "http://127.0.0.1:$CONTROLLER_METRICS_PORT/metrics")
	unsent=$(awk '/^skiff_events_reader_unsent_bytes / {print $2}' <<<"$metrics")
	echo "unsent to the reader that does not read: $unsent bytes"
	# the ring keeps what --event-buffer says; a reader holds at most its
	# budget (64 KiB) and one event, and it is that far behind
	[ "$(awk '/^skiff_events_buffered / {print $2}' <<<"$metrics")" -le 500 ]
	[ "$unsent" -gt 16384 ]
	[ "$unsent" -le $((65536 + 4096)) ]
	wait "$reader"
	out=$(cat "$SKIFF_TEST_DIR/slow.out")
	echo "$out"
	# it got some, then was told how many it lost
	[ "$(awk '/^events/ {print $2}' <<<"$out")" -gt 0 ]
	[ "$(awk '/^dropped/ {print $2}' <<<"$out")" -gt 0 ]
	skiff service rm ev-churn >/dev/null
}

@test "skiff service stats shows the running tasks' figures" {
	local port out
	port=$(free_port)
	skiff service create --name st-web --replicas 2 -p "$port:8080" skiff-test/web:v1 >/dev/null
	wait_until 30 "[ \"\$(skiff service stats --no-stream --format json st-web |
		jq '[.[] | select(.time_ms > 0)] | length')\" -eq 2 ]"
	out=$(skiff service stats --no-stream --format json st-web)
	jq -e 'length == 2 and all(.[]; .service_name == "st-web" and .memory_bytes > 0 and
		.memory_limit > 0 and (.task_name | test("^st-web\\.[12]$")))' <<<"$out"
	skiff service stats --no-stream st-web | head -n1 |
		grep -q 'TASK ID *NAME *NODE *CPU % *MEM USAGE / LIMIT *MEM % *NET I/O *CONN/S *ACTIVE'
	[ "$(skiff service stats --no-stream st-web | grep -c 'st-web\.')" -eq 2 ]
	# a stream, ended by SIGINT like Ctrl-C
	timeout -s INT 3 skiff service stats --format json st-web >"$SKIFF_TEST_DIR/stats.out" || true
	[ "$(grep -c . "$SKIFF_TEST_DIR/stats.out")" -ge 2 ]
	run skiff service stats --no-stream no-such-service
	[ "$status" -eq 1 ]
	[[ "$output" == *"no such service: no-such-service"* ]]
}

@test "bad monitoring flags are one line, exit 2, and start nothing" {
	run skiff-controller --metrics-listen nope --data-dir "$SKIFF_TEST_DIR/never"
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *'--metrics-listen: "nope"'* ]]
	[ ! -e "$SKIFF_TEST_DIR/never" ]
	run skiff-agent --metrics-listen 127.0.0.1 --join-token-file "$SKIFF_JOIN_TOKEN_FILE"
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *"--metrics-listen: '127.0.0.1' is not an IP address and port"* ]]
	run skiff events --filter type=bogus
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *'invalid filter: "type=bogus"'* ]]
	run skiff events --filter colour=blue
	[ "$status" -eq 2 ]
	[[ "$output" == *'invalid filter: "colour=blue" (type, service or node)'* ]]
	run skiff events --since yesterday
	[ "$status" -eq 2 ]
	[[ "$output" == *'invalid value for --since: "yesterday"'* ]]
	run skiff events --since 1m --until 2m
	[ "$status" -eq 2 ]
	[[ "$output" == *'--until: before --since'* ]]
	# a port in use: the controller says so and stops
	run skiff-controller --listen "127.0.0.1:$(free_port)" --data-dir "$SKIFF_TEST_DIR/busy" \
		--metrics-listen "127.0.0.1:$CONTROLLER_METRICS_PORT"
	[ "$status" -ne 0 ]
	[[ "$output" == *"address already in use"* ]]
}
