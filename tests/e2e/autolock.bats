#!/usr/bin/env bats
# skiff-controller --autolock: the secrets' data key is wrapped by an unlock
# key that is printed once and never written; a restarted controller serves
# nothing that needs a secret until `skiff-controller unlock` gives it the
# key, and the containers that run meanwhile are left alone.

load helpers

setup_file() {
	cluster_start 2 --autolock
}

teardown() { skiff_teardown; }
teardown_file() { skiff_teardown_file; }

files_read() { [ "$(in_each "$1" cat /run/secrets/lk | grep -cxF "$2")" -eq "$3" ]; }

in_each() {
	local svc=$1 c
	shift
	for c in $(service_containers "$svc"); do
		docker exec "$c" "$@" || return 1
		echo
	done
}

@test "--autolock: locked after a restart until unlocked; running containers untouched meanwhile" {
	key=$(grep -o 'SKIFF-UNLOCK-[0-9a-f]*' "$SKIFF_TEST_DIR/controller.log" | head -n1)
	[ "${#key}" -eq 77 ]
	# the data key is on disk only wrapped; the unlock key is nowhere on disk
	grep -q '^skiff-secret-key 1 wrapped ' "$SKIFF_DATA_DIR/secret-key"
	! grep -rqaF "${key#SKIFF-UNLOCK-}" "$SKIFF_DATA_DIR"
	value="lk-$SKIFF_PREFIX"
	printf '%s' "$value" | skiff secret create lk -
	PORT=$(free_port)
	run skiff service create -q --name lk --replicas 2 -p "$PORT:8080" --secret lk \
		skiff-test/web:v1
	[ "$status" -eq 0 ]
	files_read lk "$value" 2
	ids=$(service_containers lk | sort)

	controller_restart
	wait_nodes_ready 2 30
	grep -q 'secrets are locked' "$SKIFF_TEST_DIR/controller.log"
	# nothing that needs a secret is served
	run skiff secret create lk2 - <<<"x"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"skiff-controller unlock"* ]]
	run skiff service create -d --name lk2 --secret lk skiff-test/web:v1
	[ "$status" -ne 0 ]
	[[ "$output" == *"locked"* ]]
	run skiff service ls -q
	[ "$(wc -l <<<"$output")" -eq 1 ]
	# ... and what runs is left alone
	sleep 4
	[ "$(service_containers lk | sort)" = "$ids" ]
	files_read lk "$value" 2
	# a wrong key, a malformed one: refused
	run "$SKIFF_BIN/skiff-controller" unlock --host "$SKIFF_HOST" --data-dir "$SKIFF_DATA_DIR" \
		<<<"SKIFF-UNLOCK-$(printf '0%.0s' $(seq 64))"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"wrong unlock key"* ]]
	run "$SKIFF_BIN/skiff-controller" unlock --host "$SKIFF_HOST" --data-dir "$SKIFF_DATA_DIR" \
		<<<"not-a-key"
	[ "$status" -ne 0 ]
	[[ "$output" == *"not an unlock key"* ]]

	run "$SKIFF_BIN/skiff-controller" unlock --host "$SKIFF_HOST" --data-dir "$SKIFF_DATA_DIR" \
		<<<"$key"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = unlocked ]
	run skiff service scale lk=3
	[ "$status" -eq 0 ]
	files_read lk "$value" 3
	[ -z "$(comm -23 <(echo "$ids") <(service_containers lk | sort))" ]
	run "$SKIFF_BIN/skiff-controller" unlock --host "$SKIFF_HOST" --data-dir "$SKIFF_DATA_DIR" \
		<<<"$key"
	[ "$status" -ne 0 ]
	[[ "$output" == *"not locked"* ]]
}
