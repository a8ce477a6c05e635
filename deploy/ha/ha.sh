#!/bin/bash
# skiff's highly available control plane on one machine: 3 etcd members and
# 3 controllers on loopback addresses, the way they would run on 3 machines
# (README, "A highly available controller").
#
#   deploy/ha/ha.sh [up]      starts what is not running: etcd members e1-e3
#                             on 127.0.2.1-3 (client port 2379, peer 2380) and
#                             controllers c1-c3 on 127.0.3.1-3:7400, all on
#                             store prefix /skiff/ha/; waits until one leads;
#                             writes env.sh (SKIFF_HOST lists the three)
#   deploy/ha/ha.sh status    what runs, and `skiff controller ls`
#   deploy/ha/ha.sh down      stops the controllers and etcd, removes the folder
#   deploy/ha/ha.sh install   installs the systemd units of this folder instead
#                             (skiff-etcd@1..3, skiff-controller@1..3) with
#                             their /etc/default files for the same addresses,
#                             and starts them
#
# Agents join with the three controllers:
#   skiff-agent --controller 127.0.3.1:7400,127.0.3.2:7400,127.0.3.3:7400 \
#               --join-token-file <folder>/c1/join-token --advertise 127.0.0.2
#
# Settings (environment):
#   SKIFF_HA_DIR     the folder: data dirs, logs, pids, env.sh  /var/tmp/skiff-ha
#   SKIFF_HA_BIN     skiff's binaries                           <repo>/build/bin
#   SKIFF_HA_PREFIX  the store prefix                           /skiff/ha/
#   SKIFF_HA_LEASE   the leader lease                           3s

set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/deploy/ha
DIR=${SKIFF_HA_DIR:-/var/tmp/skiff-ha}
BIN=${SKIFF_HA_BIN:-$REPO/build/bin}
PREFIX=${SKIFF_HA_PREFIX:-/skiff/ha/}
LEASE=${SKIFF_HA_LEASE:-3s}
ETCD_ADDRS=(127.0.2.1 127.0.2.2 127.0.2.3)
CTL_ADDRS=(127.0.3.1 127.0.3.2 127.0.3.3)
CLUSTER="e1=http://127.0.2.1:2380,e2=http://127.0.2.2:2380,e3=http://127.0.2.3:2380"
ENDPOINTS="127.0.2.1:2379,127.0.2.2:2379,127.0.2.3:2379"
HOSTS="127.0.3.1:7400,127.0.3.2:7400,127.0.3.3:7400"

die() {
	echo "ha.sh: error: $*" >&2
	exit 1
}

alive() { [ -s "$DIR/pids/$1" ] && kill -0 "$(cat "$DIR/pids/$1")" 2>/dev/null; }

# wait_for SECONDS CMD...: runs CMD every 0.2s until it succeeds.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.2
	done
}

# etcd_args I, ctl_args I: the arguments of member / controller I, in ARGS.
etcd_args() {
	local i=$1 a=${ETCD_ADDRS[$(($1 - 1))]}
	ARGS=(--name "e$i" --data-dir "$DIR/e$i" \
		--listen-client-urls "http://$a:2379" --advertise-client-urls "http://$a:2379" \
		--listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
		--initial-cluster "$CLUSTER" --initial-cluster-token skiff-ha \
		--initial-cluster-state new --auto-compaction-mode revision \
		--auto-compaction-retention 10000)
}

ctl_args() {
	local i=$1 a=${CTL_ADDRS[$(($1 - 1))]}
	ARGS=(--listen "$a:7400" --data-dir "$DIR/c$i" --store "etcd://$ENDPOINTS" \
		--store-prefix "$PREFIX" --leader-lease "$LEASE")
}

up() {
	local i
	command -v etcd >/dev/null || die "etcd is not installed: apt-get install etcd-server etcd-client"
	[ -x "$BIN/skiff-controller" ] || die "$BIN/skiff-controller not found (build: cmake -S . -B build && cmake --build build)"
	mkdir -p "$DIR/pids"
	for i in 1 2 3; do
		alive "e$i" && continue
		etcd_args "$i"
		nohup etcd "${ARGS[@]}" </dev/null >>"$DIR/e$i.log" 2>&1 &
		echo $! >"$DIR/pids/e$i"
		echo "etcd e$i on ${ETCD_ADDRS[$((i - 1))]}:2379 (log $DIR/e$i.log)"
	done
	for i in 1 2 3; do
		wait_for 30 env ETCDCTL_API=3 etcdctl --endpoints "${ETCD_ADDRS[$((i - 1))]}:2379" endpoint health ||
			die "etcd e$i is not healthy; see $DIR/e$i.log"
	done
	for i in 1 2 3; do
		alive "c$i" && continue
		ctl_args "$i"
		nohup "$BIN/skiff-controller" "${ARGS[@]}" </dev/null >>"$DIR/c$i.log" 2>&1 &
		echo $! >"$DIR/pids/c$i"
		echo "controller c$i on ${CTL_ADDRS[$((i - 1))]}:7400 (log $DIR/c$i.log)"
		wait_for 30 test -s "$DIR/c$i/admin-token" || die "controller c$i did not start; see $DIR/c$i.log"
	done
	cat >"$DIR/env.sh" <<-EOF
		export PATH="$BIN:\$PATH"
		export SKIFF_HOST=$HOSTS
		export SKIFF_TOKEN_FILE=$DIR/c1/admin-token
	EOF
	# shellcheck disable=SC1091
	. "$DIR/env.sh"
	wait_for 30 sh -c "skiff controller ls --format json | grep -q '\"leader\"'" ||
		die "no controller leads; see $DIR/c*.log"
	skiff controller ls
	echo
	echo ". $DIR/env.sh   # skiff on PATH, SKIFF_HOST and SKIFF_TOKEN_FILE set"
	echo "agents: skiff-agent --controller $HOSTS --join-token-file $DIR/c1/join-token --advertise ADDR"
}

status() {
	local i
	for i in 1 2 3; do
		printf 'etcd e%s: %s\n' "$i" "$(alive "e$i" && echo running || echo stopped)"
	done
	for i in 1 2 3; do
		printf 'controller c%s: %s\n' "$i" "$(alive "c$i" && echo running || echo stopped)"
	done
	if [ -e "$DIR/env.sh" ]; then
		# shellcheck disable=SC1091
		. "$DIR/env.sh"
		skiff controller ls || true
	fi
}

down() {
	local p
	for p in c1 c2 c3 e1 e2 e3; do
		if alive "$p"; then
			kill "$(cat "$DIR/pids/$p")"
			wait_for 10 sh -c "! kill -0 $(cat "$DIR/pids/$p") 2>/dev/null" || kill -9 "$(cat "$DIR/pids/$p")" 2>/dev/null || true
		fi
	done
	rm -rf "$DIR"
	echo "stopped; $DIR removed"
}

install_units() {
	local i a
	[ "$(id -u)" = 0 ] || die "install needs root"
	command -v systemctl >/dev/null || die "no systemd here: use ha.sh up"
	install -m 0755 "$BIN/skiff" "$BIN/skiff-controller" /usr/local/bin/
	install -m 0644 "$HERE/skiff-etcd@.service" "$HERE/skiff-controller@.service" /etc/systemd/system/
	for i in 1 2 3; do
		a=${ETCD_ADDRS[$((i - 1))]}
		cat >"/etc/default/skiff-etcd-$i" <<-EOF
			ETCD_NAME=e$i
			ETCD_DATA_DIR=/var/lib/skiff-etcd/e$i
			ETCD_LISTEN_CLIENT_URLS=http://$a:2379
			ETCD_ADVERTISE_CLIENT_URLS=http://$a:2379
			ETCD_LISTEN_PEER_URLS=http://$a:2380
			ETCD_INITIAL_ADVERTISE_PEER_URLS=http://$a:2380
			ETCD_INITIAL_CLUSTER=$CLUSTER
			ETCD_INITIAL_CLUSTER_TOKEN=skiff-ha
			ETCD_INITIAL_CLUSTER_STATE=new
		EOF
		cat >"/etc/default/skiff-controller-$i" <<-EOF
			SKIFF_LISTEN=${CTL_ADDRS[$((i - 1))]}:7400
			SKIFF_STORE=etcd://$ENDPOINTS
			SKIFF_STORE_PREFIX=$PREFIX
			SKIFF_LEADER_LEASE=$LEASE
		EOF
	done
	systemctl daemon-reload
	systemctl enable --now skiff-etcd@1 skiff-etcd@2 skiff-etcd@3
	systemctl enable --now skiff-controller@1 skiff-controller@2 skiff-controller@3
	echo "installed; skiff --host $HOSTS --token-file /var/lib/skiff/c1/admin-token controller ls"
}

case ${1:-up} in
up) up ;;
status) status ;;
down) down ;;
install) install_units ;;
*) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
