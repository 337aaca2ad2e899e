#!/usr/bin/env python3
"""A hostile parent for signed-copy tests: forwards HTTP to an imaged and
appends one byte to the body of every answer whose path starts with one of
the given prefixes, keeping all headers (X-Dim-Signature included).

usage: rewrite_proxy.py LISTEN_PORT UPSTREAM_URL PREFIX[,PREFIX...] LOG_FILE
Each rewritten answer is logged as "PATH" in LOG_FILE.
"""
import http.client
import http.server
import sys
import threading
import urllib.parse

LISTEN, UPSTREAM, PREFIXES, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4]
UP = urllib.parse.urlparse(UPSTREAM)
LOCK = threading.Lock()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=120)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status == 200 and any(self.path.startswith(p) for p in PREFIXES):
            data += b"x"
            with LOCK, open(LOG, "a") as f:
                f.write(self.path + "\n")
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = forward

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Proxy).serve_forever()
