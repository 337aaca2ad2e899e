#!/usr/bin/env python3
"""A man in the middle for integrity tests: forwards HTTP between a dim
client (rootfs-fuse, a second-level imaged) and an imaged, and flips one
byte in catalogue deltas and snapshots while told to.

usage: flip_proxy.py LISTEN_PORT UPSTREAM_URL CONTROL_FILE LOG_FILE

CONTROL_FILE holds "KIND MODE COUNT" (read on every request), e.g.
"delta payload 3": the next 3 answers to .../delta get one byte flipped in
the decompressed payload (zstd -d, flip, zstd again, so the frame stays
valid and the flip reaches dim's parsers); MODE "raw" flips a byte of the
compressed answer as it travels. A delta that comes inline in a node's
version answer (.../version?..., JSON "delta": base64) counts as a delta
too: its decoded bytes are flipped the same way and put back, so the
answer stays valid JSON. KIND is delta, snapshot or any. COUNT -1
corrupts every answer. An empty or missing file forwards untouched. Each
flip is logged as "KIND MODE OFFSET PATH" in LOG_FILE.

"objects busy COUNT" plays a saturated server instead: the next COUNT
requests for objects (/v1/objects...) are answered 503 with "Retry-After: 1"
and not forwarded, each logged as "503 PATH".
"""
import base64
import http.client
import http.server
import json
import random
import subprocess
import sys
import threading
import urllib.parse

LISTEN, UPSTREAM, CONTROL, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
UP = urllib.parse.urlparse(UPSTREAM)
LOCK = threading.Lock()
RNG = random.Random(20)


def inline_delta(path, data):
    """The parsed version answer when it carries an inline delta, else None."""
    if "/version?" not in path:
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and answer.get("delta") else None


def decide(path, data):
    """The mode to corrupt this answer with, or None; counts the flip down."""
    kind = ("delta" if "/delta?" in path or inline_delta(path, data) is not None else
            "snapshot" if "/snapshot?" in path else None)
    if kind is None:
        return None
    with LOCK:
        try:
            with open(CONTROL) as f:
                words = f.read().split()
        except FileNotFoundError:
            return None
        if len(words) != 3 or words[0] not in (kind, "any"):
            return None
        count = int(words[2])
        if count == 0:
            return None
        if count > 0:
            with open(CONTROL, "w") as f:
                f.write("%s %s %d\n" % (words[0], words[1], count - 1))
        return kind, words[1]


def busy(path):
    """Whether to answer this request 503 (objects busy COUNT); counts down."""
    if not path.startswith("/v1/objects"):
        return False
    with LOCK:
        try:
            with open(CONTROL) as f:
                words = f.read().split()
        except FileNotFoundError:
            return False
        if len(words) != 3 or words[:2] != ["objects", "busy"] or int(words[2]) <= 0:
            return False
        with open(CONTROL, "w") as f:
            f.write("objects busy %d\n" % (int(words[2]) - 1))
        with open(LOG, "a") as f:
            f.write("503 %s\n" % path)
        return True


def flip(body, kind, mode, path):
    answer = inline_delta(path, body)
    if answer is not None:
        answer["delta"] = base64.b64encode(flip(base64.b64decode(answer["delta"]), kind, mode, path)).decode()
        return json.dumps(answer, separators=(",", ":")).encode()
    if mode == "payload":
        raw = subprocess.run(["zstd", "-d", "-q", "-c"], input=body, capture_output=True, check=True).stdout
        at = RNG.randrange(len(raw))
        raw = raw[:at] + bytes([raw[at] ^ (1 << RNG.randrange(8))]) + raw[at + 1:]
        body = subprocess.run(["zstd", "-q", "-3", "-c"], input=raw, capture_output=True, check=True).stdout
    else:
        at = RNG.randrange(len(body))
        body = body[:at] + bytes([body[at] ^ (1 << RNG.randrange(8))]) + body[at + 1:]
    with LOCK, open(LOG, "a") as f:
        f.write("%s %s %d %s\n" % (kind, mode, at, path))
    return body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if busy(self.path):
            msg = b'{"error": "the server is busy; ask again after Retry-After", "code": "busy"}'
            self.send_response(503)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=120)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            self.send_error(502)
            return
        finally:
            conn.close()
        how = decide(self.path, data) if resp.status == 200 else None
        if how is not None and data:
            data = flip(data, how[0], how[1], self.path)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = forward


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


Server(("127.0.0.1", LISTEN), Handler).serve_forever()
