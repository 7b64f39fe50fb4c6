#!/usr/bin/env python3
"""A DNS server for tests: answers A queries for the names it is given, NXDOMAIN for others.

    tiny_dns.py ADDRESS PORT NAME=IPV4 [NAME=IPV4 ...]

Listens on UDP ADDRESS:PORT (loopback only: the tests never listen elsewhere), prints "ready" once
bound, and logs each question to standard error. Stopped by its PID.
"""
import socket
import struct
import sys


def parse_question(packet):
    labels, i = [], 12
    while packet[i] != 0:
        length = packet[i]
        labels.append(packet[i + 1:i + 1 + length].decode("ascii", "replace"))
        i += 1 + length
    qtype, qclass = struct.unpack("!HH", packet[i + 1:i + 5])
    return ".".join(labels).lower(), qtype, qclass, i + 5


def answer(packet, records):
    ident, _flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        return None
    name, qtype, qclass, end = parse_question(packet)
    question = packet[12:end]
    address = records.get(name.rstrip("."))
    sys.stderr.write("query %s type %d -> %s\n" % (name, qtype, address))
    sys.stderr.flush()
    if address is None:
        # NXDOMAIN, recursion available
        return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question
    if qtype != 1 or qclass != 1:
        return struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(address)
    return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + record


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    if not host.startswith("127."):
        sys.exit("tiny_dns.py: listens on loopback only")
    records = dict(arg.lower().split("=", 1) for arg in sys.argv[3:])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    print("ready", flush=True)
    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            reply = answer(packet, records)
        except (IndexError, struct.error):
            reply = None
        if reply:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
