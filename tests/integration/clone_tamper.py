#!/usr/bin/env python3
"""A hostile host in a clone chain, for clone_chain.sh: listens on LISTEN,
relays to BACKEND, and replaces the bytes of chunk SEQ with other bytes whose
SHA-256 it puts in the chunk header (it cannot compute the sender's MACs).
Everything else, both ways, passes unchanged. Frames: docs/protocol.md."""
import hashlib
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


def main():
    listen, backend, seq = addr(sys.argv[1]), addr(sys.argv[2]), int(sys.argv[3])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen)
    srv.listen(16)
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        back = socket.create_connection(backend)
        threading.Thread(target=downstream, args=(conn, back, seq), daemon=True).start()
        threading.Thread(target=upstream, args=(back, conn), daemon=True).start()


main()
