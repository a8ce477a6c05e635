#!/usr/bin/env bats
# Secrets and configs against the real engine: a secret's file in every
# replica with the asked mode and owner, and its value nowhere else (docker
# inspect, service inspect, the logs, the store, the agents' disks); its
# files gone with the service; an agent restarted puts them back; rotation
# under load with no failed request; a stack with top-level secrets and
# configs (from files, and external); bad input refused, nothing changed.
#
# One cluster for the file; the tests run in order.

load helpers

setup_file() {
	cluster_start 3
	export VALUE VALUE2 CONFIG_VALUE
	VALUE="pw-$SKIFF_PREFIX-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
	VALUE2="pw2-$SKIFF_PREFIX-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
	CONFIG_VALUE="{\"greeting\": \"hello $SKIFF_PREFIX\"}"
	printf '%s' "$VALUE" >"$SKIFF_TEST_DIR/db_pass.txt"
	printf '%s' "$VALUE2" >"$SKIFF_TEST_DIR/db_pass_v2.txt"
	printf '%s' "$CONFIG_VALUE" >"$SKIFF_TEST_DIR/api.json"
}

teardown() { skiff_teardown; }
teardown_file() { skiff_teardown_file; }

# in_each SERVICE CMD...: runs CMD in every running container of SERVICE;
# prints each output on a line.
in_each() {
	local svc=$1 c
	shift
	for c in $(service_containers "$svc"); do
		docker exec "$c" "$@" || return 1
		echo
	done
}

# nowhere VALUE: VALUE is in no container's inspect, no service inspect, no
# log, not in the controller's data dir, not on the agents' disks (their
# state dirs but the tmpfs each mounts for the files).
nowhere() {
	local v=$1 i dir
	! docker inspect $(containers_of "$CLUSTER_ID" | cut -d' ' -f1) | grep -qF "$v"
	for s in $(skiff service ls -q); do
		! skiff service inspect --format json "$s" | grep -qF "$v"
	done
	! grep -qF "$v" "$SKIFF_TEST_DIR"/*.log
	! grep -rqaF "$v" "$SKIFF_DATA_DIR"
	for ((i = 1; i <= SKIFF_AGENTS; i++)); do
		dir=$(agent_state_dir "$i")
		! grep -rqaF --exclude-dir=secrets "$v" "$dir"
		if [ -d "$dir/secrets" ]; then
			[ "$(stat -f -c %T "$dir/secrets")" = tmpfs ]
		fi
	done
}

# task_dirs: the per-task dirs on every agent's tmpfs.
task_dirs() {
	local i n=0 dir
	for ((i = 1; i <= SKIFF_AGENTS; i++)); do
		dir=$(agent_state_dir "$i")/secrets
		[ -d "$dir" ] && n=$((n + $(find "$dir" -mindepth 1 -maxdepth 1 -type d | wc -l)))
	done
	echo "$n"
}

none_running() { [ "$(count_running "$1")" -eq 0 ]; }
task_dirs_are() { [ "$(task_dirs)" -eq "$1" ]; }

@test "a secret and a config are files in every replica, with mode and owner; the value is nowhere else; gone with the service" {
	run skiff secret create db_pass "$SKIFF_TEST_DIR/db_pass.txt"
	[ "$status" -eq 0 ]
	[[ "$output" =~ ^[0-9a-f]{16}$ ]]
	run skiff config create api.json - <"$SKIFF_TEST_DIR/api.json"
	[ "$status" -eq 0 ]
	run skiff secret ls
	[[ "$output" == *db_pass* ]]
	run skiff secret inspect db_pass
	[ "$status" -eq 0 ]
	! grep -qF "$VALUE" <<<"$output"
	run skiff config inspect --pretty api.json
	[[ "$output" == *"hello $SKIFF_PREFIX"* ]]

	PORT=$(free_port)
	run skiff service create -q --name api --replicas 3 -p "$PORT:8080" \
		--secret source=db_pass,target=db_pass,uid=1000,gid=1001,mode=0400 \
		--config source=api.json,target=/etc/api.json skiff-test/web:v1
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(count_running api)" -eq 3 ]
	[ "$(in_each api cat /run/secrets/db_pass | grep -cxF "$VALUE")" -eq 3 ]
	[ "$(in_each api stat -c '%a %u %g' /run/secrets/db_pass | grep -cx '400 1000 1001')" -eq 3 ]
	[ "$(in_each api cat /etc/api.json | grep -cxF "$CONFIG_VALUE")" -eq 3 ]
	[ "$(in_each api stat -c '%a' /etc/api.json | grep -cx 444)" -eq 3 ]
	# read-only
	c=$(service_containers api | head -n1)
	! docker exec "$c" sh -c 'echo x >/run/secrets/db_pass'
	# in use: not removed, the service named
	run skiff secret rm db_pass
	[ "$status" -ne 0 ]
	[[ "$output" == *"in use by service api"* ]]
	[ "$(task_dirs)" -eq 3 ]
	nowhere "$VALUE"

	run skiff service rm api
	[ "$status" -eq 0 ]
	wait_until 30 none_running api
	wait_until 30 task_dirs_are 0
}

@test "an agent restarted adopts its containers and puts their files back" {
	PORT=$(free_port)
	run skiff service create -q --name keep --replicas 3 -p "$PORT:8080" \
		--secret db_pass skiff-test/web:v1
	[ "$status" -eq 0 ]
	before=$(service_containers keep | sort)
	agent_kill 1
	# the tmpfs outlives it; a new agent takes it over
	rm -rf "$(agent_state_dir 1)/secrets/"*/ 2>/dev/null || true
	agent_start 1
	wait_nodes_ready 3 30
	sleep 3
	[ "$(service_containers keep | sort)" = "$before" ]
	[ "$(in_each keep cat /run/secrets/db_pass | grep -cxF "$VALUE")" -eq 3 ]
	wait_until 30 task_dirs_are 3
	skiff service rm keep
	wait_until 30 none_running keep
}

@test "rotation under load: --secret-rm db_pass --secret-add source=db_pass_v2,target=db_pass rolls with no failed request" {
	run skiff secret create db_pass_v2 "$SKIFF_TEST_DIR/db_pass_v2.txt"
	[ "$status" -eq 0 ]
	PORT=$(free_port)
	run skiff service create -q --name rot --replicas 3 -p "$PORT:8080" \
		--health-http /health --health-interval 500ms --update-order start-first \
		--update-monitor 1s --secret db_pass skiff-test/web:v1
	[ "$status" -eq 0 ]
	for i in 1 2 3; do
		wait_until 30 http_get "http://$(agent_addr "$i"):$PORT/"
	done
	loadgen_start --url "http://$(agent_addr 1):$PORT/" --url "http://$(agent_addr 2):$PORT/" \
		--url "http://$(agent_addr 3):$PORT/" --concurrency 4 --interval 5ms
	run timeout 300 skiff service update --secret-rm db_pass \
		--secret-add source=db_pass_v2,target=db_pass rot
	echo "$output"
	[ "$status" -eq 0 ]
	run loadgen_stop
	echo "$output"
	[ "$status" -eq 0 ]
	echo "# rotation: $(jq -c '{requests, failures}' <<<"$output")" >&3
	[ "$(in_each rot cat /run/secrets/db_pass | grep -cxF "$VALUE2")" -eq 3 ]
	# the old one is free now
	run skiff secret rm db_pass
	[ "$status" -eq 0 ]
	nowhere "$VALUE2"
	skiff service rm rot
	wait_until 30 none_running rot
}

@test "a stack's top-level secrets and configs (a file, external) deploy; stack rm removes its own only" {
	printf 'ext-%s' "$SKIFF_PREFIX" | skiff secret create shared_ext -
	PORT=$(free_port)
	cat >"$SKIFF_TEST_DIR/stack.yml" <<-EOF
		services:
		  web:
		    image: skiff-test/web:v1
		    ports: ["$PORT:8080"]
		    secrets:
		      - db_pass
		      - source: shared_ext
		        target: ext
		        mode: 0440
		    configs:
		      - source: app
		        target: /etc/app.json
		    deploy:
		      replicas: 2
		secrets:
		  db_pass:
		    file: ./db_pass.txt
		  shared_ext:
		    external: true
		configs:
		  app:
		    file: ./api.json
	EOF
	run skiff stack deploy -c "$SKIFF_TEST_DIR/stack.yml" st
	echo "$output"
	[ "$status" -eq 0 ]
	run skiff secret ls
	[[ "$output" == *st_db_pass* ]]
	run skiff config ls
	[[ "$output" == *st_app* ]]
	[ "$(in_each st_web cat /run/secrets/db_pass | grep -cxF "$VALUE")" -eq 2 ]
	[ "$(in_each st_web cat /run/secrets/ext | grep -cxF "ext-$SKIFF_PREFIX")" -eq 2 ]
	[ "$(in_each st_web stat -c %a /run/secrets/ext | grep -cx 440)" -eq 2 ]
	[ "$(in_each st_web cat /etc/app.json | grep -cxF "$CONFIG_VALUE")" -eq 2 ]
	# redeploying the same file changes nothing
	v=$(skiff service inspect st_web | jq '.[0].version')
	run skiff stack deploy -c "$SKIFF_TEST_DIR/stack.yml" st
	[ "$status" -eq 0 ]
	[ "$(skiff service inspect st_web | jq '.[0].version')" -eq "$v" ]

	run skiff stack rm st
	[ "$status" -eq 0 ]
	run skiff secret ls --format json
	[ "$(jq '[.[] | select(.name == "st_db_pass")] | length' <<<"$output")" -eq 0 ]
	[ "$(jq '[.[] | select(.name == "shared_ext")] | length' <<<"$output")" -eq 1 ]
	run skiff config ls --format json
	[ "$(jq '[.[] | select(.name == "st_app")] | length' <<<"$output")" -eq 0 ]
	wait_until 30 none_running st_web
}

@test "bad input: too big, bad name, unknown secret, duplicate target, rm in use: one line each, nothing changed" {
	head -c 614400 /dev/zero | tr '\0' 'x' >"$SKIFF_TEST_DIR/big"
	echo a | skiff secret create dup_a -
	echo b | skiff secret create dup_b -
	before=$(skiff secret ls --format json | jq -c "[.[] | {id, name}]")
	run skiff secret create big "$SKIFF_TEST_DIR/big"
	echo "$output"
	[ "$status" -ne 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *"614400 bytes"* ]]
	run skiff secret create "bad/name" "$SKIFF_TEST_DIR/db_pass.txt"
	[ "$status" -ne 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *"bad/name"* ]]
	run skiff service create -d --name nope --secret missing_secret skiff-test/web:v1
	echo "$output"
	[ "$status" -ne 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *missing_secret* ]]
	run skiff service create -d --name nope --secret source=dup_a,target=t \
		--secret source=dup_b,target=t skiff-test/web:v1
	echo "$output"
	[ "$status" -ne 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *"target t"* ]]
	run skiff service ls -q
	[ -z "$output" ]
	[ "$(skiff secret ls --format json | jq -c "[.[] | {id, name}]")" = "$before" ]
	# in use: refused, naming the service; nothing removed
	skiff service create -q -d --name user --secret dup_a skiff-test/web:v1
	run skiff secret rm dup_a
	echo "$output"
	[ "$status" -ne 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *"secret dup_a is in use by service user"* ]]
	[ "$(skiff secret ls --format json | jq -c "[.[] | {id, name}]")" = "$before" ]
	skiff service rm user
}
