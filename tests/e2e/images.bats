#!/usr/bin/env bats
# The test images (tests/images/build.sh), skiff-loadgen and the helpers of
# helpers.bash, against the real engine. The other e2e tests stand on these:
# if one fails here, fix it first.

load helpers

setup_file() {
	images_build
	export IMAGES_LABEL="skiff.cluster=test-images-$$-$RANDOM"
}

teardown() {
	local ids
	ids=$(docker ps -aq --filter "label=$IMAGES_LABEL")
	[ -z "$ids" ] || docker rm -f -v $ids >/dev/null
	skiff_teardown
}

teardown_file() {
	local ids
	ids=$(docker ps -aq --filter "label=$IMAGES_LABEL")
	[ -z "$ids" ] || docker rm -f -v $ids >/dev/null
}

# run_web IMAGE [docker run flags...]: starts IMAGE with 8080 published on
# 127.0.0.1 and waits until it answers; prints the container id.
run_web() {
	local image=$1 c addr
	shift
	c=$(docker run -d --label "$IMAGES_LABEL" -p 127.0.0.1::8080 "$@" "$image")
	addr=$(container_port "$c")
	wait_until 10 http_get "http://$addr/" >&2
	echo "$c"
}

# refute CMD...: fails if CMD succeeds (bats ignores a plain `! cmd`).
refute() {
	! "$@"
}

need_loadgen() {
	[ -x "$SKIFF_BIN/skiff-loadgen" ] || skip "no $SKIFF_BIN/skiff-loadgen (build first)"
}

@test "web:v1 and web:v2 answer their version and host name, and log a start line" {
	for v in v1 v2; do
		c=$(run_web "skiff-test/web:$v")
		addr=$(container_port "$c")
		host=$(docker inspect -f '{{.Config.Hostname}}' "$c")
		run http_get "http://$addr/"
		[ "$status" -eq 0 ]
		[ "$output" = "$v $host" ]
		wait_until 5 "docker logs $c 2>&1 | grep -qx 'web $v listening on :8080 host $host'"
	done
}

@test "web /health answers 200, and 404 once /www/health is removed" {
	c=$(run_web skiff-test/web:v1)
	addr=$(container_port "$c")
	[ "$(http_status "http://$addr/health")" = 200 ]
	docker exec "$c" rm /www/health
	[ "$(http_status "http://$addr/health")" = 404 ]
	[ "$(http_status "http://$addr/")" = 200 ]
}

@test "web listens on \$PORT when it is set" {
	c=$(docker run -d --label "$IMAGES_LABEL" -e PORT=9090 -p 127.0.0.1::9090 skiff-test/web:v2)
	addr=$(container_port "$c" 9090)
	wait_until 10 http_get "http://$addr/health"
	[[ "$(http_get "http://$addr/")" == "v2 "* ]]
	wait_until 5 "docker logs $c 2>&1 | grep -q 'web v2 listening on :9090'"
}

@test "web:bad-health fails /health and still answers /" {
	c=$(run_web skiff-test/web:bad-health)
	addr=$(container_port "$c")
	host=$(docker inspect -f '{{.Config.Hostname}}' "$c")
	[ "$(http_get "http://$addr/")" = "bad-health $host" ]
	[ "$(http_status "http://$addr/health")" = 404 ]
}

@test "web has the busybox applets for docker exec" {
	c=$(run_web skiff-test/web:v1)
	host=$(docker inspect -f '{{.Config.Hostname}}' "$c")
	run docker exec "$c" wget -qO- http://127.0.0.1:8080/
	[ "$status" -eq 0 ]
	[ "$output" = "v1 $host" ]
	docker exec "$c" sh -c 'command -v nc && command -v sleep && command -v ps && command -v kill'
}

@test "web stops at once on TERM, well within its grace period" {
	c=$(run_web skiff-test/web:v1)
	start=$(date +%s%N)
	docker stop -t 10 "$c" >/dev/null
	elapsed_ms=$((($(date +%s%N) - start) / 1000000))
	echo "docker stop took ${elapsed_ms}ms"
	[ "$elapsed_ms" -lt 3000 ]
	[ "$(docker inspect -f '{{.State.ExitCode}}' "$c")" = 0 ]
}

@test "exit prints a line and exits with code 1" {
	run docker run --label "$IMAGES_LABEL" skiff-test/exit:latest
	[ "$status" -eq 1 ]
	[[ "$output" == *"exit: exiting with code 1"* ]]
}

@test "oom is killed by the kernel under --memory 16m (OOMKilled)" {
	c=$(docker run -d --label "$IMAGES_LABEL" --memory 16m skiff-test/oom:latest)
	wait_until 30 "[ \"\$(docker inspect -f '{{.State.Status}}' $c)\" = exited ]"
	[ "$(docker inspect -f '{{.State.OOMKilled}}' "$c")" = true ]
	[ "$(docker inspect -f '{{.State.ExitCode}}' "$c")" = 137 ]
}

@test "skiff-loadgen: 0 failures against a web container, bodies and hosts counted" {
	need_loadgen
	c=$(run_web skiff-test/web:v1)
	addr=$(container_port "$c")
	host=$(docker inspect -f '{{.Config.Hostname}}' "$c")
	out="$BATS_TEST_TMPDIR/lg.json"
	run skiff-loadgen --url "http://$addr/" --concurrency 3 --duration 2s --out "$out"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"0 failed requests"* ]]
	jq -e '.requests > 10 and .failures == 0 and .errors == {}' "$out"
	jq -e --arg h "$host" '.bodies.v1 == .requests and .hosts[$h] == .requests' "$out"
}

@test "skiff-loadgen: round-robin over several URLs, with keep-alive" {
	need_loadgen
	c1=$(run_web skiff-test/web:v1)
	c2=$(run_web skiff-test/web:v2)
	out="$BATS_TEST_TMPDIR/lg.json"
	run skiff-loadgen --url "http://$(container_port "$c1")/" --url "http://$(container_port "$c2")/" \
		--concurrency 2 --duration 1s --keepalive --interval 1ms --out "$out"
	[ "$status" -eq 0 ]
	jq -e '.failures == 0 and (.bodies | keys) == ["v1", "v2"]' "$out"
	# Round-robin: the two counts differ by at most the number of workers.
	jq -e '(.bodies.v1 - .bodies.v2) | fabs <= 2' "$out"
	jq -e '.hosts | length == 2' "$out"
}

@test "skiff-loadgen: a closed port and a non-2xx status are failures" {
	need_loadgen
	port=$(free_port)
	out="$BATS_TEST_TMPDIR/lg.json"
	run skiff-loadgen --url "http://127.0.0.1:$port/" --duration 500ms --timeout 1s --out "$out"
	[ "$status" -eq 1 ]
	jq -e '.requests > 0 and .failures == .requests' "$out"
	jq -e '.errors["Couldn'"'"'t connect to server"] == .failures' "$out"
	jq -e '.failure_samples | length > 0' "$out"

	c=$(run_web skiff-test/web:bad-health)
	run skiff-loadgen --url "http://$(container_port "$c")/health" --duration 500ms --out "$out"
	[ "$status" -eq 1 ]
	jq -e '.failures == .requests and .errors["HTTP 404"] == .failures and .bodies == {}' "$out"
}

@test "skiff-loadgen: bad flags are usage errors" {
	need_loadgen
	run skiff-loadgen --duration 1s
	[ "$status" -eq 2 ]
	run skiff-loadgen --url http://127.0.0.1:1/ --duration 1x
	[ "$status" -eq 2 ]
	run skiff-loadgen --url http://127.0.0.1:1/
	[ "$status" -eq 2 ]
}

@test "loadgen_start / loadgen_stop run a load in the background" {
	need_loadgen
	c=$(run_web skiff-test/web:v2)
	loadgen_start --url "http://$(container_port "$c")/" --concurrency 2 --interval 5ms
	sleep 1
	run loadgen_stop
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(jq -r '.bodies | keys | join(",")' <<<"$output")" = v2 ]

	# A failing run makes loadgen_stop fail, with the summary printed.
	LOADGEN=closed loadgen_start --url "http://127.0.0.1:$(free_port)/" --interval 10ms
	sleep 0.3
	LOADGEN=closed run loadgen_stop
	[ "$status" -eq 1 ]
	jq -e '.failures > 0' <<<"$output"
}

@test "free_port and free_ports give distinct ports that nothing uses" {
	ports=$(free_ports 20)
	[ "$(wc -w <<<"$ports")" -eq 20 ]
	[ "$(tr ' ' '\n' <<<"$ports" | sort -u | wc -l)" -eq 20 ]
	for p in $ports; do
		[ "$p" -ge 20000 ]
		[ "$p" -lt 32000 ]
		refute _skiff_port_in_use "$p"
	done
	# A port in use is never given: the engine's published port is in use.
	c=$(run_web skiff-test/web:v1)
	used=$(container_port "$c")
	_skiff_port_in_use "${used##*:}"
}

@test "wait_until retries until success, and fails after its timeout with the last output" {
	flag="$BATS_TEST_TMPDIR/flag"
	(sleep 0.5 && touch "$flag") &
	wait_until 5 test -e "$flag"
	wait_until 1 "[ -e '$flag' ]"

	start=$(date +%s%N)
	run wait_until 0.6 'echo "still waiting"; false'
	elapsed_ms=$((($(date +%s%N) - start) / 1000000))
	[ "$status" -eq 1 ]
	[[ "$output" == *"timed out after 0.6s"* ]]
	[[ "$output" == *"still waiting"* ]]
	[ "$elapsed_ms" -ge 500 ]
	[ "$elapsed_ms" -lt 3000 ]
}

# Stand-ins for skiff-controller and skiff-agent, to run the cluster helpers
# without the real daemons: the controller writes its data dir files and
# listens; each agent runs one labelled container, as a real one would.
make_fake_bin() {
	local d="$BATS_TEST_TMPDIR/fakebin"
	mkdir -p "$d"
	cat >"$d/skiff-controller" <<'EOF'
#!/bin/bash
while [ $# -gt 0 ]; do
	case $1 in
	--listen) listen=$2; shift 2 ;;
	--data-dir) dir=$2; shift 2 ;;
	*) shift ;;
	esac
done
mkdir -p "$dir"
[ -s "$dir/cluster-id" ] || echo "fake-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" >"$dir/cluster-id"
for t in join-token admin-token; do
	[ -s "$dir/$t" ] || (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/$t")
done
echo "fake controller on $listen"
exec perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new(LocalAddr => $ARGV[1], Listen => 16, ReuseAddr => 1)
		or die "listen $ARGV[1]: $!\n";
	$SIG{TERM} = sub { exit 0 };
	while (1) { my $c = $s->accept or next; close $c; }' "$0" "$listen"
EOF
	cat >"$d/skiff-agent" <<'EOF'
#!/bin/bash
while [ $# -gt 0 ]; do
	case $1 in
	--name) name=$2; shift 2 ;;
	--join-token-file) tokens=$2; shift 2 ;;
	*) shift ;;
	esac
done
cluster=$(cat "$(dirname "$tokens")/cluster-id")
echo "fake agent $name of $cluster"
if [ -z "$(docker ps -q --filter "label=skiff.node=$name")" ]; then
	docker run -d --label skiff.cluster="$cluster" --label skiff.node="$name" \
		--label skiff.service=fake --label skiff.slot=1 skiff-test/web:v1 >/dev/null
fi
trap 'echo "fake agent $name stopping"; exit 0' TERM
while :; do sleep 0.2; done
EOF
	chmod +x "$d/skiff-controller" "$d/skiff-agent"
	echo "$d"
}

@test "cluster helpers: start, kill, restart, clean up by label (fake daemons)" {
	SKIFF_BIN=$(make_fake_bin)
	cluster_start 3
	[ -n "$CLUSTER_ID" ]
	[ "$SKIFF_HOST" = "127.0.0.1:$SKIFF_CONTROLLER_PORT" ]
	[ -s "$SKIFF_TOKEN_FILE" ]
	[ "$(stat -c %a "$SKIFF_TOKEN_FILE")" = 600 ]
	[ "$NODES" = "$SKIFF_PREFIX-n1 $SKIFF_PREFIX-n2 $SKIFF_PREFIX-n3" ]
	[ "$NODE_3" = "$(node_name 3)" ]
	[ "$AGENT_ADDR_3" = 127.0.0.4 ]
	grep -q -- "--advertise 127.0.0.2" "$SKIFF_TEST_DIR/agent-1.log"
	wait_until 20 '[ "$(count_running fake)" -eq 3 ]'
	[ "$(containers_of "$CLUSTER_ID" | wc -l)" -eq 3 ]
	[ "$(containers_of "$CLUSTER_ID" "label=skiff.node=$NODE_2" | wc -l)" -eq 1 ]
	[ "$(service_containers fake | wc -l)" -eq 3 ]

	# kill -9 an agent and start it again.
	old=$(agent_pid 2)
	agent_kill 2
	refute _skiff_pid_alive "$old"
	agent_start 2
	[ "$(agent_pid 2)" != "$old" ]
	_skiff_pid_alive "$(agent_pid 2)"

	# SIGSTOP / SIGCONT.
	agent_kill 1 STOP
	wait_until 2 "[ \"\$(awk '{ print \$3 }' /proc/$(agent_pid 1)/stat)\" = T ]"
	agent_kill 1 CONT
	wait_until 2 "[ \"\$(awk '{ print \$3 }' /proc/$(agent_pid 1)/stat)\" != T ]"

	# The controller: kill -9 and start, then restart; same cluster id.
	id=$CLUSTER_ID
	controller_kill KILL
	[ -z "$(controller_pid)" ]
	controller_start
	controller_restart
	[ "$CLUSTER_ID" = "$id" ]
	port_open 127.0.0.1 "$SKIFF_CONTROLLER_PORT"

	# cluster_stop removes the cluster's containers, and those with only one
	# of its node labels; it is safe to call twice.
	docker run -d --label "skiff.node=$NODE_2" --label "$IMAGES_LABEL" skiff-test/web:v1
	pids="$(controller_pid) $(agent_pid 1) $(agent_pid 2) $(agent_pid 3)"
	cluster_stop
	for p in $pids; do refute _skiff_pid_alive "$p"; done
	[ -z "$(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID")" ]
	[ -z "$(docker ps -aq --filter "label=skiff.node=$NODE_2")" ]
	cluster_stop

	# A second cluster has another cluster id and other node names.
	prefix=$SKIFF_PREFIX
	cluster_start 1
	[ "$CLUSTER_ID" != "$id" ]
	[ "$SKIFF_PREFIX" != "$prefix" ]
}

@test "cluster_stop: safe without a cluster, fails on a sanitizer report" {
	(unset SKIFF_TEST_DIR; cluster_stop)
	SKIFF_BIN=$(make_fake_bin)
	cluster_start 1
	echo "agent/x.c:1:2: runtime error: signed integer overflow" >>"$SKIFF_TEST_DIR/agent-1.log"
	run cluster_stop
	[ "$status" -eq 1 ]
	[[ "$output" == *"sanitizer report in agent-1.log"* ]]
	cluster_stop
	run dump_logs
	[[ "$output" == *"runtime error"* ]]
}
