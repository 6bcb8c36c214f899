#!/usr/bin/env python3
"""A stand-in for journald's native socket: receives datagrams on the given
path and appends each to an output file, prefixed by its length (8 bytes,
little-endian)."""
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
with open(out, "ab", buffering=0) as sink:
    while True:
        data = sock.recv(1 << 20)
        sink.write(len(data).to_bytes(8, "little") + data)
