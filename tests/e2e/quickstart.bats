#!/usr/bin/env bats
# deploy/quickstart.sh, as a new user runs it, on the real engine: it builds
# the shop's images, starts its registry and a cluster of three nodes, and
# deploys the shop; the API answers through every node's balancer, a cart
# stays in Redis whichever replica answers, running the quickstart again
# makes no second cluster, the API rolls from v1 to v2 through the registry
# under load without a failed request, a lost Redis fails the carts but not
# the products, and `down` leaves nothing behind.
#
# The quickstart gets a folder, ports, a registry address and a stack name
# of its own (its settings come from the environment), so that it never
# meets a quickstart of the machine's user or another test. The tests run in
# order and share the one quickstart; the last one takes it down
# (teardown_file too, whatever happened).

load helpers

QUICKSTART=$SKIFF_REPO/deploy/quickstart.sh

setup_file() {
	local ports
	[ "$(id -u)" = 0 ] || skip "the quickstart needs root (apt, dockerd)"
	ports=$(free_ports 7) || return 1
	read -r CTL_PORT API_PORT REG_PORT PG_PORT REDIS_PORT MONGO_PORT DASH_PORT <<<"$ports"
	export SKIFF_QUICKSTART_DASHBOARD=127.0.0.1:$DASH_PORT
	export SKIFF_QUICKSTART_DIR=$BATS_FILE_TMPDIR/quickstart
	export SKIFF_QUICKSTART_CONTROLLER=127.0.0.1:$CTL_PORT
	export SKIFF_QUICKSTART_REGISTRY=127.0.0.1:$REG_PORT
	SKIFF_QUICKSTART_STACK=qs$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	export SKIFF_QUICKSTART_STACK
	export SKIFF_QUICKSTART_BIN=$SKIFF_BIN
	export SKIFF_QUICKSTART_NODES="127.0.0.2 127.0.0.3 127.0.0.4"
	export SHOP_API_PORT=$API_PORT SHOP_POSTGRES_PORT=$PG_PORT SHOP_REDIS_PORT=$REDIS_PORT
	export SHOP_MONGO_PORT=$MONGO_PORT
	export STACK=$SKIFF_QUICKSTART_STACK REG=$SKIFF_QUICKSTART_REGISTRY
	export QS_LOG=$BATS_FILE_TMPDIR/quickstart.out
	# What `skiff` talks to, as env.sh sets it.
	export SKIFF_HOST=$SKIFF_QUICKSTART_CONTROLLER
	export SKIFF_TOKEN_FILE=$SKIFF_QUICKSTART_DIR/data/admin-token
}

teardown_file() {
	[ -n "${SKIFF_QUICKSTART_DIR:-}" ] || return 0
	"$QUICKSTART" down >/dev/null 2>&1 || true
}

teardown() {
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		quickstart_logs
		[ -n "${LOADGEN_LAST_OUT:-}" ] && [ -e "$LOADGEN_LAST_OUT" ] &&
			echo "loadgen summary: $(cat "$LOADGEN_LAST_OUT")"
	fi
	return 0
}

# quickstart_logs: for a failed test, the quickstart's output, the tail of
# every log in its folder and the stack's tasks.
quickstart_logs() {
	local f
	[ -e "$QS_LOG" ] && { echo "----- quickstart output -----"; tail -n 60 "$QS_LOG"; }
	for f in "$SKIFF_QUICKSTART_DIR"/logs/*.log "$SKIFF_QUICKSTART_DIR"/registry/registry.log; do
		[ -e "$f" ] || continue
		echo "----- $(basename "$f") (last 40 lines) -----"
		tail -n 40 "$f"
	done
	if [ -s "$SKIFF_TOKEN_FILE" ]; then
		echo "----- skiff stack ps $STACK -----"
		timeout 10 skiff stack ps "$STACK" 2>&1 || true
	fi
}

need_up() {
	[ -s "$SKIFF_QUICKSTART_DIR/data/cluster-id" ] || skip "the quickstart did not come up"
}

# refute CMD...: fails if CMD succeeds (bats ignores a plain `! cmd`).
refute() {
	! "$@" >/dev/null 2>&1
}

node_addrs() {
	echo "$SKIFF_QUICKSTART_NODES"
}

# header NAME: the value of header NAME in the headers on stdin.
header() {
	tr -d '\r' | awk -v h="$(echo "$1" | tr 'A-Z' 'a-z')" -F': ' 'tolower($1) == h { print $2 }'
}

@test "quickstart.sh builds, starts a registry and three nodes, and deploys the shop" {
	run "$QUICKSTART"
	echo "$output" >"$QS_LOG"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Try:"* ]]
	[[ "$output" == *". $SKIFF_QUICKSTART_DIR/env.sh"* ]]

	# Three ready nodes; node-1 carries the databases' label.
	run skiff node ls --format json
	[ "$status" -eq 0 ]
	[ "$(jq '[.[] | select(.state == "ready")] | length' <<<"$output")" -eq 3 ]
	run skiff node inspect node-1
	[ "$(jq -r '.[0].labels[] | select(.key == "db") | .value' <<<"$output")" = true ]
	# The database is placed by its constraint, on node-1, with the named volume.
	run skiff service ps "${STACK}_postgres" --format json
	[ "$(jq -r '[.[] | select(.desired_state == "running")][0].node_name' <<<"$output")" = node-1 ]
	docker volume inspect "${STACK}_pgdata" >/dev/null
	# The registry runs, and holds the shop's images.
	run curl -fsS "http://$REG/v2/_catalog"
	[ "$status" -eq 0 ]
	[[ "$output" == *shop-api*shop-postgres*shop-redis* ]]
	# env.sh drives the cluster.
	run bash -c ". '$SKIFF_QUICKSTART_DIR/env.sh' && SKIFF_TOKEN= skiff stack services $STACK"
	[ "$status" -eq 0 ]
	[[ "$output" == *"${STACK}_api"* ]]
}

@test "the API answers through every node's balancer, from images pulled from the registry" {
	need_up
	local addr body
	for addr in $(node_addrs); do
		body=$(http_get "http://$addr:$SHOP_API_PORT/products")
		[ "$(jq '.products | length' <<<"$body")" -eq 5 ]
		[ "$(jq -r .version <<<"$body")" = v1 ]
		[ "$(jq -r '.products[] | select(.sku == "mug") | .price_cents' <<<"$body")" = 1200 ]
		[[ "$(http_get "http://$addr:$SHOP_API_PORT/version")" == "v1 "* ]]
		run curl -sS -D - -o /dev/null --max-time 5 "http://$addr:$SHOP_API_PORT/health"
		[[ "$output" == "HTTP/1.1 200"* ]]
		[ "$(header X-Shop-Version <<<"$output")" = v1 ]
	done
	# The databases are no node's published port: only the gateway's balancer has them.
	for addr in $(node_addrs); do
		refute port_open "$addr" "$SHOP_POSTGRES_PORT"
		refute port_open "$addr" "$SHOP_REDIS_PORT"
	done
	# The registry's names were untagged after the push: these are the agents' pulls.
	docker image inspect "$REG/shop-api:v1" "$REG/shop-postgres:15" "$REG/shop-redis:7" >/dev/null
	grep -q "pulling $REG/shop-api:v1" "$SKIFF_QUICKSTART_DIR"/logs/agent-*.log
	# Mongo is declared, with no replica (no mongo:7 here).
	run skiff service inspect "${STACK}_mongo"
	[ "$status" -eq 0 ]
	[ "$(jq -r '.[0].spec.replicas // 0' <<<"$output")" = 0 ]
}

@test "a cart is kept in Redis across requests that different replicas answer" {
	need_up
	local cart addr headers hosts=() n=0 body
	cart=c$RANDOM$RANDOM
	for addr in $(node_addrs) $(node_addrs); do
		headers=$(curl -sS -D - -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' \
			-d '{"sku": "mug", "quantity": 1}' "http://$addr:$SHOP_API_PORT/cart/$cart/items")
		[[ "$headers" == "HTTP/1.1 200"* ]]
		hosts+=("$(header X-Shop-Host <<<"$headers")")
		n=$((n + 1))
	done
	echo "answered by: ${hosts[*]}"
	[ "$(printf '%s\n' "${hosts[@]}" | sort -u | wc -l)" -ge 2 ]
	for addr in $(node_addrs); do
		body=$(http_get "http://$addr:$SHOP_API_PORT/cart/$cart")
		[ "$(jq '.items[] | select(.sku == "mug") | .quantity' <<<"$body")" -eq "$n" ]
		[ "$(jq .total_cents <<<"$body")" -eq $((n * 1200)) ]
	done
	# An unknown product is refused, and the cart stays as it was.
	[ "$(http_status "http://127.0.0.2:$SHOP_API_PORT/products/nope")" = 404 ]
	run curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"sku": "nope"}' \
		"http://127.0.0.3:$SHOP_API_PORT/cart/$cart/items"
	[ "$output" = 404 ]
	[ "$(http_get "http://127.0.0.4:$SHOP_API_PORT/cart/$cart" | jq '.items | length')" -eq 1 ]
}

@test "quickstart.sh prints the dashboard's URL and how to log in; it serves the page and the API" {
	grep -q "The dashboard: http://$SKIFF_QUICKSTART_DASHBOARD/" "$QS_LOG"
	grep -q "cat $SKIFF_QUICKSTART_DIR/data/admin-token" "$QS_LOG"
	curl -fsS --noproxy '*' "http://$SKIFF_QUICKSTART_DASHBOARD/" | grep -q '<title>skiff</title>'
	curl -fsS --noproxy '*' -H "Authorization: Bearer $(cat "$SKIFF_TOKEN_FILE")" \
		"http://$SKIFF_QUICKSTART_DASHBOARD/api/v1/services" | jq -e --arg s "${STACK}_api" 'any(.spec.name == $s)'
}

@test "running quickstart.sh again starts no second cluster" {
	need_up
	local ctl cluster
	ctl=$(cat "$SKIFF_QUICKSTART_DIR/pids/controller")
	cluster=$(cat "$SKIFF_QUICKSTART_DIR/data/cluster-id")
	run "$QUICKSTART"
	echo "$output" >>"$QS_LOG"
	[ "$status" -eq 0 ]
	[[ "$output" == *"controller runs (pid $ctl)"* ]]
	[[ "$output" == *"already deployed"* ]]
	[ "$(cat "$SKIFF_QUICKSTART_DIR/pids/controller")" = "$ctl" ]
	[ "$(cat "$SKIFF_QUICKSTART_DIR/data/cluster-id")" = "$cluster" ]
	[ "$(pgrep -f -c -- "--controller $SKIFF_QUICKSTART_CONTROLLER ")" -eq 3 ]
	[ "$(pgrep -f -c -- "--listen $SKIFF_QUICKSTART_CONTROLLER ")" -eq 1 ]
	[ "$(skiff node ls -q | wc -l)" -eq 3 ]
	[ "$(count_running "${STACK}_api" "$cluster")" -eq 3 ]
}

@test "the API rolls from v1 to v2 through the registry under load, failing no request" {
	need_up
	local urls=() addr round body
	for addr in $(node_addrs); do
		urls+=(--url "http://$addr:$SHOP_API_PORT/version")
	done
	refute docker image inspect "$REG/shop-api:v2" # not here before the update

	LOADGEN=new loadgen_start "${urls[@]}" --concurrency 2 --interval 10ms --new-connection
	LOADGEN=keep loadgen_start "${urls[@]}" --concurrency 2 --interval 10ms --keepalive
	sleep 1
	run skiff service update --image "$REG/shop-api:v2" "${STACK}_api"
	echo "$output"
	[ "$status" -eq 0 ]
	sleep 1
	LOADGEN=new run loadgen_stop
	echo "new connection per request: $output"
	[ "$status" -eq 0 ]
	[ "$(jq '.bodies.v2 // 0' <<<"$output")" -gt 0 ]
	LOADGEN=keep run loadgen_stop
	echo "keep-alive: $output"
	[ "$status" -eq 0 ]
	[ "$(jq '.bodies.v2 // 0' <<<"$output")" -gt 0 ]

	# Pulled by the agents from the registry; every replica answers v2.
	docker image inspect "$REG/shop-api:v2" >/dev/null
	grep -q "pulling $REG/shop-api:v2" "$SKIFF_QUICKSTART_DIR"/logs/agent-*.log
	for round in 1 2 3; do
		for addr in $(node_addrs); do
			echo "round $round, $addr"
			[[ "$(http_get "http://$addr:$SHOP_API_PORT/version")" == "v2 "* ]]
		done
	done
	body=$(http_get "http://127.0.0.3:$SHOP_API_PORT/products")
	[ "$(jq -r .version <<<"$body")" = v2 ]
	[ "$(jq '.products | length' <<<"$body")" -eq 5 ] # the same database
}

@test "without Redis the carts fail and the products go on; with it back, carts work again" {
	need_up
	local addr
	run skiff service scale "${STACK}_redis=0"
	[ "$status" -eq 0 ]
	wait_until 30 "[ \"\$(http_status http://127.0.0.2:$SHOP_API_PORT/cart/x)\" = 503 ]"
	for addr in $(node_addrs); do
		[ "$(http_get "http://$addr:$SHOP_API_PORT/products" | jq '.products | length')" -eq 5 ]
		[ "$(http_status "http://$addr:$SHOP_API_PORT/cart/x")" = 503 ]
	done
	# Degraded, not unhealthy: no replica leaves the balancers or restarts.
	run curl -sS --max-time 5 "http://127.0.0.3:$SHOP_API_PORT/health"
	[ "$(jq -r .status <<<"$output")" = degraded ]
	[ "$(jq -r .postgres <<<"$output")" = ok ]
	[ "$(skiff service ps "${STACK}_api" --format json | jq '[.[] | select(.desired_state == "running" and .health == "healthy")] | length')" -eq 3 ]

	run skiff service scale "${STACK}_redis=1"
	[ "$status" -eq 0 ]
	for addr in $(node_addrs); do
		wait_until 30 http_get "http://$addr:$SHOP_API_PORT/cart/x"
	done
	[ "$(http_get "http://127.0.0.4:$SHOP_API_PORT/health" | jq -r .status)" = ok ]
}

@test "quickstart.sh down stops everything and leaves no container of its cluster" {
	need_up
	local cluster pids=() f pid
	cluster=$(cat "$SKIFF_QUICKSTART_DIR/data/cluster-id")
	for f in "$SKIFF_QUICKSTART_DIR"/pids/* "$SKIFF_QUICKSTART_DIR/registry/registry.pid"; do
		pids+=("$(cat "$f")")
	done
	# No sanitizer report in the daemons' logs (the binaries may be built with them).
	refute grep -E 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:' \
		"$SKIFF_QUICKSTART_DIR"/logs/*.log

	run "$QUICKSTART" down
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$(docker ps -aq --filter "label=skiff.cluster=$cluster")" ]
	for pid in "${pids[@]}"; do
		refute _skiff_pid_alive "$pid"
	done
	refute curl -fsS --max-time 2 "http://$REG/v2/"
	refute docker volume inspect "${STACK}_pgdata"
	refute docker volume inspect "${STACK}_redisdata"
	[ ! -e "$SKIFF_QUICKSTART_DIR" ]
	for addr in $(node_addrs); do
		refute port_open "$addr" "$SHOP_API_PORT"
	done

	# Twice is harmless.
	run "$QUICKSTART" down
	[ "$status" -eq 0 ]
	[[ "$output" == *"nothing to take down"* ]]
}
