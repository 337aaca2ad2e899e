#!/usr/bin/env python3
"""A man in the middle on the boot network, for the verified GRUB path: it
forwards GRUB's (and linuxrc's) plain HTTP requests to imaged and, while
told to, tampers with one boot file.

usage: boot_mitm_proxy.py LISTEN_ADDRESS PORT UPSTREAM_URL CONTROL_FILE LOG_FILE

CONTROL_FILE (read on every request) holds one line:
  pass              forward untouched (also when the file is missing)
  flip NAME         flip one byte in the middle of /v1/boot/files/NAME
  replace NAME FILE answer /v1/boot/files/NAME with FILE's bytes instead
Every request is logged as "PATH STATUS BYTES [what was done]".
"""
import http.client
import http.server
import sys
import urllib.parse

ADDRESS, PORT, UPSTREAM, CONTROL, LOG = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
UP = urllib.parse.urlparse(UPSTREAM)


def control():
    try:
        with open(CONTROL) as f:
            return f.read().split()
    except FileNotFoundError:
        return ["pass"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # GRUB 2.06 accepts no other answer

    def do_GET(self):
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=60)
        conn.request("GET", self.path)
        r = conn.getresponse()
        body = r.read()
        conn.close()  # imaged limits connections per address: leave none open
        status, note = r.status, ""
        words = control()
        target = "/v1/boot/files/" + words[1] if len(words) > 1 else None
        if status == 200 and self.path == target and words[0] == "flip" and body:
            i = len(body) // 2
            body = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
            note = "flipped byte %d" % i
        elif self.path == target and words[0] == "replace":
            with open(words[2], "rb") as f:
                body = f.read()
            status, note = 200, "replaced with " + words[2]
        self.send_response(status)
        for k, v in r.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with open(LOG, "a") as f:
            f.write("%s %d %d %s\n" % (self.path, status, len(body), note))

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer((ADDRESS, PORT), Handler).serve_forever()
