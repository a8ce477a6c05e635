#!/bin/bash
# skiff's quickstart: a whole cluster on one machine, running the shop.
#
#   deploy/quickstart.sh          (or `up`) on a fresh Debian 12 machine, as root:
#                                 installs what is missing (apt), builds skiff
#                                 (cmake), starts dockerd if it does not answer,
#                                 builds the shop's images and pushes them to a
#                                 registry of its own, starts a controller and
#                                 three agents (nodes node-1..3 on 127.0.0.2-4;
#                                 node-1 has the label db=true that places the
#                                 databases), deploys the shop
#                                 (deploy/examples/shop/stack.yml), waits until
#                                 the API answers on every node, and says what
#                                 to try next
#   deploy/quickstart.sh status   what runs
#   deploy/quickstart.sh down     stops the agents, the controller and the
#                                 registry, removes the cluster's containers
#                                 (by their skiff.cluster label), the shop's
#                                 volumes and the folder
#
# Everything it starts keeps its state in one folder: controller data, each
# agent's state dir (agent-N: its key and node certificate), logs,
# pid files, registry storage, and env.sh for your shell. Running it again
# starts only what is not running (an agent you killed, say) and leaves a
# deployed stack as it is: it never makes a second cluster.
#
# Settings (environment; recorded in the folder on the first run, and taken
# from there by later runs and by `down`):
#   SKIFF_QUICKSTART_DIR         the folder                /var/tmp/skiff-quickstart
#   SKIFF_QUICKSTART_CONTROLLER  the controller's address  127.0.0.1:7400
#   SKIFF_QUICKSTART_DASHBOARD   the dashboard's address   127.0.0.1:8400
#   SKIFF_QUICKSTART_NODES       the agents' addresses     "127.0.0.2 127.0.0.3 127.0.0.4"
#   SKIFF_QUICKSTART_REGISTRY    the registry's address    127.0.0.1:5000
#   SKIFF_QUICKSTART_STACK       the stack's name          shop
#   SKIFF_QUICKSTART_BIN         skiff's binaries; when set, nothing is built
#                                (default: build into <repo>/build)
#   SHOP_API_PORT, SHOP_POSTGRES_PORT, SHOP_REDIS_PORT, SHOP_MONGO_PORT
#                                the shop's ports (see the stack file)
#   SKIFF_QUICKSTART_TIMEOUT     seconds to wait for the shop to answer (300)

set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SHOP=$REPO/deploy/examples/shop
DIR=${SKIFF_QUICKSTART_DIR:-/var/tmp/skiff-quickstart}
MARK=.skiff-quickstart
START=$(date +%s)

step() { printf '\n==> %s  [+%ss]\n' "$*" "$(($(date +%s) - START))"; }
say() { echo "    $*"; }
die() {
	echo "quickstart: error: $*" >&2
	exit 1
}

usage() {
	sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

# ------------------------------------------------------------------ settings

# load_settings: the folder's recorded settings when it has them, else the
# environment's (with defaults), which are then recorded.
load_settings() {
	if [ -s "$DIR/settings" ]; then
		# shellcheck source=/dev/null
		. "$DIR/settings"
		DASHBOARD=${DASHBOARD:-${SKIFF_QUICKSTART_DASHBOARD:-127.0.0.1:8400}}
		return 0
	fi
	CONTROLLER=${SKIFF_QUICKSTART_CONTROLLER:-127.0.0.1:7400}
	DASHBOARD=${SKIFF_QUICKSTART_DASHBOARD:-127.0.0.1:8400}
	NODE_ADDRS=${SKIFF_QUICKSTART_NODES:-127.0.0.2 127.0.0.3 127.0.0.4}
	REGISTRY=${SKIFF_QUICKSTART_REGISTRY:-127.0.0.1:5000}
	STACK=${SKIFF_QUICKSTART_STACK:-shop}
	BIN=${SKIFF_QUICKSTART_BIN:-}
	API_PORT=${SHOP_API_PORT:-8080}
	POSTGRES_PORT=${SHOP_POSTGRES_PORT:-5432}
	REDIS_PORT=${SHOP_REDIS_PORT:-6379}
	MONGO_PORT=${SHOP_MONGO_PORT:-27017}
}

save_settings() {
	mkdir -p "$DIR"
	touch "$DIR/$MARK"
	[ -s "$DIR/settings" ] && return 0
	{
		echo "# skiff quickstart settings, written on the first run"
		printf '%s=%q\n' CONTROLLER "$CONTROLLER" DASHBOARD "$DASHBOARD" NODE_ADDRS "$NODE_ADDRS" REGISTRY "$REGISTRY" \
			STACK "$STACK" BIN "$BIN" API_PORT "$API_PORT" POSTGRES_PORT "$POSTGRES_PORT" \
			REDIS_PORT "$REDIS_PORT" MONGO_PORT "$MONGO_PORT"
	} >"$DIR/settings"
}

# The variables of the stack file, for `skiff stack deploy`.
export_shop_env() {
	export SHOP_REGISTRY=$REGISTRY SHOP_API_TAG=v1 SHOP_API_PORT=$API_PORT
	export SHOP_POSTGRES_PORT=$POSTGRES_PORT SHOP_REDIS_PORT=$REDIS_PORT
	export SHOP_MONGO_PORT=$MONGO_PORT SHOP_MONGO_REPLICAS=0 SHOP_DB_LABEL=true
}

node_count() {
	local a n=0
	for a in $NODE_ADDRS; do n=$((n + 1)); done
	echo "$n"
}

# ------------------------------------------------------------------ processes

# alive NAME PROGRAM: pids/NAME names a live process running PROGRAM.
alive() {
	local pid
	pid=$(cat "$DIR/pids/$1" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# spawn NAME PROGRAM ARG...: starts PROGRAM in the background, immune to the
# terminal's hangup, logging to logs/NAME.log, its pid in pids/NAME.
spawn() {
	local name=$1 pid
	shift
	mkdir -p "$DIR/pids" "$DIR/logs"
	echo "=== $(date '+%F %T') $*" >>"$DIR/logs/$name.log"
	nohup "$@" </dev/null >>"$DIR/logs/$name.log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	pid=$!
	echo "$pid" >"$DIR/pids/$name"
	sleep 0.2
	kill -0 "$pid" 2>/dev/null || {
		tail -n 20 "$DIR/logs/$name.log" >&2
		die "$name exited at once (log: $DIR/logs/$name.log)"
	}
}

# halt NAME PROGRAM: TERM, and KILL after 10 seconds.
halt() {
	local name=$1 prog=$2 pid i
	if alive "$name" "$prog"; then
		pid=$(cat "$DIR/pids/$name")
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			alive "$name" "$prog" || break
			sleep 0.1
		done
		alive "$name" "$prog" && kill -KILL "$pid" 2>/dev/null || true
		say "stopped $name (pid $pid)"
	fi
	rm -f "$DIR/pids/$name"
}

listening() {
	[ -n "$(ss -Htln "( sport = :${1##*:} )" 2>/dev/null | awk -v a="$1" '$4 == a || $4 ~ /^(\*|0\.0\.0\.0|\[::\]):/')" ]
}

# wait_for SECONDS CMD...: runs CMD every half second until it succeeds, or
# fails after SECONDS.
wait_for() {
	local secs=$1 deadline
	shift
	deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.5
	done
}

# ------------------------------------------------------------------ up: steps

PACKAGES=(cmake gcc make pkg-config libuv1-dev libprotobuf-c-dev protobuf-c-compiler
	libcurl4-openssl-dev libsqlite3-dev libjansson-dev libyaml-dev uthash-dev libcmocka-dev
	docker.io docker-registry busybox-static curl jq iproute2 procps)

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() {
	local p missing=() fresh_registry=0
	step "packages"
	for p in "${PACKAGES[@]}"; do
		installed "$p" || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		say "skiff's packages are installed"
	else
		[ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]}; run as root, or: sudo apt-get install ${missing[*]}"
		installed docker-registry || fresh_registry=1
		say "installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q >/dev/null || die "apt-get update failed"
		apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
			die "apt-get install failed"
		# The package starts a registry service on :5000 where systemd runs;
		# the quickstart runs a registry of its own and only needs the binary.
		if [ "$fresh_registry" = 1 ] && command -v systemctl >/dev/null &&
			systemctl is-enabled docker-registry >/dev/null 2>&1; then
			say "disabling the docker-registry service the package started (the quickstart runs its own)"
			systemctl disable --now docker-registry >/dev/null 2>&1 || true
		fi
	fi
	# The shop's packages (node, PostgreSQL, Redis) are build-images.sh's.
}

start_docker() {
	local i log=/var/log/skiff-quickstart-dockerd.log
	step "docker engine"
	if docker info >/dev/null 2>&1; then
		say "dockerd answers"
		return 0
	fi
	[ "$(id -u)" = 0 ] || die "the docker engine does not answer (start dockerd, or run as root)"
	if command -v systemctl >/dev/null && systemctl start docker >/dev/null 2>&1; then
		say "started docker.service"
	else
		say "starting dockerd (log: $log)"
		nohup dockerd </dev/null >>"$log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	fi
	for ((i = 0; i < 120; i++)); do
		docker info >/dev/null 2>&1 && break
		sleep 0.5
	done
	docker info >/dev/null 2>&1 || die "dockerd does not answer after 60s (log: $log)"
	say "dockerd answers"
}

build_skiff() {
	step "skiff"
	if [ -n "$BIN" ]; then
		say "using the binaries in $BIN"
	else
		BIN=$REPO/build/bin
		say "building into $REPO/build (cmake)"
		cmake -S "$REPO" -B "$REPO/build" >"$DIR/logs/build.log" 2>&1 &&
			cmake --build "$REPO/build" -j"$(nproc)" --target skiff skiff-controller skiff-agent \
				>>"$DIR/logs/build.log" 2>&1 || {
			tail -n 30 "$DIR/logs/build.log" >&2
			die "the build failed (log: $DIR/logs/build.log)"
		}
	fi
	local b
	for b in skiff skiff-controller skiff-agent; do
		[ -x "$BIN/$b" ] || die "$BIN/$b not found"
	done
}

images_and_registry() {
	step "the shop's images, and a registry on $REGISTRY"
	"$SHOP/build-images.sh" 2>&1 | sed 's/^/    /'
	[ "${PIPESTATUS[0]}" = 0 ] || die "building the shop's images failed"
	"$SHOP/registry.sh" start "$DIR/registry" "$REGISTRY" | sed 's/^/    /'
	[ "${PIPESTATUS[0]}" = 0 ] || die "the registry did not start (log: $DIR/registry/registry.log)"
	"$SHOP/registry.sh" push "$REGISTRY" | sed 's/^/    /'
	[ "${PIPESTATUS[0]}" = 0 ] || die "pushing the shop's images failed"
}

controller_ready() {
	[ -s "$DIR/data/cluster-id" ] && [ -s "$DIR/data/join-token" ] &&
		[ -s "$DIR/data/admin-token" ] && listening "$CONTROLLER"
}

nodes_ready() {
	local n
	n=$("$BIN/skiff" node ls --format json | jq '[.[] | select(.state == "ready")] | length')
	[ "$n" -ge "$(node_count)" ]
}

start_cluster() {
	local i=0 addr name labels
	step "a controller on $CONTROLLER and $(node_count) agents"
	if alive controller skiff-controller; then
		say "controller runs (pid $(cat "$DIR/pids/controller"))"
	else
		listening "$CONTROLLER" && die "something else listens on $CONTROLLER (set SKIFF_QUICKSTART_CONTROLLER)"
		spawn controller "$BIN/skiff-controller" --listen "$CONTROLLER" --data-dir "$DIR/data" \
			--http-listen "$DASHBOARD"
		wait_for 30 controller_ready ||
			die "the controller is not ready after 30s (log: $DIR/logs/controller.log)"
		say "controller started (pid $(cat "$DIR/pids/controller"), cluster $(cat "$DIR/data/cluster-id"))"
	fi
	for addr in $NODE_ADDRS; do
		i=$((i + 1))
		name=node-$i
		labels=()
		[ "$i" = 1 ] && labels=(--label db=true)
		if alive "agent-$i" skiff-agent; then
			say "$name runs (pid $(cat "$DIR/pids/agent-$i"))"
			continue
		fi
		spawn "agent-$i" "$BIN/skiff-agent" --controller "$CONTROLLER" --name "$name" \
			--advertise "$addr" --join-token-file "$DIR/data/join-token" \
			--state-dir "$DIR/agent-$i" "${labels[@]}"
		say "$name started on $addr${labels:+ (${labels[*]})} (pid $(cat "$DIR/pids/agent-$i"))"
	done
	wait_for 60 nodes_ready || {
		"$BIN/skiff" node ls >&2 || true
		die "fewer than $(node_count) nodes ready after 60s (logs: $DIR/logs/)"
	}
	say "$(node_count) nodes ready"
}

api_answers() {
	local addr
	for addr in $NODE_ADDRS; do
		curl -fsS --noproxy '*' --max-time 3 -o /dev/null "http://$addr:$API_PORT/health" || return 1
	done
}

deploy_shop() {
	step "stack $STACK"
	export_shop_env
	# The volumes are made here, with a label, so that `down` removes exactly them.
	local vol
	for vol in pgdata redisdata; do
		if ! docker volume inspect "${STACK}_$vol" >/dev/null 2>&1; then
			docker volume create --label "skiff.quickstart=$DIR" "${STACK}_$vol" >/dev/null
		fi
	done
	if "$BIN/skiff" service inspect "${STACK}_api" >/dev/null 2>&1; then
		say "already deployed; left as it is (skiff stack ps $STACK)"
	else
		say "skiff stack deploy -c $SHOP/stack.yml $STACK"
		"$BIN/skiff" stack deploy -c "$SHOP/stack.yml" "$STACK" 2>&1 | sed 's/^/    /'
		[ "${PIPESTATUS[0]}" = 0 ] || {
			"$BIN/skiff" stack ps "$STACK" >&2 || true
			die "the stack did not converge"
		}
	fi
	wait_for "${SKIFF_QUICKSTART_TIMEOUT:-300}" api_answers || {
		"$BIN/skiff" stack ps "$STACK" >&2 || true
		die "the API does not answer on every node's port $API_PORT"
	}
	say "the API answers on $(for a in $NODE_ADDRS; do printf '%s:%s ' "$a" "$API_PORT"; done)"
}

write_env() {
	cat >"$DIR/env.sh" <<EOF
# skiff quickstart: source this file (. $DIR/env.sh) to drive the cluster.
export PATH=$BIN:\$PATH
export SKIFF_HOST=$CONTROLLER
export SKIFF_TOKEN_FILE=$DIR/data/admin-token
export SHOP_REGISTRY=$REGISTRY SHOP_API_PORT=$API_PORT SHOP_POSTGRES_PORT=$POSTGRES_PORT
export SHOP_REDIS_PORT=$REDIS_PORT SHOP_MONGO_PORT=$MONGO_PORT SHOP_MONGO_REPLICAS=0
EOF
}

next_steps() {
	local a1 a2 a3 p=$API_PORT
	read -r a1 a2 a3 _ <<<"$NODE_ADDRS $NODE_ADDRS $NODE_ADDRS"
	cat <<EOF

skiff is running: a controller on $CONTROLLER; nodes node-1..$(node_count) on $NODE_ADDRS
(node-1 has the label db=true: the databases run there); the shop is stack
"$STACK", its API on port $p of every node. State and logs: $DIR.

The dashboard: http://$DASHBOARD/ (log in with the admin token, which
  cat $DIR/data/admin-token
prints; the HTTP API is under http://$DASHBOARD/api/v1/, see docs/api.md).

Try:
  . $DIR/env.sh
  skiff node ls
  skiff stack ps $STACK

  # The API through any node's balancer; each new connection goes to the next replica.
  curl http://$a1:$p/products
  curl http://$a2:$p/version
  curl http://$a2:$p/version
  # A cart lives in Redis: every replica sees it.
  curl -X POST -d '{"sku": "mug", "quantity": 2}' http://$a3:$p/cart/me/items
  curl http://$a1:$p/cart/me

  skiff service scale ${STACK}_api=5
  # A rolling update: the agents pull v2 from the registry, one replica at a time.
  skiff service update --image $REGISTRY/shop-api:v2 ${STACK}_api
  skiff service rollback ${STACK}_api
  skiff service logs ${STACK}_api

  # A node dies: after 3 seconds its tasks run on the other nodes.
  kill \$(cat $DIR/pids/agent-2)
  skiff node ls
  # Running the quickstart again starts what is not running: node-2 returns.
  $REPO/deploy/quickstart.sh

  $REPO/deploy/quickstart.sh down
EOF
}

up() {
	load_settings
	if [ -e "$DIR" ] && [ ! -e "$DIR/$MARK" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
		die "$DIR exists and is not the quickstart's (set SKIFF_QUICKSTART_DIR)"
	fi
	save_settings
	mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/registry"
	install_packages
	start_docker
	build_skiff
	images_and_registry
	export SKIFF_HOST=$CONTROLLER SKIFF_TOKEN_FILE=$DIR/data/admin-token
	unset SKIFF_TOKEN
	start_cluster
	write_env
	deploy_shop
	next_steps
}

# ------------------------------------------------------------------ status, down

status() {
	local i=0 addr rc=0
	[ -e "$DIR/$MARK" ] || { echo "no quickstart in $DIR"; exit 1; }
	load_settings
	if alive controller skiff-controller; then
		echo "controller  $CONTROLLER  pid $(cat "$DIR/pids/controller")"
	else
		echo "controller  $CONTROLLER  not running"; rc=1
	fi
	for addr in $NODE_ADDRS; do
		i=$((i + 1))
		if alive "agent-$i" skiff-agent; then
			echo "node-$i      $addr  pid $(cat "$DIR/pids/agent-$i")"
		else
			echo "node-$i      $addr  not running"; rc=1
		fi
	done
	"$SHOP/registry.sh" status "$DIR/registry" || rc=1
	if [ "$rc" = 0 ]; then
		SKIFF_HOST=$CONTROLLER SKIFF_TOKEN_FILE=$DIR/data/admin-token \
			"${BIN:-$REPO/build/bin}/skiff" stack ps "$STACK" || rc=1
	fi
	exit "$rc"
}

down() {
	local i cluster ids images
	if [ ! -e "$DIR/$MARK" ]; then
		echo "quickstart: nothing to take down in $DIR"
		return 0
	fi
	load_settings
	step "stopping the agents and the controller"
	# Agents first: none then restarts a container being removed.
	for i in $(seq 1 "$(node_count)"); do
		halt "agent-$i" skiff-agent
	done
	for f in "$DIR"/pids/agent-*; do # agents beyond the settings' count
		[ -e "$f" ] && halt "$(basename "$f")" skiff-agent
	done
	halt controller skiff-controller

	step "removing the cluster's containers and volumes"
	cluster=$(head -n1 "$DIR/data/cluster-id" 2>/dev/null || true)
	if [ -n "$cluster" ] && docker info >/dev/null 2>&1; then
		mapfile -t ids < <(docker ps -aq --filter "label=skiff.cluster=$cluster")
		if [ "${#ids[@]}" -gt 0 ]; then
			docker rm -f -v "${ids[@]}" >/dev/null
		fi
		say "removed ${#ids[@]} containers of cluster $cluster"
	fi
	if docker info >/dev/null 2>&1; then
		mapfile -t ids < <(docker volume ls -q --filter "label=skiff.quickstart=$DIR")
		if [ "${#ids[@]}" -gt 0 ]; then
			docker volume rm -f "${ids[@]}" >/dev/null
			say "removed volumes ${ids[*]}"
		fi
		# Images pulled from the registry (the shop's builds stay, as a cache).
		mapfile -t images < <(docker images --format '{{.Repository}}:{{.Tag}}' |
			awk -v p="$REGISTRY/shop-" 'index($0, p) == 1')
		if [ "${#images[@]}" -gt 0 ]; then
			docker rmi "${images[@]}" >/dev/null 2>&1 || true
			say "untagged ${images[*]}"
		fi
	fi

	step "stopping the registry"
	"$SHOP/registry.sh" stop "$DIR/registry" | sed 's/^/    /'
	# The agents' secrets tmpfs (<state-dir>/secrets) outlives them by design
	# (running containers keep their files); none runs now.
	while read -r f; do
		umount -l "$f" 2>/dev/null || true
	done < <(findmnt -rn -o TARGET 2>/dev/null | awk -v d="$DIR/" 'index($0, d) == 1')
	rm -rf "$DIR"
	say "removed $DIR"
}

case ${1:-up} in
up) up ;;
down) down ;;
status) status ;;
-h | --help | help) usage ;;
*) usage ;;
esac
