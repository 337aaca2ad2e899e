#!/usr/bin/env python3
"""A recording HTTP/1.1 proxy between one node and its imaged: it forwards
every request and answer unchanged and writes one line per request to LOG,
so that dim-nodesim can replay what a real boot asked for (record_boot.sh).
Request bodies (object ids of batches, overlay operations, ranged writes of
the node's few persistent files) are kept in hex so the replay sends them too.

Line (tab-separated): start_ms end_ms connection method target signed(0/1)
status request_body_bytes answer_body_bytes request_body_hex_or_-
Times are milliseconds since the proxy's first request.
Usage: trace_proxy.py LISTEN_PORT SERVER_PORT LOG"""
import socket
import sys
import threading
import time

listen_port, server_port, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
t0 = [None]
log = open(log_path, "w", buffering=1)


def now_ms():
    t = time.monotonic()
    with lock:
        if t0[0] is None:
            t0[0] = t
        return (t - t0[0]) * 1000.0


def read_head(f):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline(65536)
        if not line:
            return None
        head += line
    return head


def header(head, name):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def read_body(f, head, out):
    """Copies a message body (Content-Length or chunked) to out; returns its bytes (decoded length) and data."""
    length = header(head, b"content-length")
    if length is not None:
        n = int(length)
        data = f.read(n) if n else b""
        out.sendall(data)
        return n, data
    if (header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        total = 0
        while True:
            line = f.readline(65536)
            out.sendall(line)
            size = int(line.split(b";")[0].strip(), 16)
            chunk = f.read(size + 2)
            out.sendall(chunk)
            total += size
            if size == 0:
                while chunk != b"\r\n":  # trailers
                    chunk = f.readline(65536)
                    out.sendall(chunk)
                return total, b""
    return 0, b""


def serve(client, conn_id):
    server = socket.create_connection(("127.0.0.1", server_port))
    cf, sf = client.makefile("rb"), server.makefile("rb")
    try:
        while True:
            head = read_head(cf)
            if head is None:
                return
            start = now_ms()
            server.sendall(head)
            req_len, req_body = read_body(cf, head, server)
            answer = read_head(sf)
            if answer is None:
                return
            client.sendall(answer)
            method, target = head.split(b" ")[0].decode(), head.split(b" ")[1].decode()
            resp_len, _ = (0, b"") if method == "HEAD" else read_body(sf, answer, client)
            status = answer.split(b" ")[1].decode()
            body = req_body.hex() if req_body else "-"
            signed = 1 if header(head, b"x-dim-auth") is not None else 0
            end = now_ms()
            with lock:
                log.write(f"{start:.1f}\t{end:.1f}\t{conn_id}\t{method}\t{target}\t{signed}\t{status}\t"
                          f"{req_len}\t{resp_len}\t{body}\n")
    except (OSError, ValueError) as e:
        print(f"trace_proxy: connection {conn_id}: {e!r}", file=sys.stderr)
    finally:
        client.close()
        server.close()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", listen_port))
listener.listen(64)
n = 0
while True:
    c, _ = listener.accept()
    n += 1
    threading.Thread(target=serve, args=(c, n), daemon=True).start()
