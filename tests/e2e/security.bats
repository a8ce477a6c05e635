#!/usr/bin/env bats
# Security and hostile input, against a real controller: a wrong or missing
# token, garbage bytes, an oversize frame, half frames that stall, a flood
# of connections from one address, a client that never reads its replies,
# each while a normal client (`skiff service ls` and `skiff node ls` in a
# loop) keeps being served throughout: the loop must see no failure at all.
# Then token rotation with a running agent, the containers skiff asks the
# engine for (docker inspect), the refusal of skiff.* labels and of unsafe
# Compose keys, and the modes of the data dir and token files.
#
# The attack clients are a small Python script (standard library only,
# written by setup_file): they speak the wire format by hand inside TLS
# (verifying the controller with the data dir's ca.pem, as a client would
# with --tls-ca), print what the controller answered and how soon it closed.
# The floods and the silent connections stay below TLS, plain TCP. Tokens
# are SKIFF-1-<CA digest>-<secret>; what goes in a Hello is the secret. Most tests need no agent;
# each starts its own controller with the limits it tests. Assertions are on
# outcomes (refused, closed, served), never on timings.

load helpers

setup_file() {
	export ATTACK="$BATS_FILE_TMPDIR/skiff-attack.py"
	cat >"$ATTACK" <<'PY'
#!/usr/bin/env python3
"""Hostile clients for skiff's e2e security tests, on the standard library.

  skiff-attack.py hello HOST:PORT ROLE SECRET [N] hello, print the answer, wait for the close
  skiff-attack.py join HOST:PORT NAME SECRET      NodeJoin (with a request that is no CSR)
  skiff-attack.py raw HOST:PORT WHAT [SECRET [N]] send bytes (after a hello with SECRET, unless
                                                  ""), wait for the close; WHAT: HEX,
                                                  random:N, header:N
  (with N connections at once, one summary line: conns= refused= closed=)
  skiff-attack.py stall HOST:PORT N CONNS [SRC]   CONNS connections sending N bytes of a hello
                                                  (N = 0: TCP only, no TLS handshake)
  skiff-attack.py flood HOST:PORT CONNS SRC HOLD  CONNS TCP connections from SRC, held HOLD s
  skiff-attack.py create HOST:PORT SECRET NAME IMAGE KEY=VALUE  ServiceCreate with a label
  skiff-attack.py unread HOST:PORT SECRET N       N requests, their replies left unread

Everything but flood and stall 0 runs inside TLS 1.3, the controller
verified with the CA file in $SKIFF_CA.

Every command prints one line of "key=value" words: local= (this side's
ADDRESS:PORT, as the controller logs it), answer= (hello_reply, error:CODE,
none), closed= (the seconds until the controller closed, or never), ...
"""
import os
import socket
import ssl
import struct
import sys
import time

ROLE = {"agent": 1, "client": 2, "none": 0}


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def fvar(field, value):
    return varint(field << 3) + varint(value)


def fbytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def frame(env):
    return struct.pack(">I", len(env)) + env


def hello(role, token, rid=1):
    return frame(fvar(1, rid) + fbytes(10, fvar(1, ROLE[role]) + fbytes(2, token)
                                      + fbytes(3, "e2e")))


def fields(data):
    """(field, wire type, value) of a protobuf message."""
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = read_varint(data, i)
        elif t == 2:
            n, i = read_varint(data, i)
            v, i = data[i:i + n], i + n
        elif t == 1:
            v, i = data[i:i + 8], i + 8
        elif t == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % t)
        yield f, t, v


def read_varint(data, i):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def answer(env):
    """hello_reply, error:CODE:message, service_reply, or the field number."""
    for f, _, v in fields(env):
        if f == 11:
            return "hello_reply"
        if f == 12:
            code, msg = 0, b""
            for g, _, w in fields(v):
                if g == 1:
                    code = w
                elif g == 2:
                    msg = w
            return "error:%d:%s" % (code, msg.decode(errors="replace").replace(" ", "_"))
        if f == 60:
            return "service_reply"
        if f != 1:
            return "msg%d" % f
    return "empty"


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(os.environ["SKIFF_CA"])
    return ctx


def connect(hostport, src=None, timeout=5.0, tls=True):
    host, port = hostport.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((host, int(port)))
    if tls:
        s = tls_context().wrap_socket(s)
    return s


def local(s):
    a = s.getsockname()
    return "%s:%d" % (a[0], a[1])


_pending = {}  # bytes read past the last frame, per socket


def read_frame(s, deadline):
    """The next whole frame's Envelope, or None at the close."""
    buf = _pending.pop(s.fileno(), b"")
    while True:
        if len(buf) >= 4:
            n = struct.unpack(">I", buf[:4])[0]
            if len(buf) >= 4 + n:
                _pending[s.fileno()] = buf[4 + n:]
                return buf[4:4 + n]
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        s.settimeout(left)
        try:
            got = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return None
        if not got:
            return None
        buf += got


def wait_closed(s, seconds):
    """Seconds until the peer closed (reading what it sends), or None."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return time.monotonic() - start


def fmt_closed(t):
    return "never" if t is None else "%.2f" % t


def cmd_hello(hostport, role, token, count="1"):
    socks = []
    for _ in range(int(count)):
        s = connect(hostport)
        s.sendall(hello(role, token))
        socks.append(s)
    deadline = time.monotonic() + 30
    results = []
    for s in socks:
        try:
            env = read_frame(s, deadline)
            ans = "none" if env is None else answer(env)
        except socket.timeout:
            ans = "timeout"
        closed = wait_closed(s, 10 if ans != "hello_reply" else 1)
        results.append((local(s), ans, closed))
    if len(results) == 1:
        print("local=%s answer=%s closed=%s" % (results[0][0], results[0][1],
                                                fmt_closed(results[0][2])))
    else:
        refused = sum(1 for r in results if r[1].startswith("error:4:"))
        closed = sum(1 for r in results if r[2] is not None)
        print("conns=%d refused=%d closed=%d" % (len(results), refused, closed))


def cmd_raw(hostport, what, token="", count="1"):
    socks = []
    for _ in range(int(count)):
        s = connect(hostport)
        if token:
            s.sendall(hello("client", token))
            env = read_frame(s, time.monotonic() + 30)
            if env is None or answer(env) != "hello_reply":
                sys.exit("raw: the hello was refused")
        if what.startswith("random:"):
            data = os.urandom(int(what[7:]))
        elif what.startswith("header:"):  # a frame announcing N bytes, and its first KiB
            n = int(what[7:])
            data = struct.pack(">I", n) + bytes(min(n, 1024))
        else:
            data = bytes.fromhex(what)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        socks.append((s, len(data)))
    results = [(local(s), n, wait_closed(s, 10)) for s, n in socks]
    if len(results) == 1:
        print("local=%s sent=%d closed=%s" % (results[0][0], results[0][1],
                                              fmt_closed(results[0][2])))
    else:
        print("conns=%d closed=%d" % (len(results), sum(1 for r in results if r[2] is not None)))


def cmd_stall(hostport, nbytes, conns, src=None):
    data = hello("client", "0" * 64)[:int(nbytes)]
    socks = []
    for _ in range(int(conns)):
        s = connect(hostport, src, tls=bool(data))
        if data:
            s.sendall(data)
        socks.append((s, time.monotonic()))
    times = []
    for s, t0 in socks:
        t = wait_closed(s, 30 - (time.monotonic() - t0))
        times.append(None if t is None else time.monotonic() - t0)
    closed = [t for t in times if t is not None]
    print("conns=%d closed=%d first=%s last=%s" % (
        len(socks), len(closed), fmt_closed(min(closed) if closed else None),
        fmt_closed(max(closed) if closed else None)))


def cmd_flood(hostport, conns, src, hold):
    socks, refused = [], 0
    for _ in range(int(conns)):
        try:
            socks.append(connect(hostport, src, tls=False))
        except OSError:
            refused += 1
    time.sleep(float(hold))
    open_ = closed = 0
    for s in socks:
        s.setblocking(False)
        try:  # a refused one gets an error frame (too many connections), then EOF
            while s.recv(65536):
                pass
            closed += 1
        except BlockingIOError:
            open_ += 1
        except ConnectionResetError:
            closed += 1
    print("conns=%d open=%d closed=%d refused=%d" % (len(socks), open_, closed, refused))


def cmd_create(hostport, token, name, image, label):
    key, value = label.split("=", 1)
    spec = (fbytes(1, name) + fbytes(3, image) + fbytes(7, fbytes(1, key) + fbytes(2, value))
            + fvar(8, 1))
    create = frame(fvar(1, 2) + fbytes(40, fbytes(1, spec)))
    s = connect(hostport)
    s.sendall(hello("client", token) + create)
    deadline = time.monotonic() + 10
    answers = []
    while len(answers) < 2:
        env = read_frame(s, deadline)
        if env is None:
            break
        answers.append(answer(env))
    print("local=%s answer=%s" % (local(s), ",".join(answers) or "none"))


def cmd_join(hostport, name, token):
    """NodeJoin{token, csr: not one, name}: the token is checked first."""
    join = frame(fvar(1, 1) + fbytes(100, fbytes(1, token) + fbytes(2, b"not a csr")
                                       + fbytes(3, name)))
    s = connect(hostport)
    s.sendall(join)
    try:
        env = read_frame(s, time.monotonic() + 10)
        ans = "none" if env is None else answer(env)
    except socket.timeout:
        ans = "timeout"
    print("local=%s answer=%s closed=%s" % (local(s), ans, fmt_closed(wait_closed(s, 10))))


def cmd_unread(hostport, token, count):
    s = connect(hostport)
    s.sendall(hello("client", token))
    req = b"".join(frame(fvar(1, i + 2) + fbytes(46, b"")) for i in range(int(count)))
    s.setblocking(False)
    sent, closed = 0, False
    deadline = time.monotonic() + 20
    while sent < len(req) and time.monotonic() < deadline:
        try:
            sent += s.send(req[sent:sent + 16384])
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            closed = True
            break
    time.sleep(2)  # the controller's queue for us fills; it must cut us off
    s.setblocking(True)
    t = wait_closed(s, 10) if not closed else 0.0
    print("local=%s requests=%d sent=%d closed=%s" % (local(s), int(count), sent, fmt_closed(t)))


def main(argv):
    cmds = {"hello": cmd_hello, "raw": cmd_raw, "stall": cmd_stall, "flood": cmd_flood,
            "create": cmd_create, "unread": cmd_unread, "join": cmd_join}
    if len(argv) < 2 or argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
PY
}

teardown() {
	client_loop_stop >/dev/null 2>&1 || true
	skiff_teardown
}

attack() {
	SKIFF_CA="$SKIFF_DATA_DIR/ca.pem" timeout 60 python3 "$ATTACK" "$@"
}

# secret FILE: the secret of the token in FILE (what a Hello carries).
secret() {
	sed -n '1s/^SKIFF-1-[0-9a-f]*-//p' "$1"
}

# field NAME LINE: the value of NAME=... in one line of attack's output.
field() {
	local w
	for w in $2; do
		[[ "$w" == "$1="* ]] && { echo "${w#*=}"; return 0; }
	done
	return 1
}

ctl_log() {
	cat "$SKIFF_TEST_DIR/controller.log"
}

# ---------------------------------------------------------------- the normal client

# client_loop_start: `skiff service ls` and `skiff node ls`, one after the
# other, until client_loop_stop; every run counted as served or failed.
client_loop_start() {
	CLIENT_LOOP_DIR="$BATS_TEST_TMPDIR/client-loop"
	mkdir -p "$CLIENT_LOOP_DIR"
	rm -f "$CLIENT_LOOP_DIR/stop"
	echo "0 0" >"$CLIENT_LOOP_DIR/count"
	(
		ok=0 failed=0 rc=0
		while [ ! -e "$CLIENT_LOOP_DIR/stop" ]; do
			for cmd in "service ls" "node ls"; do
				# shellcheck disable=SC2086 # two words on purpose
				# A generous bound: the machine may be loaded; a stalled
				# controller would still be caught.
				timeout 60 skiff $cmd >/dev/null 2>>"$CLIENT_LOOP_DIR/errors"
				rc=$?
				if [ "$rc" -eq 0 ]; then
					ok=$((ok + 1))
				else
					failed=$((failed + 1))
					echo "skiff $cmd: exit $rc" >>"$CLIENT_LOOP_DIR/errors"
				fi
			done
			echo "$ok $failed" >"$CLIENT_LOOP_DIR/count.new"
			mv "$CLIENT_LOOP_DIR/count.new" "$CLIENT_LOOP_DIR/count"
		done
	) </dev/null >/dev/null 2>&1 3>&- 4>&- &
	CLIENT_LOOP_PID=$!
	# It is served before the attack starts.
	wait_until 20 '[ "$(cut -d" " -f1 "$CLIENT_LOOP_DIR/count")" -ge 2 ]'
}

# client_loop_served: how many requests the loop got answered so far.
client_loop_served() {
	cut -d' ' -f1 "$CLIENT_LOOP_DIR/count"
}

# client_loop_stop: ends the loop; succeeds only if it had no failure.
client_loop_stop() {
	[ -n "${CLIENT_LOOP_PID:-}" ] || return 0
	touch "$CLIENT_LOOP_DIR/stop"
	wait "$CLIENT_LOOP_PID" 2>/dev/null || true
	CLIENT_LOOP_PID=
	local ok failed
	read -r ok failed <"$CLIENT_LOOP_DIR/count"
	echo "normal client: $ok requests served, $failed failed"
	if [ "$failed" -ne 0 ]; then
		echo "its errors:" >&2
		sort "$CLIENT_LOOP_DIR/errors" | uniq -c >&2
		return 1
	fi
	[ "$ok" -ge 4 ]
}

# served_during CMD...: runs CMD while the normal client loop runs, then
# waits until the loop is answered again (it is still being served; that it
# never failed, client_loop_stop says).
served_during() {
	local before
	before=$(client_loop_served)
	"$@"
	wait_until 20 "[ \"\$(client_loop_served)\" -ge $((before + 2)) ]"
}

# ---------------------------------------------------------------- tokens and bytes

@test "a wrong or missing token is refused, logged with the peer's address, and that connection closed" {
	cluster_start 0
	local join admin zeros out digest
	join=$(secret "$SKIFF_JOIN_TOKEN_FILE")
	admin=$(secret "$SKIFF_TOKEN_FILE")
	digest=$(cut -d- -f3 "$SKIFF_TOKEN_FILE")
	zeros=$(printf '0%.0s' {1..64})
	client_loop_start

	# role token: wrong, empty, short, the other role's, an unknown role; an
	# agent without its certificate, whatever its token
	for args in "client $zeros" "client ''" "client abc" "client $join" "agent $admin" \
		"agent $zeros" "agent $join" "none $admin"; do
		eval "set -- $args"
		out=$(attack hello "$SKIFF_HOST" "$1" "$2")
		echo "hello $1 ${2:0:8}...: $out"
		[[ "$(field answer "$out")" == error:4:* ]]      # ERR_AUTH
		[ "$(field closed "$out")" != never ]            # closed by the controller
		grep -q "$(field local "$out"): refused: " "$SKIFF_TEST_DIR/controller.log"
	done
	# A hundred more, at once.
	out=$(served_during attack hello "$SKIFF_HOST" client "$zeros" 100 | tail -n1)
	echo "100 wrong tokens: $out"
	[ "$out" = "conns=100 refused=100 closed=100" ]

	# The right token is let in; the join token only joins.
	[ "$(field answer "$(attack hello "$SKIFF_HOST" client "$admin")")" = hello_reply ]
	[[ "$(field answer "$(attack hello "$SKIFF_HOST" agent "$join")")" == error:4:an_agent_needs_its_node_certificate* ]]
	[ "$(field answer "$(attack join "$SKIFF_HOST" x1 "$zeros")")" = error:4:wrong_token ]
	[ "$(field answer "$(attack join "$SKIFF_HOST" x1 "$admin")")" = error:4:wrong_token ]
	[[ "$(field answer "$(attack join "$SKIFF_HOST" x1 "$join")")" == error:1:csr:* ]]
	run env SKIFF_TOKEN="SKIFF-1-$digest-$zeros" SKIFF_TOKEN_FILE= skiff service ls
	[ "$status" -ne 0 ]
	[[ "$output" == *"wrong token"* ]]
	client_loop_stop
}

@test "garbage bytes close only that connection" {
	cluster_start 0
	local out admin
	admin=$(secret "$SKIFF_TOKEN_FILE")
	client_loop_start
	# Random bytes, inside TLS, before and after a good hello.
	for i in 1 2 3 4 5; do
		out=$(attack raw "$SKIFF_HOST" random:65536)
		[ "$(field closed "$out")" != never ]
		out=$(attack raw "$SKIFF_HOST" random:65536 "$admin")
		[ "$(field closed "$out")" != never ]
	done
	# A zero length, a frame that is not an Envelope, an Envelope without a
	# message, a length with nothing after it but junk: each closes.
	for hex in 00000000 00000006ffffffffffff 000000020801 0000000a08011234ffffffffffff; do
		out=$(attack raw "$SKIFF_HOST" "$hex")
		echo "raw $hex: $out"
		[ "$(field closed "$out")" != never ]
		grep -q "connection from $(field local "$out") closed: malformed frame" \
			"$SKIFF_TEST_DIR/controller.log"
		out=$(attack raw "$SKIFF_HOST" "$hex" "$admin")
		[ "$(field closed "$out")" != never ]
	done
	# Many at once, before and after a hello.
	out=$(served_during attack raw "$SKIFF_HOST" random:4096 "" 100 | tail -n1)
	[ "$out" = "conns=100 closed=100" ]
	out=$(served_during attack raw "$SKIFF_HOST" random:4096 "$admin" 100 | tail -n1)
	[ "$out" = "conns=100 closed=100" ]
	client_loop_stop
	# The controller is up and whole.
	skiff service ls
}

@test "an oversize frame is refused from its header, before its body" {
	cluster_start 0 --max-frame 65536 --max-pending 262144 --handshake-timeout 30s
	local out admin
	admin=$(secret "$SKIFF_TOKEN_FILE")
	client_loop_start
	# 65537 bytes announced: closed when the header arrives (only 1 KiB of
	# the body is sent, so a close means the header was enough).
	for who in "" "$admin"; do
		out=$(attack raw "$SKIFF_HOST" header:65537 "$who")
		echo "oversize (${who:+after hello}): $out"
		[ "$(field closed "$out")" != never ]
		grep -q "connection from $(field local "$out") closed: frame too large" \
			"$SKIFF_TEST_DIR/controller.log"
	done
	# The largest 32-bit length, too.
	out=$(attack raw "$SKIFF_HOST" header:4294967295)
	[ "$(field closed "$out")" != never ]
	# Exactly the limit is not too large: the controller waits for the rest
	# (for up to the handshake timeout, longer than this waits).
	out=$(attack raw "$SKIFF_HOST" header:65536 "$admin")
	[ "$(field closed "$out")" = never ]
	client_loop_stop
}

@test "half frames that stall are cut off after the handshake timeout" {
	cluster_start 0 --handshake-timeout 1s
	local out
	client_loop_start
	# Silent connections (no TLS handshake), half a header, half a hello (in
	# TLS): 30 of each at once.
	for n in 0 2 30; do
		out=$(served_during attack stall "$SKIFF_HOST" "$n" 30 | tail -n1)
		echo "stall after $n bytes: $out"
		[ "$(field conns "$out")" -eq 30 ]
		[ "$(field closed "$out")" -eq 30 ]   # every one cut off, within 30s
	done
	[ "$(grep -c 'closed: timed out' "$SKIFF_TEST_DIR/controller.log")" -ge 90 ]
	# A client past its hello may be silent (tests/unit/test_conn.c), but not
	# stall inside a frame: 2000 bytes announced, 1024 sent.
	out=$(served_during attack raw "$SKIFF_HOST" header:2000 "$(secret "$SKIFF_TOKEN_FILE")" | tail -n1)
	echo "client stalled in a frame: $out"
	[ "$(field closed "$out")" != never ]
	grep -q "connection from $(field local "$out") closed: timed out" "$SKIFF_TEST_DIR/controller.log"
	client_loop_stop
}

@test "a flood of connections past --max-connections-per-address is refused at once" {
	cluster_start 0 --max-connections-per-address 20 --handshake-timeout 60s
	local out
	client_loop_start
	# 200 connections from 127.0.0.9, held: 20 stay, the rest are closed at
	# once; the normal client, from 127.0.0.1, is served all along.
	out=$(served_during attack flood "$SKIFF_HOST" 200 127.0.0.9 3 | tail -n1)
	echo "flood: $out"
	[ "$(field open "$out")" -eq 20 ]
	[ "$(field closed "$out")" -eq 180 ]
	grep -q "refusing a connection from 127.0.0.9:[0-9]*: too many connections" \
		"$SKIFF_TEST_DIR/controller.log"
	# Twice more, two addresses at once: the per-address limit is per address.
	out=$(served_during bash -c 'timeout 60 python3 "$ATTACK" flood "$SKIFF_HOST" 100 127.0.0.10 2 &
		timeout 60 python3 "$ATTACK" flood "$SKIFF_HOST" 100 127.0.0.11 2; wait')
	echo "two floods: $out"
	[ "$(grep -c 'open=20 closed=80' <<<"$out")" -eq 2 ]
	client_loop_stop
}

@test "a client that never reads its replies is cut off at --max-pending" {
	cluster_start 0 --max-frame 16384 --max-pending 65536
	local out i big
	# Services whose listing is large, but fits a frame (no agents: -d,
	# nothing runs).
	big=$(head -c 2000 /dev/zero | tr '\0' x)
	for i in $(seq 4); do
		skiff service create -d --name "big$i" --env "BIG=$big" skiff-test/web:v1 >/dev/null
	done
	client_loop_start
	out=$(served_during attack unread "$SKIFF_HOST" "$(secret "$SKIFF_TOKEN_FILE")" 3000 | tail -n1)
	echo "unread: $out"
	[ "$(field closed "$out")" != never ]
	grep -q "$(field local "$out"): cannot send .*; closing" "$SKIFF_TEST_DIR/controller.log"
	client_loop_stop
}

@test "limits inside a spec: replicas past --max-replicas, too many entries, a skiff.* label" {
	cluster_start 0 --max-replicas 10
	local admin out
	admin=$(secret "$SKIFF_TOKEN_FILE")
	run skiff service create -d --name many --replicas 11 skiff-test/web:v1
	[ "$status" -ne 0 ]
	[[ "$output" == *"replicas: 11 is more than the limit of 10"* ]]
	skiff service create -d --name ten --replicas 10 skiff-test/web:v1
	run skiff service scale ten=11
	[ "$status" -ne 0 ]
	[[ "$output" == *"limit of 10"* ]]
	# The CLI checks too, before sending anything.
	run skiff service create -d --name lbl --label skiff.cluster=forged skiff-test/web:v1
	[ "$status" -eq 2 ]
	[[ "$output" == *"skiff. prefix is reserved"* ]]
	run skiff service create -d --name envs $(for i in $(seq 300); do echo "-e K$i=v"; done) \
		skiff-test/web:v1
	[ "$status" -eq 2 ]
	[[ "$output" == *"env: more than 256 entries"* ]]
	# A client that skips the CLI's checks meets the controller's.
	out=$(attack create "$SKIFF_HOST" "$admin" forged skiff-test/web:v1 skiff.cluster=forged)
	echo "create with skiff.cluster: $out"
	[[ "$(field answer "$out")" == hello_reply,error:1:labels:_skiff.cluster:_the_skiff._prefix_is_reserved ]]
	out=$(attack create "$SKIFF_HOST" "$admin" forged skiff-test/web:v1 team=a)
	[ "$(field answer "$out")" = hello_reply,service_reply ]
	run skiff service ls -q
	[ "${#lines[@]}" -eq 2 ] # ten, forged: nothing else was stored
}

# ---------------------------------------------------------------- tokens rotated

@test "token rotation: joined agents keep working, new joins need the new token, the old admin token is refused" {
	cluster_start 1
	local old_join old_admin out n1
	n1=$(node_name 1)
	old_join=$(secret "$SKIFF_JOIN_TOKEN_FILE")
	old_admin=$(secret "$SKIFF_TOKEN_FILE")
	cp "$SKIFF_JOIN_TOKEN_FILE" "$SKIFF_TEST_DIR/old-join-token"
	skiff service create --name rot --replicas 1 skiff-test/web:v1

	# admin: the running controller rereads the file.
	run skiff-controller --rotate-token admin --data-dir "$SKIFF_DATA_DIR"
	[ "$status" -eq 0 ]
	[ "$(stat -c %a "$SKIFF_TOKEN_FILE")" = 600 ]
	[ "$(secret "$SKIFF_TOKEN_FILE")" != "$old_admin" ]
	# The same CA digest: only the secret changed.
	[ "$(cut -d- -f3 "$SKIFF_TOKEN_FILE")" = "$(cut -d- -f3 "$SKIFF_JOIN_TOKEN_FILE")" ]
	wait_until 10 "[ \"\$(field answer \"\$(attack hello $SKIFF_HOST client $old_admin)\")\" = error:4:wrong_token ]"
	run env SKIFF_TOKEN="SKIFF-1-$(cut -d- -f3 "$SKIFF_TOKEN_FILE")-$old_admin" SKIFF_TOKEN_FILE= \
		skiff service ls
	[ "$status" -ne 0 ]
	[[ "$output" == *"wrong token"* ]]
	skiff service ls      # the new one, from the file
	grep -q "tokens reread: .*admin" "$SKIFF_TEST_DIR/controller.log"

	# join: the joined agent stays connected and ready, its task runs.
	run skiff-controller --rotate-token join --data-dir "$SKIFF_DATA_DIR"
	[ "$status" -eq 0 ]
	wait_until 10 "[ \"\$(field answer \"\$(attack join $SKIFF_HOST x2 $old_join)\")\" = error:4:wrong_token ]"
	sleep 4 # past the heartbeat timeout
	[ "$(skiff node ls --format json | jq -r --arg n "$n1" '.[] | select(.name == $n) | .state')" = ready ]
	[ "$(count_running rot)" -eq 1 ]

	# A new agent with the old token is refused and never joins ...
	agent_start 2 --join-token-file "$SKIFF_TEST_DIR/old-join-token"
	wait_until 20 "grep -q 'wrong token' '$SKIFF_TEST_DIR/agent-2.log'"
	grep -q "refused: wrong token" "$SKIFF_TEST_DIR/controller.log"
	[ "$(skiff node ls -q | wc -l)" -eq 1 ]
	agent_kill 2 TERM || true # it may have given up by itself
	# ... one with the new token joins.
	agent_start 3
	wait_nodes_ready 2 30

	# After a controller restart the joined agent comes back, with its
	# certificate. (The nodes are ready at once from the store; they must
	# still be after the heartbeat timeout.)
	local registered
	registered=$(grep -c "registered as node" "$SKIFF_TEST_DIR/agent-1.log")
	controller_restart
	wait_until 30 "[ \"\$(grep -c 'registered as node' '$SKIFF_TEST_DIR/agent-1.log')\" -gt $registered ]"
	sleep 4
	[ "$(skiff node ls --format json | jq -r '[.[] | select(.state == "ready")] | length')" -eq 2 ]
	[ "$(count_running rot)" -eq 1 ]
}

# ---------------------------------------------------------------- containers

@test "containers: never privileged, no host namespaces or capabilities, --user honoured, skiff's labels" {
	cluster_start 1
	local id
	skiff service create --name safe --user 1000:1000 --label team=payments --replicas 1 \
		skiff-test/web:v1
	id=$(service_containers safe | head -n1)
	[ -n "$id" ]
	[ "$(docker inspect -f '{{.HostConfig.Privileged}}' "$id")" = false ]
	[ "$(docker inspect -f '{{.HostConfig.NetworkMode}}' "$id")" = bridge ]
	[ -z "$(docker inspect -f '{{.HostConfig.PidMode}}' "$id")" ]
	[ "$(docker inspect -f '{{.HostConfig.IpcMode}}' "$id")" = private ]
	[ -z "$(docker inspect -f '{{.HostConfig.UsernsMode}}' "$id")" ]
	[ "$(docker inspect -f '{{json .HostConfig.CapAdd}}' "$id")" = null ]
	[ "$(docker inspect -f '{{json .HostConfig.Devices}}' "$id")" = '[]' ] ||
		[ "$(docker inspect -f '{{json .HostConfig.Devices}}' "$id")" = null ]
	[ "$(docker inspect -f '{{json .HostConfig.SecurityOpt}}' "$id")" = null ]
	[ "$(docker inspect -f '{{.Config.User}}' "$id")" = 1000:1000 ]
	[ "$(docker top "$id" -o pid,uid | awk 'NR > 1 { print $2 }' | sort -u)" = 1000 ]
	[ "$(container_label "$id" skiff.cluster)" = "$CLUSTER_ID" ]
	[ "$(container_label "$id" skiff.node)" = "$(node_name 1)" ]
	[ "$(container_label "$id" skiff.service)" = safe ]
	[ "$(container_label "$id" team)" = payments ]

	# Compose keys that would weaken that are refused, by name.
	cat >"$BATS_TEST_TMPDIR/unsafe.yml" <<-EOF
		services:
		  web:
		    image: skiff-test/web:v1
		    KEY
	EOF
	for key in "privileged: true" "network_mode: host" "pid: host" "ipc: host" \
		"cap_add: [SYS_ADMIN]" "devices: [/dev/mem]" "security_opt: [seccomp=unconfined]" \
		"userns_mode: host" "labels: {skiff.cluster: forged}"; do
		sed "s|KEY|$key|" "$BATS_TEST_TMPDIR/unsafe.yml" >"$BATS_TEST_TMPDIR/u.yml"
		run skiff stack deploy -c "$BATS_TEST_TMPDIR/u.yml" unsafe
		echo "$key: $output"
		[ "$status" -ne 0 ]
		[[ "$output" == *"${key%%:*}"* ]]
	done
	[ "$(skiff service ls -q | wc -l)" -eq 1 ]
}

# ---------------------------------------------------------------- files

@test "the data dir is 0700 and the token files 0600; looser modes are tightened with a warning" {
	cluster_start 0
	[ "$(stat -c %a "$SKIFF_DATA_DIR")" = 700 ]
	for f in join-token admin-token cluster-id state.db ca.pem ca-key.pem; do
		[ "$(stat -c %a "$SKIFF_DATA_DIR/$f")" = 600 ]
	done
	controller_kill TERM
	chmod 0755 "$SKIFF_DATA_DIR"
	chmod 0644 "$SKIFF_DATA_DIR/join-token" "$SKIFF_DATA_DIR/admin-token" "$SKIFF_DATA_DIR/ca-key.pem"
	controller_start
	[ "$(stat -c %a "$SKIFF_DATA_DIR")" = 700 ]
	[ "$(stat -c %a "$SKIFF_DATA_DIR/join-token")" = 600 ]
	[ "$(stat -c %a "$SKIFF_DATA_DIR/admin-token")" = 600 ]
	grep -q "$SKIFF_DATA_DIR had mode 0755; setting 0700" "$SKIFF_TEST_DIR/controller.log"
	grep -q "$SKIFF_DATA_DIR/join-token had mode 0644; setting 0600" "$SKIFF_TEST_DIR/controller.log"
	grep -q "$SKIFF_DATA_DIR/admin-token had mode 0644; setting 0600" "$SKIFF_TEST_DIR/controller.log"
	grep -q "$SKIFF_DATA_DIR/ca-key.pem had mode 0644; setting 0600" "$SKIFF_TEST_DIR/controller.log"
	[ "$(stat -c %a "$SKIFF_DATA_DIR/ca-key.pem")" = 600 ]
	skiff node ls

	# A token file of another user is refused: the controller does not start.
	controller_kill TERM
	chown 65534 "$SKIFF_DATA_DIR/admin-token"
	run controller_start
	[ "$status" -ne 0 ]
	grep -q "admin-token: owned by uid 65534, not by this user" "$SKIFF_TEST_DIR/controller.log"
	chown "$(id -u)" "$SKIFF_DATA_DIR/admin-token"
	rm -f "$SKIFF_TEST_DIR/pids/controller"
	controller_start
	skiff node ls
}
