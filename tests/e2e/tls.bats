#!/usr/bin/env bats
# Mutual TLS, the cluster CA and node certificates (issue 18), against the
# real engine:
# - a 3-node cluster joins with its token, then its agents restart without
#   any token and come back with their certificates, their tasks untouched;
# - hostile cases, each refused with a clear log line and nothing changed in
#   the cluster: a plaintext peer; an agent whose token carries another CA's
#   digest (it refuses an impostor controller before sending anything); a
#   second agent claiming an existing node's name; a removed node's
#   certificate; an expired certificate (--cert-expiry 20s, while a joined
#   agent renews its own through three lifetimes); a client without the
#   admin token;
# - tcpdump on the loopback interface during a `service create` with
#   SECRET=marker123 and a join: no marker, no token in the capture;
# - `skiff cluster ca --rotate` under load through a balancer: no failed
#   request, no container restarted, every agent on the new CA, new tokens;
# - `skiff cluster client-cert`, and the modes of the files.
# No assertion is on a timing.

load helpers

teardown() {
	[ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null
	[ -n "${IMPOSTOR_PID:-}" ] && kill "$IMPOSTOR_PID" 2>/dev/null
	skiff_teardown
}

ctl_log() { cat "$SKIFF_TEST_DIR/controller.log"; }

# secret FILE: the secret of the token in FILE; digest FILE: its CA digest.
secret() { sed -n '1s/^SKIFF-1-[0-9a-f]*-//p' "$1"; }
digest() { cut -d- -f3 "$1"; }

# fingerprint PEM: the sha256 of the (first) certificate, as the tokens write it.
fingerprint() {
	openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f
}

# node_id I: the id of node I, as `skiff node ls` shows it.
node_id() {
	skiff node ls --format json | jq -r --arg n "$(node_name "$1")" '.[] | select(.name == $n) | .id'
}

# snapshot: the cluster as the CLI shows it (nodes and services), to compare.
snapshot() {
	skiff node ls --format json | jq -c 'map({id, name, state, address}) | sort_by(.name)'
	skiff service ls --format json | jq -c 'map({id, version, name: .spec.name}) | sort_by(.name)'
}

# containers SERVICE: "id started-at restarts" of its running containers.
containers() {
	local c
	for c in $(service_containers "$1"); do
		docker inspect -f '{{.Id}} {{.State.StartedAt}} {{.RestartCount}}' "$c"
	done | sort
}

# ---------------------------------------------------------------- joining

@test "a 3-node cluster joins with its token, then its agents come back with their certificates alone" {
	cluster_start 3
	local i ids before
	for i in 1 2 3; do
		grep -q "joined cluster $CLUSTER_ID as node $(node_name "$i")" "$SKIFF_TEST_DIR/agent-$i.log"
		[ "$(stat -c %a "$(agent_state_dir "$i")")" = 700 ]
		for f in key.pem cert.pem ca.pem; do
			[ "$(stat -c %a "$(agent_state_dir "$i")/$f")" = 600 ]
		done
		# The certificate names the node's id and the cluster, as a node.
		openssl x509 -in "$(agent_state_dir "$i")/cert.pem" -noout -subject |
			grep -q "CN = $(node_id "$i"), O = $CLUSTER_ID, OU = skiff-node"
		openssl verify -CAfile "$SKIFF_DATA_DIR/ca.pem" "$(agent_state_dir "$i")/cert.pem"
	done
	run skiff service create --name web --replicas 3 skiff-test/web:v1
	[ "$status" -eq 0 ]
	ids=$(skiff node ls --format json | jq -c 'map(.id) | sort')
	before=$(containers web)
	# Restarted with no token anywhere: the join token file is gone.
	mv "$SKIFF_JOIN_TOKEN_FILE" "$SKIFF_TEST_DIR/join-token.away"
	for i in 1 2 3; do
		SKIFF_AGENT_TOKEN=none agent_restart "$i"
	done
	wait_nodes_ready 3 30
	for i in 1 2 3; do
		wait_until 30 "[ \"\$(grep -c 'registered as node' '$SKIFF_TEST_DIR/agent-$i.log')\" -ge 2 ]"
		grep -q "node certificate from $(agent_state_dir "$i")" "$SKIFF_TEST_DIR/agent-$i.log"
		! grep -q -- "--join-token-file" <(tail -n 30 "$SKIFF_TEST_DIR/agent-$i.log" | grep '^===')
	done
	[ "$(skiff node ls --format json | jq -c 'map(.id) | sort')" = "$ids" ]
	[ "$(containers web)" = "$before" ]
	[ "$(grep -c 'certificate issued' "$SKIFF_TEST_DIR/controller.log")" -eq 3 ]
	# A controller restart changes nothing either.
	controller_restart
	wait_until 30 "[ \"\$(grep -c 'registered as node' '$SKIFF_TEST_DIR/agent-1.log')\" -ge 3 ]"
	wait_nodes_ready 3 30
	[ "$(containers web)" = "$before" ]
	mv "$SKIFF_TEST_DIR/join-token.away" "$SKIFF_JOIN_TOKEN_FILE"
}

# ---------------------------------------------------------------- hostile peers

@test "a plaintext peer is refused at the first byte, and logged" {
	cluster_start 1
	local before
	before=$(snapshot)
	# What a skiff of before TLS sends: a plaintext Hello frame.
	python3 - "$SKIFF_CONTROLLER_PORT" "$(secret "$SKIFF_TOKEN_FILE")" >"$BATS_TEST_TMPDIR/plain" <<-'PY'
		import socket, struct, sys
		tok = sys.argv[2].encode()
		hello = bytes([0x08, 0x01, 0x52, 4 + len(tok), 0x08, 0x02, 0x12, len(tok)]) + tok
		s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
		print("local=%s:%d" % s.getsockname())
		s.sendall(struct.pack(">I", len(hello)) + hello)
		got = s.recv(4096)
		print("answer=%d" % len(got))
	PY
	cat "$BATS_TEST_TMPDIR/plain"
	grep -q "answer=0" "$BATS_TEST_TMPDIR/plain" # nothing but the close
	local addr
	addr=$(sed -n 's/^local=//p' "$BATS_TEST_TMPDIR/plain")
	wait_until 10 "grep -q '$addr: refused: not TLS: a plaintext peer' '$SKIFF_TEST_DIR/controller.log'"
	[ "$(snapshot)" = "$before" ]
}

@test "an agent whose token carries another CA's digest refuses the controller before sending anything" {
	cluster_start 1
	local before other port
	before=$(snapshot)
	# Another CA (an impostor's), and a token carrying its digest.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj "/CN=impostor" -keyout "$BATS_TEST_TMPDIR/imp.key" -out "$BATS_TEST_TMPDIR/imp.pem" \
		2>/dev/null
	other=$(fingerprint "$BATS_TEST_TMPDIR/imp.pem")
	echo "SKIFF-1-$other-$(secret "$SKIFF_JOIN_TOKEN_FILE")" >"$BATS_TEST_TMPDIR/wrong-ca-token"
	# Against the real controller: refused, the controller sees the alert.
	agent_start 2 --join-token-file "$BATS_TEST_TMPDIR/wrong-ca-token"
	wait_until 20 "grep -q 'does not end at the CA of the token' '$SKIFF_TEST_DIR/agent-2.log'"
	wait_until 10 "grep -q 'refused: refused by the peer: unknown ca' '$SKIFF_TEST_DIR/controller.log'"
	! grep -q "join" <(grep -v "joined cluster\|certificate issued" "$SKIFF_TEST_DIR/controller.log")
	[ ! -e "$(agent_state_dir 2)/cert.pem" ]
	agent_kill 2 TERM
	# A man in the middle: an impostor TLS server with the CA of the token.
	# The agent aborts its handshake; the impostor reads nothing at all.
	port=$(free_port)
	echo "SKIFF-1-$other-$(secret "$SKIFF_JOIN_TOKEN_FILE")" >"$BATS_TEST_TMPDIR/imp-token"
	openssl s_server -quiet -accept "127.0.0.1:$port" -tls1_3 -cert "$BATS_TEST_TMPDIR/imp.pem" \
		-key "$BATS_TEST_TMPDIR/imp.key" </dev/null >"$BATS_TEST_TMPDIR/imp.out" 2>&1 &
	IMPOSTOR_PID=$!
	wait_port 127.0.0.1 "$port"
	skiff-agent --controller "127.0.0.1:$port" --name "$(node_name 3)" --advertise 127.0.0.4 \
		--join-token-file "$SKIFF_JOIN_TOKEN_FILE" --state-dir "$BATS_TEST_TMPDIR/mitm.state" \
		>"$BATS_TEST_TMPDIR/mitm.log" 2>&1 &
	local pid=$!
	wait_until 20 "grep -q 'does not end at the CA of the token\|not a skiff-controller' '$BATS_TEST_TMPDIR/mitm.log'"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	kill "$IMPOSTOR_PID"
	wait "$IMPOSTOR_PID" 2>/dev/null || true
	IMPOSTOR_PID=
	cat "$BATS_TEST_TMPDIR/imp.out"
	! grep -q "$(secret "$SKIFF_JOIN_TOKEN_FILE")" "$BATS_TEST_TMPDIR/imp.out"
	! grep -qi "csr\|BEGIN" "$BATS_TEST_TMPDIR/imp.out"
	[ "$(snapshot)" = "$before" ]
}

@test "a second agent claiming an existing node's name is refused and logged; the node stays" {
	cluster_start 2
	local before id1
	run skiff service create --name web --replicas 2 skiff-test/web:v1
	[ "$status" -eq 0 ]
	before=$(snapshot)
	id1=$(node_id 1)
	# Agent 3, a fresh state dir and the join token, under node 1's name.
	agent_start 3 --name "$(node_name 1)"
	wait_until 20 "grep -q 'join refused: node $(node_name 1) exists' '$SKIFF_TEST_DIR/agent-3.log'"
	grep -q "join refused: node $(node_name 1) exists, with another certificate" \
		"$SKIFF_TEST_DIR/controller.log"
	agent_kill 3 TERM
	# With node 2's certificate, claiming node 1's name at registration.
	cp -a "$(agent_state_dir 2)" "$BATS_TEST_TMPDIR/n2.state"
	skiff-agent --controller "$SKIFF_HOST" --name "$(node_name 1)" --advertise 127.0.0.9 \
		--state-dir "$BATS_TEST_TMPDIR/n2.state" >"$BATS_TEST_TMPDIR/thief.log" 2>&1 &
	local pid=$!
	wait_until 20 "grep -q 'this certificate is node $(node_name 2)' '$BATS_TEST_TMPDIR/thief.log'"
	grep -q "registration refused: the certificate of node $(node_name 2) .* claims the name $(node_name 1)" \
		"$SKIFF_TEST_DIR/controller.log"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	sleep 4 # past the heartbeat timeout: both nodes still there, as they were
	[ "$(snapshot)" = "$before" ]
	[ "$(node_id 1)" = "$id1" ]
	[ "$(skiff node ls --format json | jq -r --arg n "$(node_name 1)" '.[] | select(.name == $n) | .address')" = 127.0.0.2 ]
}

@test "a removed node's certificate is refused at the handshake" {
	cluster_start 2
	local before n2
	n2=$(node_name 2)
	agent_kill 2 TERM
	wait_until 20 "skiff node ls --format json | jq -e --arg n '$n2' '.[] | select(.name == \$n) | .state == \"down\"'"
	run skiff node rm "$n2"
	[ "$status" -eq 0 ]
	grep -q "node remove $n2: removed; its certificate revoked" "$SKIFF_TEST_DIR/controller.log"
	before=$(snapshot)
	agent_start 2
	wait_until 20 "grep -q 'refused by the peer: certificate revoked' '$SKIFF_TEST_DIR/agent-2.log'"
	grep -q "refused: the certificate of node .* is revoked" "$SKIFF_TEST_DIR/controller.log"
	sleep 2
	[ "$(snapshot)" = "$before" ]
	# A ready node goes with --force only (or once drained), revoked the same.
	run skiff node rm "$(node_name 1)"
	[ "$status" -ne 0 ]
	[[ "$output" == *"is ready: drain it or stop its agent first"* ]]
	agent_kill 2 TERM
	# Emptied, its state dir joins again: a new node.
	rm -rf "$(agent_state_dir 2)"
	agent_start 2
	wait_nodes_ready 2 30
}

@test "an expired certificate is refused, while a joined agent renews its own through three lifetimes" {
	cluster_start 2 --cert-expiry 20s
	local before start id c
	run skiff service create --name web --replicas 1 --constraint "node.name==$(node_name 1)" \
		skiff-test/web:v1
	[ "$status" -eq 0 ]
	c=$(containers web)
	# A copy of node 2's certificate, kept while it expires.
	cp -a "$(agent_state_dir 2)" "$BATS_TEST_TMPDIR/old.state"
	agent_kill 2 TERM
	start=$(date +%s)
	id=$(node_id 1)
	# Three lifetimes and more.
	wait_until 120 "[ \$((\$(date +%s) - $start)) -ge 65 ]"
	[ "$(grep -c 'node certificate renewed' "$SKIFF_TEST_DIR/agent-1.log")" -ge 3 ]
	! grep -q "lost the controller" "$SKIFF_TEST_DIR/agent-1.log"
	[ "$(grep -c 'registered as node' "$SKIFF_TEST_DIR/agent-1.log")" -eq 1 ]
	[ "$(containers web)" = "$c" ]
	skiff node ls --format json | jq -e --arg n "$(node_name 1)" '.[] | select(.name == $n) | .state == "ready"'
	openssl verify -CAfile "$SKIFF_DATA_DIR/ca.pem" "$(agent_state_dir 1)/cert.pem"
	# Node 2 comes back with its expired certificate: the agent says so and
	# stops, and the controller refuses the certificate at the handshake,
	# whoever presents it.
	before=$(snapshot)
	run skiff-agent --controller "$SKIFF_HOST" --name "$(node_name 2)" --advertise 127.0.0.3 \
		--state-dir "$BATS_TEST_TMPDIR/old.state"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"the node certificate expired: the controller refuses it; remove the node (skiff node rm $(node_name 2))"* ]]
	echo Q | timeout 10 openssl s_client -connect "$SKIFF_HOST" -tls1_3 -quiet \
		-CAfile "$SKIFF_DATA_DIR/ca.pem" -cert "$BATS_TEST_TMPDIR/old.state/cert.pem" \
		-key "$BATS_TEST_TMPDIR/old.state/key.pem" >/dev/null 2>&1 || true
	wait_until 10 "grep -q \"refused: the skiff-node's certificate has expired\" '$SKIFF_TEST_DIR/controller.log'"
	[ "$(snapshot)" = "$before" ]
	[ "$(node_id 1)" = "$id" ]
}

@test "a client without the admin token is refused and logged; nothing changes" {
	cluster_start 0
	local before d
	run skiff service create -d --name web skiff-test/web:v1
	[ "$status" -eq 0 ]
	before=$(snapshot)
	d=$(digest "$SKIFF_TOKEN_FILE")
	# No token at all.
	run env -u SKIFF_TOKEN_FILE -u SKIFF_TOKEN skiff --token-file /nonexistent service rm web
	[ "$status" -eq 1 ]
	# The join token is no admin token; a made-up secret neither.
	for tok in "$(cat "$SKIFF_JOIN_TOKEN_FILE")" "SKIFF-1-$d-$(printf 'ab%.0s' {1..32})"; do
		run env SKIFF_TOKEN_FILE= SKIFF_TOKEN="$tok" skiff service rm web
		echo "$output"
		[ "$status" -eq 1 ]
		[[ "$output" == *"wrong token (check --token-file, SKIFF_TOKEN_FILE or SKIFF_TOKEN)" ]]
	done
	[ "$(grep -c 'refused: wrong token' "$SKIFF_TEST_DIR/controller.log")" -ge 2 ]
	# A token of another CA: the CLI refuses the controller first.
	run env SKIFF_TOKEN_FILE= SKIFF_TOKEN="SKIFF-1-$(printf 'cd%.0s' {1..32})-$(secret "$SKIFF_TOKEN_FILE")" \
		skiff service rm web
	[ "$status" -eq 1 ]
	[[ "$output" == *"does not end at the CA of the token"* ]]
	# --tls-ca verifies the controller against a file instead.
	skiff --tls-ca "$SKIFF_DATA_DIR/ca.pem" service ls -q
	SKIFF_TLS_CA="$SKIFF_DATA_DIR/ca.pem" skiff service ls -q
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=x" \
		-keyout /dev/null -out "$BATS_TEST_TMPDIR/other.pem" 2>/dev/null
	run skiff --tls-ca "$BATS_TEST_TMPDIR/other.pem" service ls
	[ "$status" -eq 1 ]
	[[ "$output" == *"not from this cluster's CA"* ]]
	[ "$(snapshot)" = "$before" ]
}

# ---------------------------------------------------------------- on the wire

@test "a capture of the controller's port during a service create and a join holds no secret" {
	command -v tcpdump >/dev/null || skip "tcpdump is not installed"
	cluster_start 2
	local cap=$BATS_TEST_TMPDIR/lo.pcap
	tcpdump -i lo -s 0 -U -w "$cap" "tcp port $SKIFF_CONTROLLER_PORT" \
		2>"$BATS_TEST_TMPDIR/tcpdump.err" &
	TCPDUMP_PID=$!
	wait_until 10 "grep -q 'listening on lo' '$BATS_TEST_TMPDIR/tcpdump.err'"
	run skiff service create --name sec --replicas 2 -e SECRET=marker123 skiff-test/web:v1
	[ "$status" -eq 0 ]
	skiff service inspect sec | grep -q marker123 # it is there, to be sent
	# A join during the capture: the join token's secret crosses the wire.
	agent_start 3
	wait_nodes_ready 3 30
	skiff service logs sec >/dev/null
	sleep 1
	kill "$TCPDUMP_PID"
	wait "$TCPDUMP_PID" 2>/dev/null || true
	TCPDUMP_PID=
	[ "$(tcpdump -r "$cap" 2>/dev/null | wc -l)" -gt 50 ] # it did capture the traffic
	! grep -aq marker123 "$cap"
	! grep -aq "SECRET=" "$cap"
	! grep -aq "$(secret "$SKIFF_JOIN_TOKEN_FILE")" "$cap"
	! grep -aq "$(secret "$SKIFF_TOKEN_FILE")" "$cap"
	! grep -aq "skiff-test/web" "$cap"
}

# ---------------------------------------------------------------- rotation

@test "skiff cluster ca --rotate under load through a balancer: no failed request, no restart, every agent on the new CA" {
	cluster_start 3
	local port before old_digest new_digest i out
	port=$(free_port)
	run skiff service create --name web --replicas 3 -p "$port:8080" --health-http /health \
		--health-interval 500ms skiff-test/web:v1
	[ "$status" -eq 0 ]
	for i in 1 2 3; do
		wait_until 60 http_get "http://$(agent_addr "$i"):$port/"
	done
	before=$(containers web)
	old_digest=$(digest "$SKIFF_TOKEN_FILE")
	cp "$SKIFF_TOKEN_FILE" "$BATS_TEST_TMPDIR/old-admin-token"
	cp "$SKIFF_DATA_DIR/ca.pem" "$BATS_TEST_TMPDIR/old-ca.pem"
	[ "$(fingerprint "$SKIFF_DATA_DIR/ca.pem")" = "$old_digest" ]
	LOADGEN=a loadgen_start --url "http://$(agent_addr 1):$port/" --concurrency 2 --interval 5ms
	LOADGEN=b loadgen_start --url "http://$(agent_addr 3):$port/" --concurrency 2 --interval 5ms \
		--keepalive

	run skiff cluster ca --rotate
	echo "$output"
	[ "$status" -eq 0 ]
	new_digest=$(sed -n 's/^CA rotated: *sha256 //p' <<<"$output")
	[ -n "$new_digest" ]
	[ "$new_digest" != "$old_digest" ]
	# The new tokens, printed, are in the files.
	[ "$(sed -n 's/^Join token: *//p' <<<"$output")" = "$(cat "$SKIFF_JOIN_TOKEN_FILE")" ]
	[ "$(sed -n 's/^Admin token: *//p' <<<"$output")" = "$(cat "$SKIFF_TOKEN_FILE")" ]
	wait_until 10 "[ \"\$(digest '$SKIFF_TOKEN_FILE')\" = '$new_digest' ]"
	[ "$(secret "$SKIFF_TOKEN_FILE")" = "$(secret "$BATS_TEST_TMPDIR/old-admin-token")" ]
	[ "$(fingerprint "$SKIFF_DATA_DIR/ca.pem")" = "$new_digest" ]
	sleep 2 # load goes on after the switch

	out=$(LOADGEN=a loadgen_stop) || { echo "$out"; false; }
	echo "$out"
	out=$(LOADGEN=b loadgen_stop) || { echo "$out"; false; }
	echo "$out"
	[ "$(containers web)" = "$before" ]
	for i in 1 2 3; do
		# Its certificate is of the new CA; it trusts the new CA alone.
		openssl verify -CAfile "$SKIFF_DATA_DIR/ca.pem" "$(agent_state_dir "$i")/cert.pem"
		wait_until 10 "cmp -s '$SKIFF_DATA_DIR/ca.pem' '$(agent_state_dir "$i")/ca.pem'"
		! openssl verify -CAfile "$BATS_TEST_TMPDIR/old-ca.pem" \
			<(openssl x509 -in "$(agent_state_dir "$i")/cert.pem") 2>/dev/null
		# No restart, no reconnection.
		[ "$(grep -c 'registered as node' "$SKIFF_TEST_DIR/agent-$i.log")" -eq 1 ]
		grep -q "node certificate renewed" "$SKIFF_TEST_DIR/agent-$i.log"
	done
	wait_nodes_ready 3 10
	# The old admin token now names a CA the controller no longer has.
	run skiff --token-file "$BATS_TEST_TMPDIR/old-admin-token" service ls
	[ "$status" -eq 1 ]
	[[ "$output" == *"does not end at the CA of the token"* ]]
	# New joins take the new token; agents restart with their new certificates.
	agent_restart 2
	wait_until 30 "[ \"\$(grep -c 'registered as node' '$SKIFF_TEST_DIR/agent-2.log')\" -ge 2 ]"
	agent_start 4
	wait_nodes_ready 4 30
	grep -q "rotated: the CA is sha256 $new_digest" "$SKIFF_TEST_DIR/controller.log"
	run skiff cluster ca
	[ "$status" -eq 0 ]
	[[ "$output" == *"sha256 $new_digest"* ]]
	[[ "$output" == *"Rotation:     none"* ]]
}

# ---------------------------------------------------------------- client certificates

@test "skiff cluster client-cert writes a client certificate of the cluster CA" {
	cluster_start 0
	local d=$BATS_TEST_TMPDIR/client
	run skiff cluster client-cert "$d"
	[ "$status" -eq 0 ]
	[ "$output" = "$d: ca.pem, cert.pem, key.pem" ]
	[ "$(stat -c %a "$d")" = 700 ]
	[ "$(stat -c %a "$d/key.pem")" = 600 ]
	cmp "$d/ca.pem" "$SKIFF_DATA_DIR/ca.pem"
	openssl verify -CAfile "$d/ca.pem" -purpose sslclient "$d/cert.pem"
	openssl x509 -in "$d/cert.pem" -noout -subject | grep -q "O = $CLUSTER_ID, OU = skiff-client"
	[ "$(openssl pkey -in "$d/key.pem" -pubout | sha256sum)" = \
		"$(openssl x509 -in "$d/cert.pem" -noout -pubkey | sha256sum)" ]
	grep -q "client certificate client-[0-9a-f]* issued" "$SKIFF_TEST_DIR/controller.log"
	# It writes over nothing.
	run skiff cluster client-cert "$d"
	[ "$status" -eq 1 ]
	[[ "$output" == *"ca.pem exists: give an empty directory"* ]]
	# A client certificate is no credential of the skiff protocol.
	run openssl s_client -connect "$SKIFF_HOST" -CAfile "$SKIFF_DATA_DIR/ca.pem" -cert "$d/cert.pem" \
		-key "$d/key.pem" -brief </dev/null
	wait_until 10 "grep -q 'refused: the certificate is not a skiff-node' '$SKIFF_TEST_DIR/controller.log'"
}

# ---------------------------------------------------------------- HTTPS

@test "--http-tls-cert/--http-tls-key serve /metrics over HTTPS on the controller and the agents" {
	local d=$BATS_TEST_TMPDIR/https cport aport
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=skiff-test -addext "subjectAltName=IP:127.0.0.1,IP:127.0.0.2" \
		-keyout "$d/key.pem" -out "$d/cert.pem" 2>/dev/null
	# One without the other: a one-line error, nothing started.
	run skiff-controller --http-tls-cert "$d/cert.pem" --data-dir "$BATS_TEST_TMPDIR/never"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--http-tls-cert and --http-tls-key go together"* ]]
	[ ! -e "$BATS_TEST_TMPDIR/never" ]
	run skiff-controller --http-tls-cert "$d/cert.pem" --http-tls-key /nonexistent \
		--data-dir "$BATS_TEST_TMPDIR/never"
	[ "$status" -eq 1 ]
	[[ "$output" == *"/nonexistent"* ]]
	[ ! -e "$BATS_TEST_TMPDIR/never" ]
	run skiff-agent --http-tls-key "$d/key.pem" --state-dir "$BATS_TEST_TMPDIR/never"
	[ "$status" -ne 0 ]
	[[ "$output" == *"--http-tls-cert and --http-tls-key go together"* ]]
	read -r cport aport < <(free_ports 2)
	SKIFF_AGENT_FLAGS="--metrics-listen @ADDR@:$aport --http-tls-cert $d/cert.pem --http-tls-key $d/key.pem" \
		cluster_start 1 --metrics-listen "127.0.0.1:$cport" --http-tls-cert "$d/cert.pem" \
		--http-tls-key "$d/key.pem"
	curl -sf --cacert "$d/cert.pem" "https://127.0.0.1:$cport/metrics" | grep -q '^skiff_nodes{'
	curl -sf --cacert "$d/cert.pem" "https://127.0.0.2:$aport/metrics" | grep -q '^skiff_engine_requests_total'
	# No plaintext on them.
	! curl -sf -m 5 "http://127.0.0.1:$cport/metrics" >/dev/null
	! curl -sf -m 5 "http://127.0.0.2:$aport/metrics" >/dev/null
}
