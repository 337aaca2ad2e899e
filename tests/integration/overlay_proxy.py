#!/usr/bin/env python3
"""A TCP proxy between a node's rootfs-fuse and its imaged that loses answers:
it forwards every HTTP/1.1 request, and for the first N overlay-ops requests
(POST .../overlay-ops) whose body names a rename, it reads the server's answer
and closes the node's connection instead of passing it on, as a network that
fails after the server applied the batch. The node must retry, and the batch
must still be applied once. With a fifth argument `old`, it answers every
batch that carries an id (DIMOPS2) as a server of an older release did (400,
"must start with DIMOPS1", no errno) and passes the rest on.
Usage: overlay_proxy.py LISTEN_PORT SERVER_PORT N LOG [old]"""
import socket
import sys
import threading

listen_port, server_port, drops, log_path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
old_server = len(sys.argv) > 5 and sys.argv[5] == "old"
OLD_ANSWER = b'{"error": "overlay operations must start with DIMOPS1", "code": "invalid argument"}'
lock = threading.Lock()


def read_message(f):
    """One HTTP message (head and Content-Length body) from a file object; None at EOF."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline(65536)
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = f.read(length) if length else b""
    return head, body


def first_op(body):
    """The code of a batch's first operation (DIMOPS2: after the batch id)."""
    if body.startswith(b"DIMOPS1\n"):
        return body[8:9]
    if not body.startswith(b"DIMOPS2\n") or len(body) < 12:
        return b""
    n = int.from_bytes(body[8:12], "little")
    return body[12 + n:13 + n]


def serve(client):
    global drops
    server = socket.create_connection(("127.0.0.1", server_port))
    cf, sf = client.makefile("rb"), server.makefile("rb")
    try:
        while True:
            req = read_message(cf)
            if req is None:
                return
            if old_server and b"/overlay-ops" in req[0].split(b"\r\n")[0] and req[1].startswith(b"DIMOPS2\n"):
                with open(log_path, "a") as log:
                    log.write("refused a batch id\n")
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                               b"Content-Length: %d\r\n\r\n" % len(OLD_ANSWER) + OLD_ANSWER)
                continue
            server.sendall(req[0] + req[1])
            resp = read_message(sf)
            if resp is None:
                return
            lose = False
            if b"/overlay-ops" in req[0].split(b"\r\n")[0] and first_op(req[1]) == b"N":
                with lock:
                    if drops > 0 and resp[0].startswith(b"HTTP/1.1 200"):
                        drops -= 1
                        lose = True
            if lose:
                with open(log_path, "a") as log:
                    log.write("lost the answer to a batch of %d bytes\n" % len(req[1]))
                return
            client.sendall(resp[0] + resp[1])
    finally:
        client.close()
        server.close()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", listen_port))
listener.listen(64)
with open(log_path, "a") as log:
    log.write("listening\n")
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
