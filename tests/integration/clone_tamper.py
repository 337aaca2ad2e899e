#!/usr/bin/env python3
"""Hostile hosts in a clone chain, for clone_chain.sh. Frames: docs/protocol.md.

clone_tamper.py LISTEN BACKEND SEQ: listens on LISTEN, relays to BACKEND, and
replaces the bytes of chunk SEQ with other bytes whose SHA-256 it puts in the
chunk header (it cannot compute the sender's MACs). Everything else, both
ways, passes unchanged.

clone_tamper.py impersonate LISTEN NAME: answers at LISTEN like receiver NAME
that has everything, without its key. A hello gets READY(0) and an ACK for
2^40 chunks; a status request a STATUS saying "done". It cannot make the
receiver's MACs, so each frame ends with 32 made-up bytes; the sender must
refuse them all."""
import hashlib
import os
import socket
import struct
import sys
import threading


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        if not got:
            raise EOFError
        buf += got
    return buf


def downstream(src, dst, seq_to_forge):
    try:
        while True:
            head = read_exact(src, 5)
            ftype, length = head[0], struct.unpack("<I", head[1:])[0]
            body = read_exact(src, length)
            if ftype == 3:  # a chunk
                seq = struct.unpack("<Q", body[0:8])[0]
                if seq == seq_to_forge:
                    nmacs = struct.unpack("<I", body[45:49])[0]
                    start = 49 + 32 * nmacs
                    data = bytearray(body[start:])
                    data[0] ^= 0xFF
                    sha = hashlib.sha256(bytes(data)).digest()
                    body = body[:13] + sha + body[45:start] + bytes(data)
                    print("forged chunk", seq, flush=True)
            dst.sendall(head + body)
    except (EOFError, OSError):
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def upstream(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass


def frame(ftype, body):
    return bytes([ftype]) + struct.pack("<I", len(body)) + body


def forged(ftype, body):
    return frame(ftype, body + os.urandom(32))


def string(b):
    return struct.pack("<I", len(b)) + b


def serve(conn, name):
    try:
        head = read_exact(conn, 5)
        ftype, length = head[0], struct.unpack("<I", head[1:])[0]
        read_exact(conn, length)
        if ftype == 1:  # hello
            conn.sendall(forged(2, struct.pack("<Q", 0)) + forged(4, struct.pack("<Q", 1 << 40)))
            print("forged ready and ack", flush=True)
            while conn.recv(65536):
                pass
        elif ftype == 6:  # status request
            body = string(name) + bytes([3]) + struct.pack("<QQ", 1 << 30, 1024) + string(b"")
            conn.sendall(forged(7, body))
            print("forged status", flush=True)
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def accept_forever(listen, handle):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen)
    srv.listen(16)
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        handle(conn)


def relay(conn, backend, seq):
    back = socket.create_connection(backend)
    threading.Thread(target=downstream, args=(conn, back, seq), daemon=True).start()
    threading.Thread(target=upstream, args=(back, conn), daemon=True).start()


def main():
    if sys.argv[1] == "impersonate":
        name = sys.argv[3].encode()
        return accept_forever(addr(sys.argv[2]),
                              lambda c: threading.Thread(target=serve, args=(c, name), daemon=True).start())
    backend, seq = addr(sys.argv[2]), int(sys.argv[3])
    accept_forever(addr(sys.argv[1]), lambda c: relay(c, backend, seq))


main()
