#!/bin/bash
# The shop's own image registry: Debian's docker-registry (the Distribution
# registry) on a loopback address, with its storage in a folder of its own.
# The images that build-images.sh makes go into it, and skiff's agents pull
# them from it through the Engine API, as they would from a registry in
# production.
#
#   registry.sh start DIR [ADDR]   starts the registry unless it runs: config
#                                  DIR/registry.yml, blobs DIR/storage/, log
#                                  DIR/registry.log, pid DIR/registry.pid;
#                                  waits until it answers
#   registry.sh push [ADDR]        pushes the shop's images as ADDR/shop-api:v1,
#                                  ADDR/shop-api:v2, ADDR/shop-postgres:15 and
#                                  ADDR/shop-redis:7, then removes those local
#                                  tags, so that running them means pulling them
#   registry.sh stop DIR           stops the registry of DIR
#   registry.sh status DIR         says whether it runs (exit 0 when it does)
#
# ADDR is 127.0.0.1:5000 by default. The engine talks plain HTTP to
# registries on 127.0.0.0/8 without any configuration (they are in its
# default insecure-registries), and so does every agent's pull.
#
# Environment: SHOP_IMAGE_REPO (skiff-shop), where build-images.sh tagged the
# images.

set -euo pipefail

REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
SRC=${SHOP_IMAGE_REPO:-skiff-shop}
# local image -> name in the registry
IMAGES=("api:v1 shop-api:v1" "api:v2 shop-api:v2" "postgres:15 shop-postgres:15" "redis:7 shop-redis:7")

say() { echo "shop registry: $*"; }
die() { echo "shop registry: error: $*" >&2; exit 1; }

usage() {
	sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

# running DIR: the registry of DIR runs (its pid file names a live
# docker-registry process).
running() {
	local pid
	pid=$(cat "$1/registry.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q docker-registry
}

answers() {
	curl -fsS --noproxy '*' --max-time 2 -o /dev/null "http://$1/v2/"
}

port_busy() {
	local port=${1##*:}
	[ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ]
}

start() {
	local dir=$1 addr=${2:-127.0.0.1:5000} pid i
	[ -x "$REGISTRY_BIN" ] || die "$REGISTRY_BIN not found (apt-get install docker-registry)"
	mkdir -p "$dir/storage"
	dir=$(cd "$dir" && pwd)
	if running "$dir"; then
		say "running on $(cat "$dir/registry.addr" 2>/dev/null || echo "$addr") (pid $(cat "$dir/registry.pid"))"
		return 0
	fi
	if port_busy "$addr"; then
		die "something else listens on port ${addr##*:} (the docker-registry service of the" \
			"package? systemctl disable --now docker-registry); or choose another address"
	fi
	cat >"$dir/registry.yml" <<EOF
# Written by registry.sh: the shop's registry.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $addr
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
EOF
	echo "$addr" >"$dir/registry.addr"
	nohup "$REGISTRY_BIN" serve "$dir/registry.yml" </dev/null >>"$dir/registry.log" 2>&1 3>&- &
	pid=$!
	echo "$pid" >"$dir/registry.pid"
	for ((i = 0; i < 100; i++)); do
		answers "$addr" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir/registry.log" >&2; die "docker-registry exited"; }
		sleep 0.2
	done
	answers "$addr" || die "docker-registry does not answer on http://$addr/v2/ (log: $dir/registry.log)"
	say "started on $addr (pid $pid, storage $dir/storage)"
}

push() {
	local addr=${1:-127.0.0.1:5000} pair src dst
	answers "$addr" || die "no registry answers on http://$addr/v2/ (registry.sh start DIR $addr)"
	for pair in "${IMAGES[@]}"; do
		src="$SRC/${pair%% *}"
		dst="$addr/${pair#* }"
		docker image inspect "$src" >/dev/null 2>&1 || die "$src not found (run build-images.sh)"
		docker tag "$src" "$dst"
		docker push --quiet "$dst" >/dev/null || die "docker push $dst failed"
		# Untag (the image stays, as $src): an agent that runs $dst pulls it.
		docker rmi "$dst" >/dev/null
		say "pushed $dst"
	done
}

stop() {
	local dir=$1 pid i
	if ! running "$dir"; then
		rm -f "$dir/registry.pid"
		say "not running"
		return 0
	fi
	pid=$(cat "$dir/registry.pid")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	rm -f "$dir/registry.pid"
	say "stopped (pid $pid)"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
start) [ $# -ge 1 ] || usage; start "$@" ;;
push) push "$@" ;;
stop) [ $# -ge 1 ] || usage; stop "$1" ;;
status)
	[ $# -ge 1 ] || usage
	if running "$1"; then
		say "running on $(cat "$1/registry.addr") (pid $(cat "$1/registry.pid"))"
	else
		say "not running"
		exit 1
	fi
	;;
-h | --help) usage ;;
*) usage ;;
esac
