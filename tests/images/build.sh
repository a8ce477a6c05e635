#!/bin/bash
# Builds the images the e2e tests run, locally, from busybox-static, with
# `docker import`: no registry, no Dockerfile, no network.
#
#   skiff-test/web:v1, web:v2   busybox httpd on $PORT (8080) answering
#                               GET / with "v1 <hostname>" (v2) and
#                               GET /health with 200; `rm /www/health` in the
#                               container turns /health into a 404.
#   skiff-test/web:bad-health   the same server, /health always 404,
#                               GET / answers "bad-health <hostname>".
#   skiff-test/exit:latest      prints a line and exits with code 1.
#   skiff-test/oom:latest       grows its memory until the kernel kills it.
#
# Every image carries the label skiff.test.recipe: a hash of its root file
# system (a reproducible tar) and of its --change lines. An image whose tag
# exists with the same hash is skipped, so a second run takes a second or two;
# --force rebuilds everything.
#
# Usage: tests/images/build.sh [--force] [--quiet]

set -euo pipefail

BUSYBOX=${BUSYBOX:-/bin/busybox}
REPO=skiff-test
LABEL=skiff.test.recipe
force=0
quiet=0

for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	--quiet|-q) quiet=1 ;;
	-h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build.sh: unknown argument '$arg'" >&2; exit 2 ;;
	esac
done

say() { [ "$quiet" = 1 ] || echo "images: $*"; }
die() { echo "images: error: $*" >&2; exit 1; }

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (apt-get install busybox-static)"
if ! "$BUSYBOX" --list >/dev/null 2>&1 || ldd "$BUSYBOX" >/dev/null 2>&1; then
	die "$BUSYBOX is not a static busybox (apt-get install busybox-static)"
fi
command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "the docker engine does not answer (start dockerd)"

work=$(mktemp -d /tmp/skiff-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Two runs at once (two test files, two engineers) would import twice; the
# lock makes the second one wait and then find the images up to date.
exec 9>/tmp/skiff-test-images.lock
flock 9

# The base file system: busybox with every applet linked at its usual place,
# and the few files a container expects. Made once, copied for each image
# (perl-base is essential on Debian; one process instead of 270 `ln`s).
base="$work/base"
mkdir -p "$base"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,www,proc,sys,dev,root,var/run}
chmod 1777 "$base/tmp"
cp "$BUSYBOX" "$base/bin/busybox"
chmod 0755 "$base/bin/busybox"
"$BUSYBOX" --list-full | grep -vx 'bin/busybox' |
	(cd "$base" && perl -nle 'symlink("/bin/busybox", $_) or die "$_: $!\n"')
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$base/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$base/etc/group"

base_rootfs() {
	cp -a "$base" "$1"
}

# web_rootfs DIR VERSION HEALTHY: the web server. PID 1 is a shell that
# traps TERM (httpd as PID 1 would ignore it, and `docker stop` would wait
# out the grace period).
web_rootfs() {
	local root=$1 version=$2 healthy=$3
	base_rootfs "$root"
	echo "$version" >"$root/etc/web-version"
	[ "$healthy" = 1 ] && echo ok >"$root/www/health"
	cat >"$root/web.sh" <<'EOF'
#!/bin/sh
# skiff test web server: GET / answers "<version> <hostname>", GET /health
# answers 200 while /www/health exists.
version=$(cat /etc/web-version)
port=${PORT:-8080}
host=$(hostname)
echo "$version $host" >/www/index.html
httpd -f -p "$port" -h /www &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; echo "web $version stopping"; exit 0' TERM INT
i=0
while [ $i -lt 50 ] && ! wget -q -O /dev/null "http://127.0.0.1:$port/" 2>/dev/null; do
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
	i=$((i + 1))
done
echo "web $version listening on :$port host $host"
wait $pid
status=$?
echo "web $version: httpd exited with status $status"
exit $status
EOF
	chmod 0755 "$root/web.sh"
}

exit_rootfs() {
	local root=$1
	base_rootfs "$root"
	cat >"$root/exit.sh" <<'EOF'
#!/bin/sh
echo "exit: exiting with code 1"
exit 1
EOF
	chmod 0755 "$root/exit.sh"
}

# The shell doubles a string until the memory cgroup's limit is hit and the
# kernel kills it (State.OOMKilled is then true).
oom_rootfs() {
	local root=$1
	base_rootfs "$root"
	cat >"$root/oom.sh" <<'EOF'
#!/bin/sh
echo "oom: allocating until killed"
x=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
while :; do
	x="$x$x"
done
EOF
	chmod 0755 "$root/oom.sh"
}

# build_image TAG ROOTFS_FUNC ARGS... -- CHANGE...
build_image() {
	local tag=$1 func=$2
	shift 2
	local args=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
	shift
	local changes=("$@")
	local root="$work/${tag//[\/:]/_}"

	"$func" "$root" "${args[@]}"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
		-C "$root" -cf "$root.tar" .
	local hash
	hash=$( { sha256sum <"$root.tar"; printf '%s\n' "${changes[@]}"; } | sha256sum | cut -c1-32)

	local have
	have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$tag" 2>/dev/null || true)
	if [ "$force" = 0 ] && [ "$have" = "$hash" ]; then
		say "$tag is up to date"
		return 0
	fi

	local opts=() c
	for c in "${changes[@]}"; do opts+=(--change "$c"); done
	opts+=(--change "LABEL $LABEL=$hash")
	docker import "${opts[@]}" -m "skiff test image $tag" "$root.tar" "$tag" >/dev/null
	say "built $tag"
}

web_changes=(
	'ENV PORT=8080'
	'EXPOSE 8080'
	'WORKDIR /'
	'CMD ["/web.sh"]'
)

build_image "$REPO/web:v1" web_rootfs v1 1 -- "${web_changes[@]}"
build_image "$REPO/web:v2" web_rootfs v2 1 -- "${web_changes[@]}"
build_image "$REPO/web:bad-health" web_rootfs bad-health 0 -- "${web_changes[@]}"
build_image "$REPO/exit:latest" exit_rootfs -- 'WORKDIR /' 'CMD ["/exit.sh"]'
build_image "$REPO/oom:latest" oom_rootfs -- 'WORKDIR /' 'CMD ["/oom.sh"]'
