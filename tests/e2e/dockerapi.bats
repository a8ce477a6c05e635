#!/usr/bin/env bats
# The Docker Engine API's Swarm endpoints (issue 22): the real docker CLI
# (/usr/local/bin/docker) pointed at skiff with DOCKER_HOST drives a skiff
# cluster of real agents, and what it makes really runs on the engine.
#
# One cluster for the file: a controller with --docker-api-listen and
# --docker-api-tls, and 3 agents; the docker CLI talks TLS with a client
# certificate of the cluster CA (--tlsverify, `skiff cluster client-cert`).
# The tests run in order, on one service "web".

load helpers

setup_file() {
	export DAPI_PORT WEB_PORT DOCKER_CLI T0 DCERT
	T0=$(date +%s)
	DAPI_PORT=$(free_port)
	WEB_PORT=$(free_port)
	DOCKER_CLI=/usr/local/bin/docker
	[ -x "$DOCKER_CLI" ] || DOCKER_CLI=$(command -v docker)
	# the shop's databases go where node.labels.db == dapi (its stack test)
	SKIFF_AGENT_FLAGS="--label db=dapi" cluster_start 3 --docker-api-listen "127.0.0.1:$DAPI_PORT" --docker-api-tls
	DCERT=$BATS_FILE_TMPDIR/docker-cert
	skiff cluster client-cert "$DCERT" >/dev/null
}

teardown_file() {
	skiff_teardown_file
	# the shop stack test's image tags and volumes, whatever became of the test
	docker images --format '{{.Repository}}:{{.Tag}}' | grep "^skiffe2e-dapi-$SKIFF_PREFIX/" |
		xargs -r docker rmi >/dev/null 2>&1 || true
	[ -s "$BATS_FILE_TMPDIR/shop-stack" ] &&
		docker volume rm "$(cat "$BATS_FILE_TMPDIR/shop-stack")_pgdata" \
			"$(cat "$BATS_FILE_TMPDIR/shop-stack")_redisdata" >/dev/null 2>&1
	true
}

teardown() {
	[ "${BATS_TEST_COMPLETED:-}" = 1 ] || dump_logs
	true
}

# dcurl ARGS...: curl with the client certificate.
dcurl() {
	curl --noproxy '*' --cacert "$DCERT/ca.pem" --cert "$DCERT/cert.pem" --key "$DCERT/key.pem" "$@"
}

# dk ARGS...: the docker CLI against skiff (the engine itself is `docker`).
dk() {
	DOCKER_HOST=tcp://127.0.0.1:$DAPI_PORT DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$DCERT \
		timeout 120 "$DOCKER_CLI" "$@"
}

@test "the listener says it serves TLS; without TLS a non-loopback address is refused" {
	grep -q "docker api: listening on 127.0.0.1:$DAPI_PORT over TLS" \
		"$SKIFF_TEST_DIR/controller.log"
	run "$SKIFF_BIN/skiff-controller" --docker-api-listen 0.0.0.0:2375 --data-dir "$BATS_TEST_TMPDIR/d"
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == *"--docker-api-listen"*"loopback"* ]]
}

@test "docker version and docker info: API 1.41, swarm active, this cluster" {
	run dk version --format '{{.Server.APIVersion}}'
	[ "$status" -eq 0 ]
	[ "$output" = 1.41 ]
	run dk info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Cluster.ID}} {{.Swarm.Nodes}} {{.Swarm.Managers}}'
	[ "$status" -eq 0 ]
	[ "$output" = "active true $CLUSTER_ID 3 1" ]
	# the ping, unversioned and versioned, with the Api-Version header
	dcurl -fsS -I "https://127.0.0.1:$DAPI_PORT/_ping" | grep -qi '^Api-Version: 1.41'
	[ "$(dcurl -fsS "https://127.0.0.1:$DAPI_PORT/v1.41/_ping")" = OK ]
	run dcurl -sS "https://127.0.0.1:$DAPI_PORT/v1.12/version"
	[[ "$output" == '{"message":"client version 1.12 is too old.'* ]]
}

@test "docker node ls shows the 3 agents, ready and active" {
	run dk node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}'
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 3 ]
	for i in 1 2 3; do
		[[ "$output" == *"$(node_name "$i") Ready Active"* ]]
	done
	run dk node inspect --format '{{.Status.Addr}}' "$(node_name 2)"
	[ "$output" = 127.0.0.3 ]
}

@test "docker service create --replicas 2 -p: converges, runs on the engine, answers" {
	run dk service create --name web --replicas 2 -p "$WEB_PORT:8080" --no-resolve-image \
		--env GREETING=hi --label team=a skiff-test/web:v1
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(count_running web)" -eq 2 ]
	run dk service ls --format '{{.Name}} {{.Replicas}} {{.Image}} {{.Ports}}'
	[ "$output" = "web 2/2 skiff-test/web:v1 *:$WEB_PORT->8080/tcp" ]
	# the containers carry skiff's labels, on the real engine
	for c in $(service_containers web); do
		[ "$(container_label "$c" skiff.cluster)" = "$CLUSTER_ID" ]
		docker inspect -f '{{.Config.Env}}' "$c" | grep -q GREETING=hi
	done
	wait_until 10 http_get "http://127.0.0.2:$WEB_PORT/"
}

@test "docker service ps and inspect" {
	run dk service ps web --format '{{.Name}} {{.Image}} {{.DesiredState}} {{.CurrentState}}'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^web\.[12] skiff-test/web:v1 Running Running' <<<"$output")" -eq 2 ]
	run dk service ps web --format '{{.Node}}'
	[[ "$output" == *"$SKIFF_PREFIX-n"* ]]
	run dk service inspect --format '{{.Spec.Mode.Replicated.Replicas}} {{index .Spec.Labels "team"}} {{.Spec.TaskTemplate.ContainerSpec.Image}}' web
	[ "$output" = "2 a skiff-test/web:v1" ]
	run dk service ls --filter name=web --format '{{.Name}}'
	[ "$output" = web ]
	run dk service ls --filter name=nothing --format '{{.Name}}'
	[ -z "$output" ]
}

@test "docker service scale web=3" {
	run dk service scale web=3
	echo "$output"
	[ "$status" -eq 0 ]
	wait_until 30 '[ "$(count_running web)" -eq 3 ]'
	run dk service ls --format '{{.Replicas}}'
	[ "$output" = 3/3 ]
}

@test "docker service update --image: a rolling update, followed by the CLI" {
	run dk service update --image skiff-test/web:v2 --no-resolve-image web
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Service web converged"* ]] || [[ "$output" == *"verify: Service"*"converged"* ]]
	wait_until 30 '[ "$(count_running web)" -eq 3 ]'
	for c in $(service_containers web); do
		[ "$(docker inspect -f '{{.Config.Image}}' "$c")" = skiff-test/web:v2 ]
	done
	run dk service inspect --format '{{.UpdateStatus.State}} {{.PreviousSpec.TaskTemplate.ContainerSpec.Image}}' web
	[ "$output" = "completed skiff-test/web:v1" ]
}

@test "a stale version is refused as out of sequence, nothing changed" {
	local v
	v=$(dk service inspect --format '{{.Version.Index}}' web)
	spec=$(dk service inspect --format '{{json .Spec}}' web)
	run dcurl -sS -X POST -H 'Content-Type: application/json' -d "$spec" \
		-w ' %{http_code}' "https://127.0.0.1:$DAPI_PORT/v1.41/services/web/update?version=$((v - 1))"
	[[ "$output" == '{"message":"update out of sequence'*' 409' ]]
	[ "$(dk service inspect --format '{{.Version.Index}}' web)" = "$v" ]
}

@test "docker service rollback" {
	run dk service rollback web
	echo "$output"
	[ "$status" -eq 0 ]
	wait_until 60 '[ "$(docker ps --filter label=skiff.cluster=$CLUSTER_ID --filter label=skiff.service=web --filter ancestor=skiff-test/web:v1 -q | wc -l)" -eq 3 ]'
	run dk service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' web
	[ "$output" = skiff-test/web:v1 ]
}

@test "docker service logs" {
	http_get "http://127.0.0.2:$WEB_PORT/" >/dev/null
	run dk service logs --tail 20 web
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"web."*"@$SKIFF_PREFIX-n"*"|"* ]]
}

@test "unsupported flags get a one-line error naming the field, and make nothing" {
	run dk service create -d --name g --mode global --no-resolve-image skiff-test/web:v1
	[ "$status" -ne 0 ]
	[ "$output" = "Error response from daemon: Spec.Mode: Global: not supported by skiff (replicated only)" ]
	run dk service create -d --name h --hostname x --no-resolve-image skiff-test/web:v1
	[ "$status" -ne 0 ]
	[ "$output" = "Error response from daemon: Spec.TaskTemplate.ContainerSpec: Hostname: not supported by skiff" ]
	run dk service update -d --publish-add mode=host,published=1,target=80 web
	[ "$status" -ne 0 ]
	[[ "$output" == *'PublishMode: skiff publishes on every node ("ingress"); "host" is not supported' ]]
	run dk service ls --format '{{.Name}}'
	[ "$output" = web ]
	[ "$(dk service inspect --format '{{len .Spec.EndpointSpec.Ports}}' web)" -eq 1 ]
}

@test "docker node update --availability drain moves the node's tasks away" {
	local node
	node=$(node_name 1)
	run dk node update --availability drain "$node"
	[ "$status" -eq 0 ]
	run dk node inspect --format '{{.Spec.Availability}}' "$node"
	[ "$output" = drain ]
	wait_until 60 '[ -z "$(dk service ps web --filter desired-state=running --format "{{.Node}}" | grep -x "$node")" ]'
	wait_until 30 '[ "$(count_running web)" -eq 3 ]'
	run dk node update --availability active "$node"
	[ "$status" -eq 0 ]
}

@test "docker node update --label-add: constrained replicas go there; --label-rm: they leave" {
	local node
	node=$(node_name 2)
	run dk node update --label-add zone=edge "$node"
	[ "$status" -eq 0 ]
	# Spec.Labels are the controller's, Description.Engine.Labels the agent's --label
	run dk node inspect --format '{{index .Spec.Labels "zone"}} {{len .Spec.Labels}} {{index .Description.Engine.Labels "db"}}' "$node"
	[ "$status" -eq 0 ]
	[ "$output" = "edge 1 dapi" ]
	run dk service create -d --name edge --replicas 3 --constraint node.labels.zone==edge \
		--no-resolve-image skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 60 '[ "$(count_running edge)" -eq 3 ]'
	# every replica on that node, as the engine's labels say
	run docker ps --filter "label=skiff.cluster=$CLUSTER_ID" --filter label=skiff.service=edge \
		--filter status=running --format '{{.Label "skiff.node"}}'
	[ "${#lines[@]}" -eq 3 ]
	[ "$(printf '%s\n' "${lines[@]}" | sort -u)" = "$node" ]
	# engine.labels.K sees the agent's labels alone
	run dk service create -d --name edge-engine --constraint engine.labels.zone==edge \
		--no-resolve-image skiff-test/web:v1
	[ "$status" -eq 0 ]
	wait_until 30 '[[ "$(skiff service ps --format json edge-engine | jq -r ".[0].message")" == *"3 nodes fail engine.labels.zone==edge"* ]]'
	dk service rm edge-engine
	# removed: the replicas fit nowhere now, and stop (as Swarm does)
	run dk node update --label-rm zone "$node"
	[ "$status" -eq 0 ]
	[ "$(dk node inspect --format '{{len .Spec.Labels}}' "$node")" -eq 0 ]
	wait_until 60 '[ "$(count_running edge)" -eq 0 ]'
	run skiff service ps --format json edge
	[ "$(jq '[.[] | select(.desired_state == "running" and .state == "pending")] | length' <<<"$output")" -eq 3 ]
	[[ "$(jq -r '[.[] | select(.state == "pending")][0].message' <<<"$output")" == *"3 nodes fail node.labels.zone==edge"* ]]
	run dk service rm edge
	[ "$status" -eq 0 ]
}

@test "docker service rm: the containers go" {
	run dk service rm web
	[ "$status" -eq 0 ]
	wait_until 60 '[ "$(count_running web)" -eq 0 ]'
	run dk service ls -q
	[ -z "$output" ]
	run dk service inspect web
	[ "$status" -ne 0 ]
}

@test "docker stack deploy, services, ps, rm" {
	local api_port
	api_port=$(free_port)
	cat >"$BATS_TEST_TMPDIR/stack.yml" <<-EOF
	version: "3.8"
	services:
	  api:
	    image: skiff-test/web:v1
	    ports:
	      - "$api_port:8080"
	    deploy:
	      replicas: 2
	  db:
	    image: skiff-test/web:v2
	EOF
	run dk stack deploy --detach=true --resolve-image never -c "$BATS_TEST_TMPDIR/stack.yml" dshop
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Creating service dshop_api"* ]]
	local deployed=$output
	wait_until 60 '[ "$(count_running dshop_api)" -eq 2 ] && [ "$(count_running dshop_db)" -eq 1 ]'
	run dk stack services dshop --format '{{.Name}} {{.Replicas}}'
	echo "$output"
	[[ "$output" == *"dshop_api 2/2"* ]]
	[[ "$output" == *"dshop_db 1/1"* ]]
	run dk stack ps dshop --filter desired-state=running --format '{{.Name}}'
	[ "${#lines[@]}" -eq 3 ]
	# skiff's own view: one stack, whose services reach each other by name (the
	# one made second knows the first: names are given when containers are made)
	local first second
	first=$(grep -o 'Creating service dshop_[a-z]*' <<<"$deployed" | head -n1 | sed 's/.*dshop_//')
	second=api
	[ "$first" = api ] && second=db
	run skiff stack ls
	[[ "$output" == *dshop* ]]
	c=$(service_containers "dshop_$second" | head -n1)
	docker exec "$c" cat /etc/hosts | grep -Eq "[[:space:]]$first([[:space:]]|\$)"
	wait_until 10 http_get "http://127.0.0.3:$api_port/"
	run dk stack rm dshop
	[ "$status" -eq 0 ]
	wait_until 60 '[ "$(count_running dshop_api)" -eq 0 ] && [ "$(count_running dshop_db)" -eq 0 ]'
	run dk stack ls
	[[ "$output" != *dshop* ]]
	# a stack skiff deployed is one in docker's eyes too
	cat >"$BATS_TEST_TMPDIR/sk.yml" <<-EOF
	services:
	  one:
	    image: skiff-test/web:v1
	EOF
	skiff stack deploy -d -c "$BATS_TEST_TMPDIR/sk.yml" skst >/dev/null
	run dk stack services skst --format '{{.Name}}'
	[ "$output" = skst_one ]
	run dk service update -d --env-add X=1 skst_one
	[ "$status" -eq 0 ]
	run dk service inspect --format '{{len .Spec.Labels}} {{.Spec.TaskTemplate.ContainerSpec.Env}}' skst_one
	[ "$output" = "1 [X=1]" ]
	run dk stack rm skst
	[ "$status" -eq 0 ]
}

# The shop's own stack file, as the quickstart deploys it with skiff, here
# through the docker CLI: the databases' exposed ports and the API's HTTP
# probe come through as skiff's labels (deploy.labels), which the docker CLI
# passes on, and the API answers /health (it reached PostgreSQL and Redis by
# their service names) through the balancers.
@test "docker stack deploy of deploy/examples/shop/stack.yml, services, rm" {
	local st reg=skiffe2e-dapi-$SKIFF_PREFIX img
	st=dks$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	echo "$st" >"$BATS_FILE_TMPDIR/shop-stack"
	"$SKIFF_REPO/deploy/examples/shop/build-images.sh" --quiet
	for img in api:v1 postgres:15 redis:7; do
		docker tag "skiff-shop/$img" "$reg/shop-$img"
	done
	export SHOP_REGISTRY=$reg SHOP_MONGO_REPLICAS=0 SHOP_DB_LABEL=dapi
	SHOP_API_PORT=$(free_port)
	SHOP_POSTGRES_PORT=$(free_port)
	SHOP_REDIS_PORT=$(free_port)
	SHOP_MONGO_PORT=$(free_port)
	export SHOP_API_PORT SHOP_POSTGRES_PORT SHOP_REDIS_PORT SHOP_MONGO_PORT
	run dk stack deploy --detach=true --resolve-image never -c "$SKIFF_REPO/deploy/examples/shop/stack.yml" "$st"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Creating service ${st}_api"* ]]
	run dk service inspect --format '{{index .Spec.Labels "skiff.expose"}}' "${st}_postgres"
	[ "$output" = "$SHOP_POSTGRES_PORT" ]
	[ "$(skiff service inspect "${st}_api" | jq -r '.[0].spec.health.http_path')" = /health ]
	wait_until 240 '[ "$(count_running "${st}_api")" -eq 3 ] && [ "$(count_running "${st}_postgres")" -eq 1 ] && [ "$(count_running "${st}_redis")" -eq 1 ]'
	wait_until 240 http_get "http://127.0.0.3:$SHOP_API_PORT/health"
	run dk stack services "$st" --format '{{.Name}} {{.Replicas}}'
	echo "$output"
	[[ "$output" == *"${st}_api 3/3"* ]]
	[[ "$output" == *"${st}_postgres 1/1"* ]]
	[[ "$output" == *"${st}_redis 1/1"* ]]
	[[ "$output" == *"${st}_mongo 0/0"* ]]
	# the API reads its products from PostgreSQL, reached by its name
	run http_get "http://127.0.0.2:$SHOP_API_PORT/products"
	[ "$status" -eq 0 ]
	[ "$(jq length <<<"$output")" -gt 0 ]
	run dk stack rm "$st"
	[ "$status" -eq 0 ]
	wait_until 90 '[ -z "$(containers_of "$CLUSTER_ID" "label=skiff.service=${st}_api")" ] && [ -z "$(containers_of "$CLUSTER_ID" "label=skiff.service=${st}_postgres")" ]'
	run dk stack ls
	[[ "$output" != *"$st"* ]]
}

@test "docker events: skiff's events, filtered by type and action, and followed" {
	run dk events --since "$T0" --until "$(date +%s)" --filter type=service \
		--format '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}'
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"service create web"* ]]
	[[ "$output" == *"service remove web"* ]]
	[[ "$output" != *"task "* ]]
	run dk events --since "$T0" --until "$(date +%s)" --filter event=scale --format '{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.to}}'
	[ "$output" = "scale web 3" ]
	# followed: an event that happens while the CLI waits
	(dk events --filter type=node --format '{{.Action}} {{.Actor.Attributes.name}}' >"$BATS_TEST_TMPDIR/ev" 2>&1 &
	 echo $! >"$BATS_TEST_TMPDIR/ev.pid")
	sleep 1
	dk node update --availability drain "$(node_name 3)" >/dev/null
	wait_until 10 grep -q "$(node_name 3)" "$BATS_TEST_TMPDIR/ev"
	kill "$(cat "$BATS_TEST_TMPDIR/ev.pid")" 2>/dev/null || true
	dk node update --availability active "$(node_name 3)" >/dev/null
	run dk events --filter type=container --until 1
	[ "$status" -ne 0 ]
	[[ "$output" == *'filters: type: skiff'*'not "container"'* ]]
}

@test "--docker-api-tls: the docker CLI with a client certificate of the cluster CA (--tlsverify); without one it is refused" {
	local p q d=$BATS_TEST_TMPDIR/tlsctl cert=$BATS_TEST_TMPDIR/dockercert pid
	read -r p q < <(free_ports 2)
	run "$SKIFF_BIN/skiff-controller" --docker-api-tls --data-dir "$d"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--docker-api-tls needs --docker-api-listen"* ]]
	[ ! -e "$d" ]
	# Not loopback: allowed with TLS.
	"$SKIFF_BIN/skiff-controller" --listen "127.0.0.1:$p" --data-dir "$d" \
		--docker-api-listen "127.0.0.2:$q" --docker-api-tls >"$BATS_TEST_TMPDIR/c.log" 2>&1 &
	pid=$!
	wait_until 20 "grep -q 'docker api: listening on 127.0.0.2:$q over TLS' '$BATS_TEST_TMPDIR/c.log'"
	SKIFF_HOST=127.0.0.1:$p SKIFF_TOKEN_FILE=$d/admin-token "$SKIFF_BIN/skiff" cluster client-cert "$cert"
	run env DOCKER_HOST="tcp://127.0.0.2:$q" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$cert" \
		timeout 60 "$DOCKER_CLI" info --format '{{.Swarm.LocalNodeState}}'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = active ]
	run curl -sf -m 10 --cacert "$cert/ca.pem" --cert "$cert/cert.pem" --key "$cert/key.pem" \
		"https://127.0.0.2:$q/_ping"
	[ "$status" -eq 0 ]
	[ "$output" = OK ]
	# No client certificate, or plaintext: no answer.
	run curl -s -m 10 --cacert "$cert/ca.pem" "https://127.0.0.2:$q/_ping"
	[ "$output" != OK ]
	run curl -s -m 10 "http://127.0.0.2:$q/_ping"
	[ "$output" != OK ]
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}
