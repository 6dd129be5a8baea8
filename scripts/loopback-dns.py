#!/usr/bin/env python3
"""A tiny DNS server for loopback topologies (tests and `make cluster`).

It plays Docker's embedded DNS: one name resolves to every relay replica, so the proxy configs in
deploy/ run unchanged but for the resolver address and the name. Answers A queries for the names
given with --name NAME=ADDR[,ADDR…] (TTL 1 s), NODATA for other types of those names, NXDOMAIN
for anything else. UDP on 127.0.0.1 only.

    loopback-dns.py --port 5353 --name relay.test=127.0.0.2,127.0.0.3,127.0.0.4
"""
import argparse
import socket
import struct


def parse_question(packet):
    """Returns (id, flags, qname labels, qtype, qclass, end offset) of the first question."""
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    offset = 12
    labels = []
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        labels.append(packet[offset:offset + length].decode("ascii", "replace").lower())
        offset += length
    qtype, qclass = struct.unpack("!HH", packet[offset:offset + 4])
    return ident, flags, labels, qtype, qclass, offset + 4


def answer(packet, records):
    ident, flags, labels, qtype, qclass, end = parse_question(packet)
    name = ".".join(labels)
    question = packet[12:end]
    addresses = records.get(name)
    recursion_desired = flags & 0x0100
    if addresses is None:
        rcode, answers = 3, []  # NXDOMAIN
    elif qtype == 1:
        rcode, answers = 0, addresses
    else:
        rcode, answers = 0, []  # NODATA: the name exists, no record of that type
    header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | recursion_desired | 0x0080 | rcode, 1, len(answers), 0, 0)
    body = b""
    for address in answers:
        body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 1, 4) + socket.inet_aton(address)
    return header + question + body


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", action="append", default=[], help="NAME=ADDR[,ADDR...]")
    options = parser.parse_args()
    records = {}
    for item in options.name:
        name, _, addresses = item.partition("=")
        records[name.lower().rstrip(".")] = [a for a in addresses.split(",") if a]
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", options.port))
    while True:
        packet, peer = server.recvfrom(4096)
        try:
            server.sendto(answer(packet, records), peer)
        except (IndexError, struct.error):
            pass  # not a query we understand: no answer


if __name__ == "__main__":
    main()
