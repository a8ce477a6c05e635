#!/usr/bin/env bats
# ha.bats: a highly available cluster: a real 3-member etcd cluster on
# loopback ports, 3 controllers sharing it (one leads), 3 agents that know
# them all, and a service under load through the balancers. The leader is
# killed, stopped past its lease (fencing), etcd loses one member and then
# its quorum; a SQLite cluster migrates to etcd; bad input is refused; a
# controller reaches a TLS etcd with its client certificate.

load helpers
load heal_lib
load ha_lib

setup_file() {
	ha_start 3
}

teardown_file() {
	ha_stop
}

setup() {
	ORIG_TEST_DIR=$SKIFF_TEST_DIR ORIG_DATA_DIR=$SKIFF_DATA_DIR ORIG_HOST=$SKIFF_HOST
	ORIG_PORT=$SKIFF_CONTROLLER_PORT ORIG_CLUSTER=$CLUSTER_ID ORIG_PREFIX=$SKIFF_PREFIX
	ORIG_TOKEN=$SKIFF_TOKEN_FILE ORIG_JOIN=$SKIFF_JOIN_TOKEN_FILE ORIG_AGENT_FLAGS=$SKIFF_AGENT_FLAGS
}

teardown() {
	[ -z "${BATS_TEST_COMPLETED:-}" ] && ha_dump_etcd_logs
	if [ "$SKIFF_TEST_DIR" != "$ORIG_TEST_DIR" ]; then
		# A case's own cluster (the migration): stopped, and the file's back.
		skiff_teardown
		export SKIFF_TEST_DIR=$ORIG_TEST_DIR SKIFF_DATA_DIR=$ORIG_DATA_DIR SKIFF_HOST=$ORIG_HOST \
			SKIFF_CONTROLLER_PORT=$ORIG_PORT CLUSTER_ID=$ORIG_CLUSTER SKIFF_PREFIX=$ORIG_PREFIX \
			SKIFF_TOKEN_FILE=$ORIG_TOKEN SKIFF_JOIN_TOKEN_FILE=$ORIG_JOIN \
			SKIFF_AGENT_FLAGS=$ORIG_AGENT_FLAGS
	elif [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		dump_logs
	fi
	ha_clean
}

# ha_clean: every daemon runs again, no service is left, no container.
ha_clean() {
	local svcs left
	ha_daemons
	svcs=$(skiff service ls --format json | jq -r '.[].spec.name')
	# shellcheck disable=SC2086 # one name per word
	[ -z "$svcs" ] || skiff service rm $svcs >/dev/null
	if ! wait_until 60 "[ -z \"\$(docker ps -aq --filter label=skiff.cluster=$CLUSTER_ID)\" ]"; then
		mapfile -t left < <(docker ps -aq --filter "label=skiff.cluster=$CLUSTER_ID")
		[ "${#left[@]}" -eq 0 ] || docker rm -f -v "${left[@]}" >/dev/null 2>&1 || true
	fi
}

# started_at: "container-id start-time" of the cluster's containers, sorted
# (a container restarted in place has a new start time).
started_at() {
	local ids
	mapfile -t ids < <(docker ps -q --no-trunc --filter "label=skiff.cluster=$CLUSTER_ID")
	[ "${#ids[@]}" -gt 0 ] || return 0
	docker inspect -f '{{.Id}} {{.State.StartedAt}}' "${ids[@]}" | LC_ALL=C sort
}

# log_ms LINE: the time of a log line, in ms since the epoch.
log_ms() {
	date -d "${1%% *}" +%s%3N
}

# one_line: the output of the last `run` is one line.
one_line() {
	[ "$(printf '%s\n' "$output" | wc -l)" -eq 1 ]
}

web_create() {
	local port=$1 n=${2:-3}
	run skiff service create -d -q --name web --replicas "$n" -p "$port:8080" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 60 "web=$n"
}

@test "three controllers on etcd: one leads; the others send agents and clients to it" {
	local json i
	json=$(ha_controllers_json)
	echo "$json" >&3
	[ "$(jq length <<<"$json")" -eq 3 ]
	[ "$(jq '[.[] | select(.role == "leader")] | length' <<<"$json")" -eq 1 ]
	[ "$(jq '[.[] | select(.role == "follower")] | length' <<<"$json")" -eq 2 ]
	jq -e 'all(.[]; .store == "etcd: healthy")' <<<"$json" >/dev/null
	# Every controller, asked alone, answers: a follower through the leader.
	for i in 1 2 3; do
		run env SKIFF_HOST="127.0.0.1:$(ctl_port "$i")" skiff node ls --format json
		[ "$status" -eq 0 ]
		[ "$(jq length <<<"$output")" -eq 3 ]
	done
	# One cluster: the same tokens and cluster id in every data dir.
	cmp "$SKIFF_DATA_DIR/admin-token" "$SKIFF_TEST_DIR/data-2/admin-token"
	cmp "$SKIFF_DATA_DIR/join-token" "$SKIFF_TEST_DIR/data-3/join-token"
	cmp "$SKIFF_DATA_DIR/cluster-id" "$SKIFF_TEST_DIR/data-2/cluster-id"
	# The same CA on every controller, and in the tokens.
	cmp "$SKIFF_DATA_DIR/ca.pem" "$SKIFF_TEST_DIR/data-3/ca.pem"
	[ ! -e "$SKIFF_TEST_DIR/data-2/ca-key.pem" ]
	[[ "$(cat "$SKIFF_DATA_DIR/admin-token")" == "SKIFF-1-$(openssl x509 -in "$SKIFF_DATA_DIR/ca.pem" -outform DER | sha256sum | cut -c1-64)-"* ]]
	# A token rotated in the store: the whole token in the file, and every
	# controller takes it.
	run skiff-controller --rotate-token admin --store "etcd://$ETCD_ENDPOINTS" \
		--store-prefix "$HA_PREFIX" --data-dir "$SKIFF_TEST_DIR/data-2"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$(cat "$SKIFF_TEST_DIR/data-2/admin-token")" == SKIFF-1-* ]]
	wait_until 15 "cmp '$SKIFF_DATA_DIR/admin-token' '$SKIFF_TEST_DIR/data-2/admin-token'"
	export SKIFF_TOKEN_FILE=$SKIFF_TEST_DIR/data-2/admin-token
	wait_until 15 skiff node ls
	# The agents went to the leader.
	for i in 1 2 3; do
		grep -q 'registered as node' "$SKIFF_TEST_DIR/agent-$i.log"
	done
}

@test "kill -9 of the leader under load: a follower leads within 5 s, a scale right after succeeds, nothing restarts, no request fails" {
	local port leader new t0 lead_line ms before started
	port=$(free_port)
	web_create "$port" 3
	before=$(engine_tasks)
	started=$(started_at)
	loadgen_start --url "http://$(agent_addr 1):$port/" --url "http://$(agent_addr 2):$port/" \
		--url "http://$(agent_addr 3):$port/" --concurrency 4 --interval 5ms
	sleep 1
	leader=$(ha_leader)
	[ -n "$leader" ]
	t0=$(_skiff_now_ms)
	ctl_kill "$leader" KILL
	# Right after: the CLI looks for the leader across the controllers.
	run skiff service scale -d web=4
	echo "# scale after the kill: $output" >&3
	[ "$status" -eq 0 ]
	new=$(ha_wait_leader 10 "$leader")
	lead_line=$(grep 'controller: leading (term' "$(ctl_log "$new")" | tail -n1)
	ms=$(($(log_ms "$lead_line") - t0))
	echo "# kill -9 of controller $leader: controller $new leads $ms ms later" >&3
	[ "$ms" -le 5000 ]
	wait_exact 60 web=4
	# The three first containers are the same, never restarted; every slot
	# has had one task.
	[ "$(engine_tasks | grep -cxFf <(printf '%s\n' "$before"))" -eq 3 ]
	[ "$(started_at | grep -cxFf <(printf '%s\n' "$started"))" -eq 3 ]
	tasks_json web | jq -e 'group_by(.slot) | length == 4 and all(.[]; length == 1)' >/dev/null
	running_json web | jq -e 'all(.[]; .restarts == 0)' >/dev/null
	sleep 1
	run loadgen_stop
	echo "# load: $(jq -c '{requests, failures}' <<<"$output")" >&3
	[ "$status" -eq 0 ]
	# The old leader comes back as a follower.
	ctl_start "$leader"
	sleep 1
	! ha_leads "$leader"
	[ "$(ha_wait_leader 5)" = "$new" ]
}

@test "fencing: a leader stopped past its lease is replaced; continued, it steps down without a write" {
	local port leader new r1 r2 writes downs
	port=$(free_port)
	web_create "$port" 3
	leader=$(ha_leader)
	[ -n "$leader" ]
	downs=$(grep -c 'stepping down' "$(ctl_log "$leader")" || true)
	ctl_kill "$leader" STOP
	new=$(ha_wait_leader 15 "$leader")
	echo "# controller $leader stopped; controller $new leads" >&3
	run skiff service scale web=2
	[ "$status" -eq 0 ]
	wait_exact 60 web=2
	sleep 1
	r1=$(etcd_rev)
	ctl_kill "$leader" CONT
	wait_until 20 "[ \"\$(grep -c 'stepping down' '$(ctl_log "$leader")')\" -gt $downs ]"
	sleep 3
	r2=$(etcd_rev)
	# What changed in etcd since: only the election's own keys (the old
	# leader registering again as a follower); none of the cluster's state.
	writes=$(timeout 3 env ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" watch \
		--rev "$((r1 + 1))" --prefix "$HA_PREFIX" | grep "^$HA_PREFIX" | sort -u || true)
	echo "# revisions $r1 -> $r2; keys written: $(tr '\n' ' ' <<<"$writes")" >&3
	[ -z "$(grep -v -e "^${HA_PREFIX}controllers/" -e "^${HA_PREFIX}leader\$" <<<"$writes")" ]
	! ha_leads "$leader"
	[ "$(ha_wait_leader 5)" = "$new" ]
	wait_exact 30 web=2
	[ "$(count_running web)" -eq 2 ]
}

@test "etcd: one member lost, nothing stops; two lost, nothing changes and the balancers serve; back, the cluster carries on" {
	local port i
	port=$(free_port)
	web_create "$port" 3
	loadgen_start --url "http://$(agent_addr 1):$port/" --url "http://$(agent_addr 3):$port/" \
		--concurrency 2 --interval 10ms
	etcd_kill 1
	run skiff service scale web=4
	echo "# scale with one etcd member lost: status $status, $(tail -n1 <<<"$output")" >&3
	[ "$status" -eq 0 ]
	wait_exact 60 web=4

	etcd_kill 2
	# No quorum: the leader's lease cannot be kept; nobody leads.
	wait_until 20 "! ha_leads 1 && ! ha_leads 2 && ! ha_leads 3"
	echo "# no quorum: no controller leads" >&3
	run timeout 60 skiff service scale -d web=5
	echo "# scale without quorum: status $status, $output" >&3
	[ "$status" -ne 0 ]
	for i in 1 2 3; do
		http_get "http://$(agent_addr "$i"):$port/" | grep -q '^v1 '
	done
	[ "$(count_running web)" -eq 4 ]

	etcd_start 1
	etcd_start 2
	for i in 1 2 3; do wait_until 30 etcd_healthy "$i"; done
	ha_wait_leader 30 >/dev/null
	run skiff service scale web=3
	[ "$status" -eq 0 ]
	wait_exact 60 web=3
	run loadgen_stop
	echo "# load: $(jq -c '{requests, failures}' <<<"$output")" >&3
	[ "$status" -eq 0 ]
}

@test "migrate: a SQLite cluster with a service running moves to etcd; a controller on etcd adopts every container" {
	local port before started prefix
	unset SKIFF_TEST_DIR SKIFF_AGENT_FLAGS
	cluster_start 2
	port=$(free_port)
	run skiff service create -d -q --name web --replicas 2 -p "$port:8080" skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_exact 60 web=2
	before=$(engine_tasks)
	started=$(started_at)
	controller_kill TERM

	prefix=/skiff/mig-$SKIFF_PREFIX/
	run "$SKIFF_BIN/skiff-controller" migrate --from "sqlite:$SKIFF_DATA_DIR" \
		--to "etcd://$ETCD_ENDPOINTS" --store-prefix "$prefix"
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	[[ "$output" == *"the counts match"* ]]
	[[ "$output" == *"services 1"* ]]
	[[ "$output" == *"tasks 2"* ]]
	[[ "$output" == *"nodes 2"* ]]
	# Again, into the prefix that now holds it: refused.
	run "$SKIFF_BIN/skiff-controller" migrate --from "sqlite:$SKIFF_DATA_DIR" \
		--to "etcd://$ETCD_ENDPOINTS" --store-prefix "$prefix"
	[ "$status" -eq 1 ]
	one_line
	[[ "$output" == *"is not empty"* ]]

	printf '%s\n' --listen "127.0.0.1:$SKIFF_CONTROLLER_PORT" --data-dir "$SKIFF_DATA_DIR" \
		--log-level debug --store "etcd://$ETCD_ENDPOINTS" --store-prefix "$prefix" \
		>"$SKIFF_TEST_DIR/controller.args"
	controller_start
	wait_until 30 "SKIFF_HOST=$SKIFF_HOST skiff controller ls --format json | jq -e '.[0].role == \"leader\"' >/dev/null"
	wait_nodes_ready 2 60
	wait_exact 60 web=2
	[ "$(engine_tasks)" = "$before" ]
	[ "$(started_at)" = "$started" ]
	running_json web | jq -e 'all(.[]; .restarts == 0)' >/dev/null
	run skiff service scale web=3
	[ "$status" -eq 0 ]
	wait_exact 60 web=3
}

@test "bad input: bad store flags are one line and exit 2; an unreachable etcd is retried; another cluster's prefix is refused" {
	local dir=$BATS_TEST_TMPDIR/bad port pid log
	port=$(free_port)
	for args in "--store etcd://" "--store etcd://host-without-port" "--store mysql://x:1" \
		"--store-prefix nope/ --store etcd://127.0.0.1:1" "--store-prefix /x/" \
		"--leader-lease 10ms --store etcd://127.0.0.1:1" \
		"--listen 0.0.0.0:$port --store etcd://127.0.0.1:1" "--store-ca /nonexistent --store etcd://127.0.0.1:1"; do
		# shellcheck disable=SC2086 # split on purpose
		run "$SKIFF_BIN/skiff-controller" --data-dir "$dir" $args
		echo "# $args: $output" >&3
		[ "$status" -eq 2 ]
		one_line
		[ ! -e "$dir" ]
	done

	# etcd that does not answer: a one-line error, and retries, not a crash.
	log=$BATS_TEST_TMPDIR/unreachable.log
	"$SKIFF_BIN/skiff-controller" --listen "127.0.0.1:$port" --data-dir "$dir-u" \
		--store "etcd://127.0.0.1:$(free_port)" --store-prefix /skiff/nowhere/ >"$log" 2>&1 &
	pid=$!
	sleep 5
	kill -0 "$pid"
	grep -q "retrying in" "$log"
	[ "$(grep -c 'Z error ' "$log")" -eq 0 ]
	kill -TERM "$pid"
	wait "$pid"

	# A data dir of another cluster on this prefix: refused.
	mkdir -m 0700 "$dir-o"
	echo 0123456789abcdef0123456789abcdef >"$dir-o/cluster-id"
	run timeout 20 "$SKIFF_BIN/skiff-controller" --listen "127.0.0.1:$port" --data-dir "$dir-o" \
		--store "etcd://$ETCD_ENDPOINTS" --store-prefix "$HA_PREFIX"
	echo "# another cluster's data dir: $(grep error <<<"$output")" >&3
	[ "$status" -eq 1 ]
	[[ "$output" == *"holds cluster $CLUSTER_ID, but this data dir belongs to cluster 0123456789abcdef"* ]]

	# A prefix that holds what is not a skiff cluster: refused.
	etcdctl_ha put "/skiff/junk-$SKIFF_PREFIX/x" y >/dev/null
	run timeout 20 "$SKIFF_BIN/skiff-controller" --listen "127.0.0.1:$port" --data-dir "$dir-j" \
		--store "etcd://$ETCD_ENDPOINTS" --store-prefix "/skiff/junk-$SKIFF_PREFIX/"
	[ "$status" -eq 1 ]
	[[ "$output" == *"not a skiff cluster's"* ]]
	etcdctl_ha del --prefix "/skiff/junk-$SKIFF_PREFIX/" >/dev/null

	# migrate's own.
	run "$SKIFF_BIN/skiff-controller" migrate
	[ "$status" -eq 2 ]
	one_line
	run "$SKIFF_BIN/skiff-controller" migrate --from mysql:x --to "etcd://$ETCD_ENDPOINTS"
	[ "$status" -eq 2 ]
	one_line
	run "$SKIFF_BIN/skiff-controller" migrate --from "sqlite:$dir-none" --to "etcd://$ETCD_ENDPOINTS"
	[ "$status" -eq 1 ]
	one_line
	run "$SKIFF_BIN/skiff-controller" migrate --from "sqlite:$SKIFF_DATA_DIR" --to http://x
	[ "$status" -eq 2 ]
	one_line
}

@test "etcd over TLS: a controller with a client certificate is served; one without is refused and retries" {
	local d=$BATS_TEST_TMPDIR/tls cport pport port port2 pid pid2 epid
	mkdir -p "$d"
	(
		cd "$d"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=skiff-test-ca"
		openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj "/CN=127.0.0.1"
		openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 \
			-extfile <(printf 'subjectAltName=IP:127.0.0.1\n')
		openssl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj "/CN=skiff-controller"
		openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cli.pem -days 2 \
			-extfile <(printf 'extendedKeyUsage=clientAuth\n')
	) >"$d/openssl.log" 2>&1
	cport=$(free_port) pport=$(free_port) port=$(free_port) port2=$(free_port)
	etcd --name t --data-dir "$d/etcd" --listen-client-urls "https://127.0.0.1:$cport" \
		--advertise-client-urls "https://127.0.0.1:$cport" --listen-peer-urls "http://127.0.0.1:$pport" \
		--initial-advertise-peer-urls "http://127.0.0.1:$pport" --initial-cluster "t=http://127.0.0.1:$pport" \
		--cert-file "$d/srv.pem" --key-file "$d/srv.key" --trusted-ca-file "$d/ca.pem" \
		--client-cert-auth >"$d/etcd.log" 2>&1 &
	epid=$!
	"$SKIFF_BIN/skiff-controller" --listen "127.0.0.1:$port" --data-dir "$d/c1" \
		--store "etcd://127.0.0.1:$cport" --store-prefix /skiff/tls/ --store-ca "$d/ca.pem" \
		--store-cert "$d/cli.pem" --store-key "$d/cli.key" >"$d/c1.log" 2>&1 &
	pid=$!
	"$SKIFF_BIN/skiff-controller" --listen "127.0.0.1:$port2" --data-dir "$d/c2" \
		--store "etcd://127.0.0.1:$cport" --store-prefix /skiff/tls/ --store-ca "$d/ca.pem" \
		>"$d/c2.log" 2>&1 &
	pid2=$!
	wait_until 30 "SKIFF_HOST=127.0.0.1:$port SKIFF_TOKEN_FILE=$d/c1/admin-token skiff controller ls --format json | jq -e '.[0].role == \"leader\" and .[0].store == \"etcd: healthy\"' >/dev/null"
	wait_until 15 "grep -q 'reading the cluster.s identity: .*retrying in' '$d/c2.log'"
	kill -0 "$pid2"
	[ ! -e "$d/c2/admin-token" ]
	kill -TERM "$pid" "$pid2"
	wait "$pid" "$pid2" || true
	kill -TERM "$epid"
	wait "$epid" || true
}
