#!/bin/bash
# Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/ (which
# is committed): real frames, specs and controller sessions made by packing
# real messages (fuzz_seeds), the Compose files of the tests, the engine
# answers recorded in tests/unit/data/engine, durations and command lines.
# Run it again after a change of the schema or of the recorded answers:
#
#   tests/fuzz/make_corpus.sh [BUILD_DIR]     (default build-fuzz, made by run.sh)
set -euo pipefail

cd "$(dirname "$0")/../.."
BUILD=${1:-${SKIFF_FUZZ_BUILD_DIR:-build-fuzz}}
OUT=tests/fuzz/corpus

[ -x "$BUILD/fuzz/fuzz_seeds" ] || cmake --build "$BUILD" --target fuzz_seeds >/dev/null
rm -rf "$OUT"
mkdir -p "$OUT"
"$BUILD/fuzz/fuzz_seeds" "$OUT"

# seed TARGET NAME: standard input into the target's corpus.
seed() {
	mkdir -p "$OUT/$1"
	cat >"$OUT/$1/$2"
}

# ---------------------------------------------------------------- compose
for f in tests/unit/data/compose/*.yml; do
	seed fuzz_compose "$(basename "$f")" <"$f"
done
# The stack files written by the e2e tests: heredocs, tabs stripped as <<-
# does, shell variables as the shell would leave them ($PORT: a number, \$: $).
n=0
for f in tests/e2e/*.bats; do
	[ -e "$f" ] || continue
	while IFS= read -r -d '' doc; do
		n=$((n + 1))
		printf '%s' "$doc" | sed -E 's/(^|[^\\])\$[A-Za-z_][A-Za-z_0-9]*/\18080/g; s/\\\$/$/g' |
			seed fuzz_compose "e2e_$n.yml"
	done < <(awk '/<<-?EOF/ { on = 1; next } on && /^[\t ]*EOF$/ { on = 0; printf "%c", 0; next }
		on { sub(/^\t+/, ""); print }' "$f")
done
seed fuzz_compose anchors.yml <<'EOF'
x-base: &base
  image: skiff-test/web:${TAG:-v1}
  deploy: &deploy
    replicas: ${REPLICAS}
    update_config: {parallelism: 2, delay: 1s, order: start-first}
services:
  api:
    <<: *base
    ports: ["8080:8080"]
    environment: {A: "${A}", B: "$$literal"}
  worker:
    <<: [*base]
    deploy:
      <<: *deploy
      replicas: 2
    expose: [9000]
EOF
seed fuzz_compose laughs.yml <<'EOF'
x-a: &a [x, x, x, x, x, x, x, x, x, x]
x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
x-d: &d {<<: [*c], k: *c}
services:
  web:
    image: busybox
    command: *c
    labels: *d
EOF
seed fuzz_compose unsafe.yml <<'EOF'
services:
  root:
    image: busybox
    privileged: true
    network_mode: host
    pid: host
    cap_add: [SYS_ADMIN]
    labels: {skiff.cluster: forged}
    user: "0:0"
EOF

# ---------------------------------------------------------------- engine
# One selector byte (fuzz_engine_json.c), then the recorded answer.
E=tests/unit/data/engine
eseed() { # eseed SELECTOR NAME < answer
	{ printf "\\x$(printf %02x "$1")"; cat; } | seed fuzz_engine_json "$2"
}
if [ -d "$E" ]; then
	for f in "$E"/inspect_*.json; do eseed 0 "$(basename "$f")" <"$f"; done
	[ -e "$E/list.json" ] && eseed 1 list.json <"$E/list.json"
	if [ -e "$E/events.jsonl" ]; then
		i=0
		while IFS= read -r line; do
			i=$((i + 1))
			printf '%s' "$line" | eseed 2 "event_$i.json"
		done <"$E/events.jsonl"
		eseed 10 events_lines.jsonl <"$E/events.jsonl"
	fi
	[ -e "$E/create_answer.json" ] && eseed 3 create_answer.json <"$E/create_answer.json"
	[ -e "$E/info.json" ] && eseed 4 info.json <"$E/info.json"
	[ -e "$E/network_bridge.json" ] && eseed 5 network_bridge.json <"$E/network_bridge.json"
	for f in "$E"/error_*.json; do eseed 6 "$(basename "$f")" <"$f"; done
	for f in "$E"/pull_*.jsonl; do
		head -n1 "$f" | eseed 7 "$(basename "$f" .jsonl)_first.json"
		tail -n1 "$f" | eseed 7 "$(basename "$f" .jsonl)_last.json"
		eseed 22 "$(basename "$f")" <"$f" # 22 % 12 == 10: lines, cut differently
	done
	for f in "$E"/logs_*.bin; do eseed 11 "$(basename "$f")" <"$f"; done
fi
for r in skiff-test/web:v1 registry:5000/shop/api:2.1 busybox 'name@sha256:0123abcd' \
	'localhost:5000/a/b/c:tag'; do
	printf '%s' "$r" | eseed 8 "ref_$(printf '%s' "$r" | tr -c 'a-zA-Z0-9' _)"
done
for t in 2026-11-27T22:08:06.15289277Z 0001-01-01T00:00:00Z 2026-02-30T25:61:61.1Z; do
	printf '%s' "$t" | eseed 9 "time_$(printf '%s' "$t" | tr -c 'a-zA-Z0-9' _)"
done
printf 'not json' | eseed 6 error_text
printf '{"message":"line one\\nline two"}' | eseed 6 error_two_lines

# ---------------------------------------------------------------- duration
for d in 0 500ms 3s 1m30s 1h 1.5s 1h2m3.5s 2h0m5s 1ns 999us 2562047h47m16.854s 10m 0.5h; do
	printf '%s' "$d" | seed fuzz_duration "$(printf '%s' "$d" | tr '.' _)"
done

# ---------------------------------------------------------------- flags
# Words separated by NUL; the first word "c" or "u" means service create or
# update (fuzz_flags.c).
flags() { # flags NAME WORD...
	local name=$1
	shift
	printf '%s\0' "$@" | seed fuzz_flags "$name"
}
flags create_web c --name web --replicas 3 -p 8080:8080 --health-http /health \
	--update-order start-first --update-parallelism 2 -e MODE=prod --label team=a \
	skiff-test/web:v1 serve --port 8080
flags create_full c --name api --constraint node.labels.zone==eu-1 --constraint 'node.name!=n3' \
	--mount type=volume,source=data,target=/data,readonly --mount type=bind,source=/srv,target=/srv \
	--reserve-cpu 0.5 --reserve-memory 64m --limit-cpu 1 --limit-memory 128MiB \
	--restart-condition on-failure --restart-delay 1s --restart-max-attempts 3 \
	--restart-window 1m --stop-grace-period 5s --user 1000:1000 --expose 9000 \
	--health-cmd 'wget -q -O- http://127.0.0.1:8080/' --health-interval 2s \
	--health-timeout 1s --health-retries 2 --health-start-period 3s \
	--rollback-order stop-first --rollback-failure-action continue -d busybox
flags create_long c --publish published=80,target=8080,protocol=tcp,mode=ingress \
	--update-max-failure-ratio 0.25 --update-failure-action rollback --update-monitor 10s \
	--update-delay 1s --drain-delay 2s --entrypoint /bin/sh --args 'a "b c"' web
flags update_web u --image skiff-test/web:v2 --env-add A=1 --env-rm B --label-rm team \
	--publish-add 9090:9090 --publish-rm 8080 --mount-rm /data --constraint-add node.name==n1 \
	--replicas 5 --force web
flags global_host --host 127.0.0.1:7400 --token-file /tmp/t node ls --format json
flags global_v6 -H '[::1]:7400' service ls -q
flags stack stack deploy -c stack.yml --prune shop
flags logs service logs -f --tail 10 web
flags node_update node update --availability drain n1
flags scale service scale web=3 api=0

echo "corpus: $(find "$OUT" -type f | wc -l) files in $OUT"
for d in "$OUT"/*/; do
	printf '  %-20s %s\n' "$(basename "$d")" "$(find "$d" -type f | wc -l)"
done
