#!/usr/bin/env bats
# The controller's HTTP API (issue 17) with curl only, against the real
# engine: every path under /api/v1/ answers the same JSON as the CLI's
# --format json, the actions (scale, rollback, drain) change the cluster and
# the engine, and every bad request is one JSON {"error": ...} with a 4xx
# status, changing nothing: no token 401, unknown service 404, bad JSON 400,
# replicas -1 400 naming the field, a 10 MB body 413. The dashboard's login:
# POST login gives an HttpOnly SameSite=Strict session cookie and a CSRF
# token; with the cookie an action without that token is 403 and changes
# nothing; logout ends the session.
#
# One cluster for the file: a controller with --http-listen and 3 agents.

load helpers

setup_file() {
	export HTTP_PORT
	HTTP_PORT=$(free_port)
	cluster_start 3 --http-listen "127.0.0.1:$HTTP_PORT"
	export API="http://127.0.0.1:$HTTP_PORT/api/v1"
	skiff service create -q --name aweb --replicas 2 skiff-test/web:v1 >/dev/null
}

teardown_file() {
	skiff_teardown_file
}

teardown() {
	[ "${BATS_TEST_COMPLETED:-}" = 1 ] || dump_logs
	true
}

# api METHOD PATH [BODY]: prints "STATUS" then the body on the next line.
api() {
	local method=$1 path=$2 body=${3-}
	local args=(-s --noproxy '*' --max-time 10 -X "$method" -o "$BATS_TEST_TMPDIR/body"
		-w '%{http_code}' -H "Authorization: Bearer $(cat "$SKIFF_TOKEN_FILE")")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
	curl "${args[@]}" "$API/$path"
	echo
	cat "$BATS_TEST_TMPDIR/body"
}

status_of() { head -n1 <<<"$1"; }
body_of() { tail -n +2 <<<"$1"; }

@test "without the admin token every API path answers 401 with a JSON error" {
	for p in nodes services services/aweb tasks events; do
		run curl -s --noproxy '*' -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' "$API/$p"
		[ "$output" = 401 ]
		jq -e '.error | test("token")' "$BATS_TEST_TMPDIR/b"
	done
	run curl -s --noproxy '*' -w '%{http_code}' -o /dev/null -H 'Authorization: Bearer nope' "$API/nodes"
	[ "$output" = 401 ]
	grep -q 'http: 127.0.0.1: refused GET /api/v1/nodes: wrong token' "$SKIFF_TEST_DIR/controller.log"
	# an action without the token changes nothing
	run curl -s --noproxy '*' -w '%{http_code}' -o /dev/null -X POST -d '{"replicas":5}' "$API/services/aweb/scale"
	[ "$output" = 401 ]
	[ "$(skiff service inspect aweb | jq '.[0].spec.replicas')" = 2 ]
}

@test "GET nodes and nodes/{id} answer what skiff node ls --format json says" {
	out=$(api GET nodes)
	[ "$(status_of "$out")" = 200 ]
	body_of "$out" | jq -e 'length == 3 and all(.state == "ready")'
	diff <(body_of "$out" | jq -S '[.[] | {id, name, address, state, availability}]') \
		<(skiff node ls --format json | jq -S '[.[] | {id, name, address, state, availability}]')
	out=$(api GET "nodes/$NODE_1")
	[ "$(status_of "$out")" = 200 ]
	[ "$(body_of "$out" | jq -r .name)" = "$NODE_1" ]
	out=$(api GET nodes/nosuchnode)
	[ "$(status_of "$out")" = 404 ]
	body_of "$out" | jq -e '.error == "no such node: nosuchnode"'
}

@test "GET services, services/{id}, services/{id}/tasks, tasks/{id}, services/{id}/stats and /metrics" {
	wait_until 30 '[ "$(count_running aweb)" = 2 ]'
	out=$(api GET services)
	[ "$(status_of "$out")" = 200 ]
	diff <(body_of "$out" | jq -S '[.[] | {id, spec, version}]') \
		<(skiff service ls --format json | jq -S '[.[] | {id, spec, version}]')
	id=$(body_of "$out" | jq -r '.[0].id')
	out=$(api GET "services/$id")
	[ "$(status_of "$out")" = 200 ]
	[ "$(body_of "$out" | jq -r .spec.name)" = aweb ]
	out=$(api GET services/aweb/tasks)
	[ "$(status_of "$out")" = 200 ]
	body_of "$out" | jq -e 'length == 2 and all(.service_name == "aweb")'
	tid=$(body_of "$out" | jq -r '.[0].id')
	out=$(api GET "tasks/$tid")
	[ "$(status_of "$out")" = 200 ]
	[ "$(body_of "$out" | jq -r .id)" = "$tid" ]
	out=$(api GET tasks)
	body_of "$out" | jq -e 'length >= 2'
	out=$(api GET services/aweb/stats)
	[ "$(status_of "$out")" = 200 ]
	body_of "$out" | jq -e 'type == "array"'
	# the charts' figures: a sample every 5 s, kept 15 minutes
	wait_until 15 '[ "$(body_of "$(api GET services/aweb/metrics)" | jq ".samples | length")" -ge 1 ]'
	out=$(api GET services/aweb/metrics)
	body_of "$out" | jq -e '.interval_ms == 5000 and .service == "aweb" and
		(.samples[-1] | has("connections_per_second") and has("cpu_percent") and .running >= 1)'
	[ "$(status_of "$(api GET services/nosuch/metrics)")" = 404 ]
	[ "$(status_of "$(api GET services/nosuch)")" = 404 ]
	[ "$(status_of "$(api GET services/nosuch/tasks)")" = 404 ]
	[ "$(status_of "$(api GET tasks/nosuch)")" = 404 ]
	[ "$(status_of "$(api GET nosuchpath)")" = 404 ]
	[ "$(status_of "$(api DELETE services)")" = 405 ]
	[ "$(status_of "$(api GET 'services/aweb/tasks?offset=x')")" = 400 ]
}

@test "POST services/{id}/scale scales on the engine; bad input is 400/404/413 and changes nothing" {
	out=$(api POST services/aweb/scale '{"replicas":3}')
	[ "$(status_of "$out")" = 200 ]
	[ "$(body_of "$out" | jq .spec.replicas)" = 3 ]
	wait_until 30 '[ "$(count_running aweb)" = 3 ]'
	out=$(api POST services/aweb/scale '{"replicas":-1}')
	[ "$(status_of "$out")" = 400 ]
	body_of "$out" | jq -e '.error | startswith("replicas:")'
	out=$(api POST services/aweb/scale '{"replicas":"x"}')
	[ "$(status_of "$out")" = 400 ]
	out=$(api POST services/aweb/scale '{"replicas":2,"other":1}')
	[ "$(status_of "$out")" = 400 ]
	body_of "$out" | jq -e '.error == "other: unknown field"'
	out=$(api POST services/aweb/scale '{bad json')
	[ "$(status_of "$out")" = 400 ]
	[ "$(body_of "$out" | wc -l)" = 1 ]
	body_of "$out" | jq -e '.error | startswith("body: not valid JSON")'
	out=$(api POST services/nosuch/scale '{"replicas":1}')
	[ "$(status_of "$out")" = 404 ]
	body_of "$out" | jq -e '.error == "no such service: nosuch"'
	head -c 10000000 /dev/zero | tr '\0' ' ' >"$BATS_TEST_TMPDIR/big"
	run curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -X POST \
		-H "Authorization: Bearer $(cat "$SKIFF_TOKEN_FILE")" --data-binary @"$BATS_TEST_TMPDIR/big" \
		"$API/services/aweb/scale"
	[ "$output" = 413 ]
	[ "$(skiff service inspect aweb | jq '.[0].spec.replicas')" = 3 ]
	[ "$(count_running aweb)" = 3 ]
}

@test "POST services/{id}/rollback rolls back to the previous spec; without one it is 400" {
	out=$(api POST services/aweb/rollback)
	[ "$(status_of "$out")" = 400 ]
	body_of "$out" | jq -e '.error | test("no previous spec")'
	skiff service update -q --image skiff-test/web:v2 aweb >/dev/null
	out=$(api POST services/aweb/rollback)
	[ "$(status_of "$out")" = 200 ]
	wait_until 60 '[ "$(skiff service inspect aweb | jq -r ".[0].update_status.state")" = rollback_completed ]'
	[ "$(skiff service inspect aweb | jq -r '.[0].spec.image')" = skiff-test/web:v1 ]
}

@test "POST nodes/{id}/availability drains a node and its tasks leave it" {
	out=$(api POST "nodes/$NODE_1/availability" '{"availability":"sideways"}')
	[ "$(status_of "$out")" = 400 ]
	body_of "$out" | jq -e '.error | startswith("availability:")'
	out=$(api POST "nodes/$NODE_1/availability" '{"availability":"drain"}')
	[ "$(status_of "$out")" = 200 ]
	[ "$(body_of "$out" | jq -r .availability)" = drain ]
	wait_until 30 '[ "$(docker ps -q --filter label=skiff.cluster=$CLUSTER_ID --filter label=skiff.node=$(skiff node inspect $NODE_1 | jq -r ".[0].id") | wc -l)" = 0 ]'
	out=$(api POST "nodes/$NODE_1/availability" '{"availability":"active"}')
	[ "$(body_of "$out" | jq -r .availability)" = active ]
}

@test "POST nodes/{id}/labels sets and removes the node's labels; mistakes 400 and 404" {
	out=$(api POST "nodes/$NODE_1/labels" '{"add":{"zone":"edge","tier":"1"}}')
	[ "$(status_of "$out")" = 200 ]
	[ "$(body_of "$out" | jq -r '.spec_labels | map(.key + "=" + .value) | sort | join(",")')" = "tier=1,zone=edge" ]
	[ "$(body_of "$out" | jq -r .availability)" = active ]
	out=$(api POST "nodes/$NODE_1/labels" '{"rm":["zone","tier"]}')
	[ "$(status_of "$out")" = 200 ]
	[ "$(body_of "$out" | jq -r '.spec_labels | length')" = 0 ]
	out=$(api POST "nodes/$NODE_1/labels" '{"rm":["zone"]}')
	[ "$(status_of "$out")" = 404 ]
	body_of "$out" | jq -e '.error | endswith("has no label zone")'
	out=$(api POST "nodes/$NODE_1/labels" '{"add":{"skiff.x":"1"}}')
	[ "$(status_of "$out")" = 400 ]
	body_of "$out" | jq -e '.error == "label_add: skiff.x: the skiff. prefix is reserved"'
	out=$(api POST "nodes/$NODE_1/labels" '{"add":["zone"]}')
	[ "$(status_of "$out")" = 400 ]
	body_of "$out" | jq -e '.error | startswith("add:")'
}

@test "GET events is Server-Sent Events: the past with ?since=, then live; bad filters 400" {
	curl -s -N --noproxy '*' --max-time 6 -H "Authorization: Bearer $(cat "$SKIFF_TOKEN_FILE")" \
		"$API/events?since=1h&type=service" >"$BATS_TEST_TMPDIR/sse" &
	sleep 1
	skiff service scale aweb=2 >/dev/null
	wait
	grep -q '^event: event$' "$BATS_TEST_TMPDIR/sse"
	grep '^data: ' "$BATS_TEST_TMPDIR/sse" | sed 's/^data: //' | jq -s -e \
		'any(.action == "create" and .name == "aweb") and any(.action == "scale") and all(.type == "service")'
	[ "$(status_of "$(api GET 'events?type=bogus')")" = 400 ]
	[ "$(status_of "$(api GET 'events?since=yesterday')")" = 400 ]
}

@test "GET services/{id}/logs is Server-Sent Events of service logs; bad tail 400, unknown 404" {
	wait_until 30 '[ "$(count_running aweb)" -ge 1 ]'
	for c in $(service_containers aweb); do
		curl -s --noproxy '*' "http://$(container_port "$c")/" >/dev/null || true
	done
	run curl -s -N --noproxy '*' --max-time 10 -H "Authorization: Bearer $(cat "$SKIFF_TOKEN_FILE")" \
		"$API/services/aweb/logs?tail=20"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q '^event: end$'
	echo "$output" | grep '^data: ' | head -n -1 | sed 's/^data: //' | jq -s -e \
		'length > 0 and all(.task_name | startswith("aweb."))'
	[ "$(skiff service logs aweb 2>&1 | wc -l)" -gt 0 ]
	# a follower that goes away: the agents are told to stop, the controller goes on
	run curl -s -N --noproxy '*' --max-time 2 -H "Authorization: Bearer $(cat "$SKIFF_TOKEN_FILE")" \
		"$API/services/aweb/logs?tail=1&follow=1"
	[ "$status" -eq 28 ] # curl's timeout: the stream stayed open
	[ "$(status_of "$(api GET services/aweb)")" = 200 ]
	[ "$(status_of "$(api GET 'services/aweb/logs?tail=x')")" = 400 ]
	[ "$(status_of "$(api GET 'services/nosuch/logs')")" = 404 ]
}

@test "POST login: a session cookie (HttpOnly, SameSite=Strict) and a CSRF token; actions need it; logout ends it" {
	local jar=$BATS_TEST_TMPDIR/jar hdr=$BATS_TEST_TMPDIR/hdr
	lc() { curl -s --noproxy '*' --max-time 10 -b "$jar" -c "$jar" "$@"; }
	# a wrong token: 401 with a clear message, logged with the peer's address, no cookie
	run lc -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' -D "$hdr" -X POST -d '{"token":"nope"}' "$API/login"
	[ "$output" = 401 ]
	jq -e '.error | test("wrong admin token")' "$BATS_TEST_TMPDIR/b"
	run grep -ci '^set-cookie' "$hdr"
	[ "$output" = 0 ]
	grep -q 'http: 127.0.0.1: refused POST /api/v1/login: wrong token' "$SKIFF_TEST_DIR/controller.log"
	[ "$(lc -o /dev/null -w '%{http_code}' -X POST -d '{}' "$API/login")" = 400 ]
	[ "$(lc -o /dev/null -w '%{http_code}' "$API/login")" = 405 ]
	# the admin token: the cookie's flags, and the CSRF token in the body
	run lc -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' -D "$hdr" -X POST \
		-d "{\"token\":\"$(cat "$SKIFF_TOKEN_FILE")\"}" "$API/login"
	[ "$output" = 200 ]
	cookie=$(grep -i '^set-cookie: skiff_session=' "$hdr" | tr -d '\r')
	echo "$cookie"
	[[ "$cookie" =~ skiff_session=[0-9a-f]{64}\; ]]
	[[ "$cookie" == *"; HttpOnly"* && "$cookie" == *"; SameSite=Strict"* && "$cookie" == *"; Path=/"* ]]
	csrf=$(jq -r .csrf_token "$BATS_TEST_TMPDIR/b")
	[[ "$csrf" =~ ^[0-9a-f]{64}$ ]]
	run grep -c "$(cat "$SKIFF_TOKEN_FILE")" "$jar" "$BATS_TEST_TMPDIR/b"
	[ "$status" -eq 1 ] # the admin token is in neither
	# reads with the cookie alone
	[ "$(lc -o /dev/null -w '%{http_code}' "$API/services/aweb")" = 200 ]
	before=$(skiff service inspect aweb | jq '.[0].spec.replicas')
	# an action with the cookie and no CSRF token, or a wrong one: 403, nothing changes
	run lc -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' -X POST -d '{"replicas":4}' "$API/services/aweb/scale"
	[ "$output" = 403 ]
	jq -e '.error | test("X-CSRF-Token")' "$BATS_TEST_TMPDIR/b"
	run lc -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' -X POST -H "X-CSRF-Token: ${csrf%?}0" \
		-d '{"replicas":4}' "$API/services/aweb/scale"
	[ "$output" = 403 ]
	run lc -o /dev/null -w '%{http_code}' -X POST -H 'X-CSRF-Token: x' \
		-d '{"availability":"drain"}' "$API/nodes/$NODE_2/availability"
	[ "$output" = 403 ]
	grep -q 'http: 127.0.0.1: refused POST /api/v1/services/aweb/scale: no CSRF token' "$SKIFF_TEST_DIR/controller.log"
	grep -q 'http: 127.0.0.1: refused POST /api/v1/services/aweb/scale: wrong CSRF token' "$SKIFF_TEST_DIR/controller.log"
	sleep 1
	[ "$(skiff service inspect aweb | jq '.[0].spec.replicas')" = "$before" ]
	[ "$(skiff node inspect "$NODE_2" | jq -r '.[0].availability')" = active ]
	# with it: done
	run lc -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' -X POST -H "X-CSRF-Token: $csrf" \
		-d "{\"replicas\":$((before + 1))}" "$API/services/aweb/scale"
	[ "$output" = 200 ]
	[ "$(skiff service inspect aweb | jq '.[0].spec.replicas')" = $((before + 1)) ]
	wait_until 30 '[ "$(count_running aweb)" = $((before + 1)) ]'
	# the Bearer token needs no CSRF token
	[ "$(status_of "$(api POST services/aweb/scale "{\"replicas\":$before}")")" = 200 ]
	# the events stream with the cookie
	run lc -N --max-time 2 "$API/events?since=1h"
	[[ "$output" == *": skiff events"* ]]
	# logout: needs the CSRF token too, clears the cookie; the old cookie is refused after
	[ "$(lc -o /dev/null -w '%{http_code}' -X POST "$API/logout")" = 403 ]
	cp "$jar" "$BATS_TEST_TMPDIR/old-jar"
	run lc -o /dev/null -w '%{http_code}' -D "$hdr" -X POST -H "X-CSRF-Token: $csrf" "$API/logout"
	[ "$output" = 200 ]
	grep -qi '^set-cookie: skiff_session=;.*Max-Age=0' "$hdr"
	run curl -s --noproxy '*' -b "$BATS_TEST_TMPDIR/old-jar" -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' "$API/nodes"
	[ "$output" = 401 ]
	jq -e '.error | test("unknown or expired")' "$BATS_TEST_TMPDIR/b"
	run curl -s --noproxy '*' -b "$BATS_TEST_TMPDIR/old-jar" -o /dev/null -w '%{http_code}' -X POST \
		-H "X-CSRF-Token: $csrf" -d '{"replicas":1}' "$API/services/aweb/scale"
	[ "$output" = 401 ]
	[ "$(skiff service inspect aweb | jq '.[0].spec.replicas')" = "$before" ]
}

@test "a new admin token ends every dashboard session (the last test: it rotates the token)" {
	local jar=$BATS_TEST_TMPDIR/jar old
	old=$(cat "$SKIFF_TOKEN_FILE")
	curl -s --noproxy '*' -c "$jar" -o /dev/null -X POST -d "{\"token\":\"$old\"}" "$API/login"
	[ "$(curl -s --noproxy '*' -b "$jar" -o /dev/null -w '%{http_code}' "$API/nodes")" = 200 ]
	run skiff-controller --rotate-token admin --data-dir "$SKIFF_DATA_DIR"
	[ "$status" -eq 0 ]
	wait_until 10 '[ "$(curl -s --noproxy "*" -o /dev/null -w "%{http_code}" -H "Authorization: Bearer $old" "$API/nodes")" = 401 ]'
	[ "$(curl -s --noproxy '*' -b "$jar" -o /dev/null -w '%{http_code}' "$API/nodes")" = 401 ]
	[ "$(status_of "$(api GET nodes)")" = 200 ] # the new token, from the file
	run curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -X POST -d "{\"token\":\"$old\"}" "$API/login"
	[ "$output" = 401 ]
}
