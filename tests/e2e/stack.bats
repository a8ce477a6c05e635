#!/usr/bin/env bats
# skiff stack: deploy a stack from a Compose file, redeploy it with a changed
# replica count (a scale: nothing else moves) and with a changed image (a
# rolling update), prune a service the file dropped, refuse a bad file
# without deploying anything, and remove the stack.
#
# One cluster for the file; the tests run in order and share stack "st".

load helpers

setup_file() {
	cluster_start 3
	export WEB_PORT CACHE_PORT STACK_FILE
	WEB_PORT=$(free_port)
	CACHE_PORT=$(free_port)
	STACK_FILE=$SKIFF_TEST_DIR/st.yml
	# The file takes its tag and replica count from the environment.
	cat >"$STACK_FILE" <<-EOF
		version: "3.8"
		x-web: &web
		  image: skiff-test/web:v1
		  stop_grace_period: 2s
		services:
		  web:
		    <<: *web
		    image: skiff-test/web:\${WEB_TAG:-v1}
		    ports:
		      - "$WEB_PORT:8080"
		    healthcheck:
		      x-skiff-http: /health
		      interval: 500ms
		    deploy:
		      replicas: \${WEB_REPLICAS:-2}
		      update_config:
		        parallelism: 1
		        order: start-first
		        monitor: 1s
		      labels:
		        com.example.tier: front
		  cache:
		    <<: *web
		    environment:
		      PORT: "$CACHE_PORT"
		    expose: [$CACHE_PORT]
		    deploy:
		      replicas: 1
	EOF
}

teardown_file() {
	skiff_teardown_file
}

teardown() {
	skiff_teardown
}

body_from() {
	http_get "http://$1:$WEB_PORT/"
}

@test "stack deploy creates the file's services and waits until they converged" {
	run skiff stack deploy -c "$STACK_FILE" st
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "Creating service st_web" ]]
	[[ "${lines[1]}" == "Creating service st_cache" ]]
	[ "$(grep -c 'verify: Service converged' <<<"$output")" -eq 2 ]
	[ "$(count_running st_web)" -eq 2 ]
	[ "$(count_running st_cache)" -eq 1 ]
	for i in 1 2 3; do
		wait_until 10 body_from "$(agent_addr $i)"
		[[ "$(body_from "$(agent_addr $i)")" == "v1 "* ]]
	done
	# the service labels from deploy.labels are on the containers
	c=$(service_containers st_web | head -n1)
	[ "$(container_label "$c" com.example.tier)" = front ]
}

@test "stack ls, services and ps show the stack" {
	run skiff stack ls
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "NAME"*"SERVICES" ]]
	[[ "$output" == *"st "*"2"* ]]
	run skiff stack ls --format json
	[ "$(jq -r '.[] | select(.name == "st") | .services' <<<"$output")" -eq 2 ]

	run skiff stack services st
	[ "$status" -eq 0 ]
	[[ "$output" == *"st_cache"*"replicated"*"1/1"*"skiff-test/web:v1"* ]]
	[[ "$output" == *"st_web"*"replicated"*"2/2"*"skiff-test/web:v1"*"*:$WEB_PORT->8080/tcp"* ]]
	run skiff stack services --format json st
	[ "$(jq -r 'map(.spec.stack) | unique | join(",")' <<<"$output")" = st ]
	[ "$(jq -r '.[] | select(.spec.name == "st_cache") | .spec.expose[0]' <<<"$output")" -eq \
		"$CACHE_PORT" ]

	run skiff stack ps st
	[ "$status" -eq 0 ]
	[[ "$output" == *"st_cache.1"*"Running"* ]]
	[[ "$output" == *"st_web.2"*"Running (healthy)"* ]]
	run skiff stack ps --format json st
	[ "$(jq -r '[.[] | select(.state == "running")] | length' <<<"$output")" -eq 3 ]
}

@test "redeploying the same file changes nothing" {
	before=$(skiff stack services --format json st | jq -c 'map({(.spec.name): .version}) | add')
	run skiff stack deploy -c "$STACK_FILE" st
	[ "$status" -eq 0 ]
	[[ "$output" == *"Service st_web is up to date"* ]]
	[[ "$output" == *"Service st_cache is up to date"* ]]
	[[ "$output" != *"verify"* ]]
	[ "$(skiff stack services --format json st | jq -c 'map({(.spec.name): .version}) | add')" = \
		"$before" ]
}

@test "a changed replica count scales, and nothing else moves" {
	cache_task=$(skiff service ps --format json st_cache | jq -r '.[0].id')
	web_tasks=$(skiff service ps --format json st_web |
		jq -r '[.[] | select(.desired_state == "running") | .id] | sort | join(",")')
	run env WEB_REPLICAS=4 skiff stack deploy -c "$STACK_FILE" st
	[ "$status" -eq 0 ]
	[[ "$output" == *"Scaling service st_web to 4"* ]]
	[[ "$output" == *"Service st_cache is up to date"* ]]
	[[ "${lines[-1]}" == "verify: Service converged" ]]
	[ "$(count_running st_web)" -eq 4 ]
	# the two tasks that ran still run: a scale replaces nothing
	now=$(skiff service ps --format json st_web |
		jq -r '[.[] | select(.desired_state == "running") | .id] | join(",")')
	for t in ${web_tasks//,/ }; do
		[[ ",$now," == *",$t,"* ]]
	done
	[ "$(skiff service ps --format json st_cache | jq -r '.[0].id')" = "$cache_task" ]
}

@test "a changed image rolls the service over to it" {
	run env WEB_REPLICAS=4 WEB_TAG=v2 skiff stack deploy -c "$STACK_FILE" st
	[ "$status" -eq 0 ]
	[[ "$output" == *"Updating service st_web"* ]]
	[[ "$output" == *"Service st_cache is up to date"* ]]
	[[ "${lines[-1]}" == "verify: Service converged" ]]
	run skiff service inspect st_web
	[ "$(jq -r '.[0].spec.image' <<<"$output")" = skiff-test/web:v2 ]
	[ "$(jq -r '.[0].spec.replicas' <<<"$output")" -eq 4 ]
	[ "$(jq -r '.[0].update_status.state' <<<"$output")" = completed ]
	for i in 1 2 3; do
		wait_until 10 '[[ "$(body_from '"$(agent_addr $i)"')" == "v2 "* ]]'
	done
	run skiff stack ps --format json st
	[ "$(jq -r '[.[] | select(.service_name == "st_web" and .desired_state == "running")] |
		map(.image) | unique | join(",")' <<<"$output")" = skiff-test/web:v2 ]
}

@test "a bad file is refused with its line, and nothing is deployed" {
	bad=$SKIFF_TEST_DIR/bad.yml
	printf 'services:\n  ok:\n    image: skiff-test/web:v1\n  api:\n    image: x\n    deploy:\n      replicas: three\n' >"$bad"
	run skiff stack deploy -c "$bad" stbad
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: $bad:7: services.api.deploy.replicas: expected an integer, not \"three\"" ]
	printf 'services:\n  ok:\n    image: skiff-test/web:v1\n    networks: [front]\n' >"$bad"
	run skiff stack deploy -c "$bad" stbad
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: $bad:4: services.ok.networks: not supported by skiff" ]
	printf 'services:\n  ok:\n    image: skiff-test/web:v1\n    deploy:\n      mode: global\n' >"$bad"
	run skiff stack deploy -c "$bad" stbad
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: $bad:5: services.ok.deploy.mode: global is not supported" ]
	# a port that another stack's service holds: refused before anything is created
	printf 'services:\n  a:\n    image: skiff-test/web:v1\n  b:\n    image: skiff-test/web:v1\n    ports: ["%s:8080"]\n' \
		"$WEB_PORT" >"$bad"
	run skiff stack deploy -c "$bad" stbad
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: stbad_b: port $WEB_PORT is already used by service st_web; nothing was deployed" ]
	run skiff stack deploy -c "$SKIFF_TEST_DIR/missing.yml" stbad
	[ "$status" -eq 1 ]
	[[ "$output" == "skiff: cannot read $SKIFF_TEST_DIR/missing.yml: No such file or directory" ]]
	run skiff stack ls --format json
	[ "$(jq -r '[.[] | select(.name == "stbad")] | length' <<<"$output")" -eq 0 ]
	run skiff stack services stbad
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: nothing found in stack: stbad" ]
}

@test "deploy --prune removes the services the file no longer has" {
	small=$SKIFF_TEST_DIR/small.yml
	sed '/^  cache:/,$d' "$STACK_FILE" >"$small"
	run env WEB_REPLICAS=4 WEB_TAG=v2 skiff stack deploy -c "$small" st
	[ "$status" -eq 0 ]
	[[ "$output" != *"Removing"* ]]
	[ "$(skiff stack services -q st | wc -l)" -eq 2 ]
	run env WEB_REPLICAS=4 WEB_TAG=v2 skiff stack deploy --prune -c "$small" st
	[ "$status" -eq 0 ]
	[[ "$output" == *"Service st_web is up to date"* ]]
	[[ "$output" == *"Removing service st_cache"* ]]
	[ "$(skiff stack services -q st | wc -l)" -eq 1 ]
	wait_until 30 '[ "$(count_running st_cache)" -eq 0 ]'
}

@test "named volumes are the stack's, and a stack from stdin works" {
	f=$SKIFF_TEST_DIR/vol.yml
	cat >"$f" <<-EOF
		services:
		  data:
		    image: skiff-test/web:v1
		    volumes:
		      - store:/store
		      - /tmp:/hosttmp:ro
		volumes:
		  store:
	EOF
	run skiff stack deploy -c - stv <"$f"
	[ "$status" -eq 0 ]
	c=$(service_containers stv_data | head -n1)
	[ -n "$c" ]
	[ "$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/store"}}{{.Name}}{{end}}{{end}}' "$c")" = stv_store ]
	[ "$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/hosttmp"}}{{.Source}} {{.RW}}{{end}}{{end}}' "$c")" = "/tmp false" ]
	run skiff stack rm stv
	[ "$status" -eq 0 ]
}

@test "stack rm removes every service of the stack and their containers" {
	run skiff stack rm st
	[ "$status" -eq 0 ]
	[ "$output" = "Removing service st_web" ]
	wait_until 30 '[ "$(count_running st_web)" -eq 0 ]'
	run skiff stack ls --format json
	[ "$(jq -r '[.[] | select(.name == "st")] | length' <<<"$output")" -eq 0 ]
	run skiff stack rm st
	[ "$status" -eq 1 ]
	[ "$output" = "skiff: nothing found in stack: st" ]
}
