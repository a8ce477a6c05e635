#!/usr/bin/env python3
"""A `skiff events` reader that does not read: for tests/e2e/monitoring.bats.

Speaks skiff's wire protocol by hand over TLS 1.3 (the controller verified by the
ca.pem beside the token file; 4-byte big-endian length, one protobuf
Envelope): Hello as a client with the admin token, then an EventsRequest,
with a receive buffer of a few KiB so that the kernel holds little for it.
It then reads nothing for HOLD seconds, then everything for READ seconds, and
prints what it got: "events N" and "dropped N" (the EventsDropped counts).

    slow_events_reader.py HOST:PORT TOKEN_FILE HOLD READ
"""
import os
import socket
import ssl
import struct
import sys
import time


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def lendelim(num, data):
    return field(num, 2, varint(len(data)) + data)


def frame(envelope):
    return struct.pack(">I", len(envelope)) + envelope


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf):
    """(number, wire type, value) of a message's top-level fields."""
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        yield num, wire, v


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    # SKIFF-1-<CA digest>-<secret>: the secret is what Hello carries; the
    # controller is verified by the CA in the token file's data dir.
    token = open(sys.argv[2]).read().strip().rsplit("-", 1)[1].encode()
    hold, read_for = float(sys.argv[3]), float(sys.argv[4])
    ctx = ssl.create_default_context(
        cafile=os.path.join(os.path.dirname(os.path.abspath(sys.argv[2])), "ca.pem"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # the CA is the cluster's own; its chain is checked
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((host, int(port)))
    s = ctx.wrap_socket(raw)
    hello = field(1, 0, varint(2)) + lendelim(2, token)          # role client, token
    s.sendall(frame(field(1, 0, varint(1)) + lendelim(10, hello)))  # Envelope{id 1, hello}
    s.sendall(frame(field(1, 0, varint(2)) + lendelim(70, b"")))   # EventsRequest, from now
    time.sleep(hold)
    s.settimeout(0.5)
    data, end = b"", time.time() + read_for
    while time.time() < end:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        if not chunk:
            break
        data += chunk
    events = dropped = 0
    i = 0
    while i + 4 <= len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        if i + 4 + n > len(data):
            break
        for num, _, v in fields(data[i + 4:i + 4 + n]):
            if num == 71:
                events += 1
            elif num == 72:
                for f, _, c in fields(v):
                    if f == 1:
                        dropped += c
        i += 4 + n
    print("events %d" % events)
    print("dropped %d" % dropped)


if __name__ == "__main__":
    main()
