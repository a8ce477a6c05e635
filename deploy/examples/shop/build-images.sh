#!/bin/bash
# Builds the shop's images on this machine with `docker import`: no
# Dockerfile, no base image, no public registry. Each image is a root file
# system made of this machine's files:
#
#   skiff-shop/api:v1, skiff-shop/api:v2
#       the host's node binary and the libraries it links, the API (api/)
#       and its node_modules (npm ci, from package-lock.json). v1 and v2 are
#       the same file system (one layer, stored and pushed once) and differ
#       only in SHOP_VERSION, which the API reports.
#   skiff-shop/postgres:15
#       Debian's PostgreSQL 15 server (postgres, initdb, pg_isready, psql),
#       its modules, share files and time zones, the libraries they link,
#       util-linux's setpriv, and images/postgres-entrypoint.sh.
#   skiff-shop/redis:7
#       Debian's Redis 7 server and redis-cli, with images/redis.conf.
#
# Every image also has a static busybox (`docker exec -it ID sh` works) and
# runs as an unprivileged user (postgres switches to it itself, after making
# its volume its own).
#
# Packages that are missing (nodejs and npm when there is no node, postgresql-15,
# redis-tools, busybox-static) are installed with apt-get when run as root.
# Installing postgresql-15 here creates no database cluster on the host, and
# redis-tools (which holds Debian's redis-server binary) starts no service.
#
# An image whose recipe has not changed (a hash of this script, the files in
# api/ and images/, and the versions of the host's packages, kept in its
# label skiff.shop.recipe) is not built again, so a second run takes a second;
# --force builds everything again.
#
# Usage: build-images.sh [--force] [--quiet]
# Environment: SHOP_IMAGE_REPO (default skiff-shop).

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=${SHOP_IMAGE_REPO:-skiff-shop}
API_VERSIONS=(v1 v2)
PG_MAJOR=15
REDIS_TAG=7
LABEL=skiff.shop.recipe
BUSYBOX=/bin/busybox
force=0
quiet=0

for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	--quiet | -q) quiet=1 ;;
	-h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build-images.sh: unknown argument '$arg'" >&2; exit 2 ;;
	esac
done

say() { [ "$quiet" = 1 ] || echo "shop images: $*"; }
die() { echo "shop images: error: $*" >&2; exit 1; }

# ------------------------------------------------------------------ packages

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
installed "postgresql-$PG_MAJOR" || missing+=("postgresql-$PG_MAJOR")
installed redis-tools || missing+=(redis-tools)
installed busybox-static || missing+=(busybox-static)
if [ "${#missing[@]}" -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (sudo apt-get install ${missing[*]})"
	say "installing ${missing[*]}"
	# postgresql-common makes and starts a "main" cluster unless told not to;
	# the image needs the server's files only. Left alone when it is there.
	if ! installed postgresql-common && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
		mkdir -p /etc/postgresql-common
		echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold \
		"${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi

PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_LIB=/usr/lib/postgresql/$PG_MAJOR/lib
PG_SHARE=/usr/share/postgresql/$PG_MAJOR
[ -x "$PG_BIN/postgres" ] || die "$PG_BIN/postgres not found (apt-get install postgresql-$PG_MAJOR)"
[ -x /usr/bin/redis-check-rdb ] || die "/usr/bin/redis-check-rdb not found (apt-get install redis-tools)"
[ -x "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 ||
	die "$BUSYBOX is not a static busybox (apt-get install busybox-static)"
[ -x /usr/bin/setpriv ] || die "/usr/bin/setpriv not found (apt-get install util-linux)"
command -v docker >/dev/null || die "docker not found (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "the docker engine does not answer (start dockerd)"

work=$(mktemp -d /var/tmp/skiff-shop-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Two builds at once (the quickstart and its test, say) would import twice;
# the second one waits and then finds the images up to date.
exec 9>/tmp/skiff-shop-images.lock
flock 9

# ------------------------------------------------------------------ root file systems

# base_rootfs DIR USER UID: busybox with its applets, /etc files for USER,
# and merged-/usr links as on Debian 12.
base_rootfs() {
	local root=$1 user=$2 uid=$3
	mkdir -p "$root"/{bin,sbin,etc,tmp,proc,sys,dev,root,run,var/tmp,usr/bin,usr/sbin,usr/lib,usr/lib64}
	ln -s usr/lib "$root/lib"
	ln -s usr/lib64 "$root/lib64"
	chmod 1777 "$root/tmp" "$root/var/tmp"
	cp "$BUSYBOX" "$root/bin/busybox"
	chmod 0755 "$root/bin/busybox"
	"$BUSYBOX" --list-full | grep -vx 'bin/busybox' |
		(cd "$root" && perl -nle 'symlink("/bin/busybox", $_) or die "$_: $!\n"')
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' "$user:x:$uid:$uid:$user:/nonexistent:/bin/false" \
		'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' "$user:x:$uid:" 'nogroup:x:65534:' >"$root/etc/group"
	cp "$HERE/images/nsswitch.conf" "$root/etc/nsswitch.conf"
}

# add ROOT FILE...: copies each FILE (dereferenced, replacing a busybox link
# of the same name) to the same path under ROOT, with every library ldd finds
# for it, each under its directory's real path and its own name.
add() {
	local root=$1 f lib dir
	shift
	for f in "$@"; do
		mkdir -p "$root$(dirname "$f")"
		rm -f "$root$f"
		cp -L --preserve=mode "$f" "$root$f"
		while read -r lib; do
			[ -n "$lib" ] || continue
			dir=$(realpath "$(dirname "$lib")")
			[ -e "$root$dir/$(basename "$lib")" ] && continue
			mkdir -p "$root$dir"
			cp -L --preserve=mode "$lib" "$root$dir/$(basename "$lib")"
		done < <(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
	done
}

api_rootfs() {
	local root=$1 node app
	node=$(readlink -f "$(command -v node)")
	base_rootfs "$root" node 1000
	add "$root" "$node"
	if [ "$node" != /usr/bin/node ]; then
		rm -f "$root/usr/bin/node"
		ln -s "$node" "$root/usr/bin/node"
	fi
	app="$work/app"
	mkdir -p "$app"
	cp "$HERE/api/package.json" "$HERE/api/package-lock.json" "$HERE/api/server.js" "$app/"
	say "npm ci (the API's packages, from package-lock.json)"
	(cd "$app" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null) ||
		die "npm ci failed in $app"
	cp -a "$app" "$root/app"
	chown -R 0:0 "$root/app"
}

postgres_rootfs() {
	local root=$1 f
	base_rootfs "$root" postgres 999
	add "$root" /usr/bin/setpriv
	for f in postgres initdb pg_ctl pg_isready psql; do
		add "$root" "$PG_BIN/$f"
	done
	# The server's modules (plpgsql, snowball, encodings, contrib); not the
	# JIT, which would bring LLVM along (jit is off without it).
	for f in "$PG_LIB"/*.so; do
		case $(basename "$f") in llvmjit*) continue ;; esac
		add "$root" "$f"
	done
	mkdir -p "$root$PG_SHARE" "$root/usr/share/zoneinfo"
	cp -a "$PG_SHARE/." "$root$PG_SHARE/"
	rm -rf "$root$PG_SHARE/man"
	cp -a /usr/share/zoneinfo/. "$root/usr/share/zoneinfo/"
	mkdir -p "$root/usr/local/bin" "$root/var/run/postgresql" "$root/var/lib/postgresql/data"
	cp "$HERE/images/postgres-entrypoint.sh" "$root/usr/local/bin/postgres-entrypoint.sh"
	chmod 0755 "$root/usr/local/bin/postgres-entrypoint.sh"
	chown 999:999 "$root/var/run/postgresql" "$root/var/lib/postgresql" "$root/var/lib/postgresql/data"
	chmod 2775 "$root/var/run/postgresql"
	chmod 0700 "$root/var/lib/postgresql/data"
}

redis_rootfs() {
	local root=$1
	base_rootfs "$root" redis 999
	# Debian's redis-server is a link to redis-check-rdb: one binary that
	# acts by the name it is started under.
	add "$root" /usr/bin/redis-check-rdb /usr/bin/redis-cli
	rm -f "$root/usr/bin/redis-server"
	ln -s redis-check-rdb "$root/usr/bin/redis-server"
	mkdir -p "$root/etc/redis" "$root/data"
	cp "$HERE/images/redis.conf" "$root/etc/redis/redis.conf"
	chown 999:999 "$root/data"
}

# ------------------------------------------------------------------ import

# recipe FILE...: a hash of what an image is made of: this script, the
# FILEs, the host binaries' stat and the versions of every installed package
# (so an upgraded library makes new images). Cheap, so that an image that is
# up to date costs no copying.
recipe() {
	{
		cat "$0" "$@"
		stat -L -c '%n %s %Y' "$(command -v node)" "$BUSYBOX"
		dpkg-query -W -f '${Package} ${Version}\n' | sort
	} | sha256sum | cut -c1-32
}

# label RECIPE CHANGE...: the recipe label of an image with these settings.
label() {
	printf '%s\n' "$@" | sha256sum | cut -c1-32
}

# fresh TAG RECIPE CHANGE...: TAG exists with this recipe (and no --force).
fresh() {
	local tag=$1 have
	shift
	[ "$force" = 0 ] || return 1
	have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$tag" 2>/dev/null) ||
		return 1
	[ "$have" = "$(label "$@")" ]
}

# make_tar ROOTFS_FUNC NAME: builds the file system, and a reproducible tar
# of it in $tar.
make_tar() {
	local func=$1 root="$work/$2"
	"$func" "$root"
	tar="$root.tar"
	tar --sort=name --mtime=@0 --numeric-owner -C "$root" -cf "$tar" .
	rm -rf "$root"
}

# import TAG TAR RECIPE CHANGE...: imports TAR as TAG with the Dockerfile-style
# CHANGEs and its recipe label.
import() {
	local tag=$1 tar=$2 c args=()
	shift 2
	for c in "${@:2}" "LABEL $LABEL=$(label "$@")"; do
		args+=(--change "$c")
	done
	say "importing $tag ($(du -h "$tar" | cut -f1) file system)"
	docker import "${args[@]}" "$tar" "$tag" >/dev/null || die "docker import $tag failed"
}

# --- the API, v1 and v2 from one file system
r=$(recipe "$HERE"/api/{package.json,package-lock.json,server.js} "$HERE/images/nsswitch.conf")
api_changes=('ENV NODE_ENV=production' 'ENV PORT=3000' 'WORKDIR /app' 'USER node'
	'EXPOSE 3000' 'ENTRYPOINT ["/usr/bin/node", "/app/server.js"]')
stale=()
for v in "${API_VERSIONS[@]}"; do
	if fresh "$REPO/api:$v" "$r" "ENV SHOP_VERSION=$v" "${api_changes[@]}"; then
		say "$REPO/api:$v is up to date"
	else
		stale+=("$v")
	fi
done
if [ "${#stale[@]}" -gt 0 ]; then
	make_tar api_rootfs api
	for v in "${stale[@]}"; do
		import "$REPO/api:$v" "$tar" "$r" "ENV SHOP_VERSION=$v" "${api_changes[@]}"
	done
	rm -f "$tar"
fi

# --- PostgreSQL
r=$(recipe "$HERE/images/postgres-entrypoint.sh" "$HERE/images/nsswitch.conf")
pg_changes=("ENV PATH=$PG_BIN:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
	'ENV PGDATA=/var/lib/postgresql/data/pgdata' 'ENV TZ=UTC' 'EXPOSE 5432'
	'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]')
if fresh "$REPO/postgres:$PG_MAJOR" "$r" "${pg_changes[@]}"; then
	say "$REPO/postgres:$PG_MAJOR is up to date"
else
	make_tar postgres_rootfs postgres
	import "$REPO/postgres:$PG_MAJOR" "$tar" "$r" "${pg_changes[@]}"
	rm -f "$tar"
fi

# --- Redis
r=$(recipe "$HERE/images/redis.conf" "$HERE/images/nsswitch.conf")
redis_changes=('ENV PATH=/usr/bin:/bin:/usr/sbin:/sbin' 'WORKDIR /data' 'USER redis'
	'EXPOSE 6379' 'ENTRYPOINT ["redis-server", "/etc/redis/redis.conf"]')
if fresh "$REPO/redis:$REDIS_TAG" "$r" "${redis_changes[@]}"; then
	say "$REPO/redis:$REDIS_TAG is up to date"
else
	make_tar redis_rootfs redis
	import "$REPO/redis:$REDIS_TAG" "$tar" "$r" "${redis_changes[@]}"
	rm -f "$tar"
fi

say "done: $(printf '%s ' "${API_VERSIONS[@]/#/$REPO/api:}")$REPO/postgres:$PG_MAJOR $REPO/redis:$REDIS_TAG"
