#!/usr/bin/env bats
# The dashboard (issue 17) in a real browser: Debian's chromium, headless,
# driven by puppeteer-core (tests/e2e/dashboard/drive.js; the npm package is
# installed into the build dir when missing, never committed). It logs in
# through the form (a wrong token is refused with a message; the session is
# an HttpOnly SameSite=Strict cookie and the page keeps only its CSRF token;
# an action without that token answers 403 and changes nothing), sees 3
# ready nodes and a service at 3/3 in the topology, scales it to 5 from the
# service page and sees 5 running boxes appear without a reload while 5
# containers run on the engine, tails its logs live, drains a node and sees
# its boxes move, sees an autoscaling range and a rolling update's progress
# bar on the services page, checks the pages fit a 400 px wide phone, logs
# out (the cookie is refused after), and saves a screenshot of each page
# under the test's output folder ($SKIFF_TEST_DIR/screenshots). Also: an events
# stream client that never reads stays bounded and is told what it lost.

load helpers

setup_file() {
	command -v chromium >/dev/null || skip "chromium is not installed (tests/run.sh installs it)"
	export NPM_DIR=${SKIFF_NPM_DIR:-$SKIFF_BIN/../e2e-npm}
	if [ ! -d "$NPM_DIR/node_modules/puppeteer-core" ]; then
		mkdir -p "$NPM_DIR"
		cp "$SKIFF_REPO/tests/e2e/dashboard/package.json" "$NPM_DIR/"
		(cd "$NPM_DIR" && npm install --no-audit --no-fund >/dev/null)
	fi
	export HTTP_PORT METRICS_PORT
	read -r HTTP_PORT METRICS_PORT < <(free_ports 2)
	cluster_start 3 --http-listen "127.0.0.1:$HTTP_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
		--event-buffer 500
	export SHOTS=$SKIFF_TEST_DIR/screenshots
	mkdir -p "$SHOTS"
}

teardown_file() {
	skiff_teardown_file
}

teardown() {
	[ "${BATS_TEST_COMPLETED:-}" = 1 ] || dump_logs
	true
}

@test "an events stream client that never reads is bounded, then told how many events it lost" {
	run python3 "$SKIFF_REPO/tests/tools/sse_stall.py" 127.0.0.1 "$HTTP_PORT" "$SKIFF_TOKEN_FILE" \
		"$NODE_3" 4000 "$METRICS_PORT"
	echo "$output"
	[ "$status" -eq 0 ]
	# the budget (64 KiB) and one event, whatever the client does
	echo "$output" | jq -e '.unsent_bytes <= 65536 + 262144 and .dropped > 0'
	[ "$(skiff node inspect "$NODE_3" | jq -r '.[0].availability')" = active ]
}

@test "the browser logs in, scales a service to 5 from its page, drains a node, all live" {
	skiff service create -q --name dweb --replicas 3 skiff-test/web:v1 >/dev/null
	skiff service create -q --name dauto --autoscale-min 1 --autoscale-max 3 --autoscale-target-cpu 80 \
		skiff-test/web:v1 >/dev/null
	wait_until 30 '[ "$(count_running dweb)" = 3 ]'
	drain=$(skiff node ls --format json | jq -r '.[0].name')
	drain_id=$(skiff node inspect "$drain" | jq -r '.[0].id')
	run env NODE_PATH="$NPM_DIR/node_modules" timeout 240 node "$SKIFF_REPO/tests/e2e/dashboard/drive.js" \
		"http://127.0.0.1:$HTTP_PORT/" "$SKIFF_TOKEN_FILE" "$SHOTS" dweb "$drain" "$CLUSTER_ID" dauto
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(count_running dweb)" = 5 ]
	[ "$(docker ps -q --filter "label=skiff.cluster=$CLUSTER_ID" --filter "label=skiff.node=$drain_id" | wc -l)" = 0 ]
	[ "$(skiff node inspect "$drain" | jq -r '.[0].availability')" = drain ]
	[ "$(skiff service inspect dweb | jq -r '.[0].spec.image')" = skiff-test/web:v2 ]
	# the wrong token at the login form, and the actions without the CSRF token, are logged
	grep -q 'http: 127.0.0.1: refused POST /api/v1/login: wrong token' "$SKIFF_TEST_DIR/controller.log"
	grep -q 'http: 127.0.0.1: refused POST /api/v1/services/dweb/scale: no CSRF token' "$SKIFF_TEST_DIR/controller.log"
	grep -q 'http: 127.0.0.1: refused POST /api/v1/services/dweb/scale: wrong CSRF token' "$SKIFF_TEST_DIR/controller.log"
	for f in login cluster services cluster-5 service cluster-drained events services-update \
		cluster-phone services-phone service-phone; do
		[ -s "$SHOTS/$f.png" ]
	done
	# kept for the README and for people looking at a run
	mkdir -p "${SKIFF_BUILD:-$SKIFF_REPO/build}/dashboard-screenshots" 2>/dev/null &&
		cp "$SHOTS"/*.png "${SKIFF_BUILD:-$SKIFF_REPO/build}/dashboard-screenshots/" 2>/dev/null || true
}
