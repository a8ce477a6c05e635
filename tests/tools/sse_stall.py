#!/usr/bin/env python3
"""An /api/v1/events client that never reads, for tests/e2e/dashboard.bats.

    sse_stall.py HOST PORT TOKEN_FILE NODE TOGGLES METRICS_PORT

Opens the events stream with a tiny receive buffer and reads nothing, makes
TOGGLES node events (drain, active, ... of NODE over one keep-alive
connection), then prints the controller's skiff_http_event_stream_unsent_bytes,
and only then reads the stream for a few seconds and prints whether it told
the events it lost ("event: dropped"). One JSON object on stdout.
"""
import http.client
import json
import re
import socket
import sys
import time

host, port, token_file, node, toggles, metrics_port = sys.argv[1:7]
port, toggles, metrics_port = int(port), int(toggles), int(metrics_port)
token = open(token_file).read().strip()

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((host, port))
s.sendall(("GET /api/v1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n"
           % (host, token)).encode())
time.sleep(0.5)

api = http.client.HTTPConnection(host, port, timeout=10)
for i in range(toggles):
    body = json.dumps({"availability": "drain" if i % 2 == 0 else "active"})
    api.request("POST", "/api/v1/nodes/%s/availability" % node, body,
                {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = api.getresponse()
    r.read()
    if r.status != 200:
        print(json.dumps({"error": "toggle %d: status %d" % (i, r.status)}))
        sys.exit(1)
time.sleep(1)

m = http.client.HTTPConnection(host, metrics_port, timeout=10)
m.request("GET", "/metrics")
page = m.getresponse().read().decode()
unsent = int(float(re.search(r"^skiff_http_event_stream_unsent_bytes (\S+)", page, re.M).group(1)))
streams = int(float(re.search(r"^skiff_http_event_streams (\S+)", page, re.M).group(1)))

got = b""
s.settimeout(1)
deadline = time.time() + 8
while time.time() < deadline and b"event: dropped" not in got:
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        continue
    if not chunk:
        break
    got += chunk
    got = got[-(1 << 20):]
dropped = re.search(rb"event: dropped\ndata: \{\"count\":(\d+)\}", got)
print(json.dumps({"unsent_bytes": unsent, "streams": streams,
                  "dropped": int(dropped.group(1)) if dropped else 0}))
