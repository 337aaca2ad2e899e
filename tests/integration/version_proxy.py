#!/usr/bin/env python3
"""A man in the middle for node version answers (GET /v1/nodes/NODE/version):
forwards HTTP to an imaged and, as the control file says at each request,
  pass        forwards everything unchanged
  record      the same, and keeps the last signed answer to a challenge
              (body and X-Dim-Signature) in CONTROL.recorded
  forge V     answers version long-polls itself with version V, and rewrites
              the version in the top's signed answers to challenges to V
              (signature kept)
  replay V    answers long-polls with version V, and every challenge with
              the recorded signed answer (a genuine one, of an earlier request)
usage: version_proxy.py LISTEN_PORT UPSTREAM_URL CONTROL LOG_FILE
Each changed answer is logged as "MODE PATH" in LOG_FILE.
"""
import http.client
import http.server
import json
import sys
import threading
import urllib.parse

LISTEN, UPSTREAM, CONTROL, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
UP = urllib.parse.urlparse(UPSTREAM)
LOCK = threading.Lock()


def mode():
    try:
        with open(CONTROL) as f:
            words = f.read().split()
    except FileNotFoundError:
        words = []
    return words or ["pass"]


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        words = mode()
        version_path = url.path.startswith("/v1/nodes/") and url.path.endswith("/version")
        if version_path and words[0] in ("forge", "replay") and "challenge" not in query:
            # A long-poll answered at once by the man in the middle: the node
            # is told to go back to version V.
            node = url.path[len("/v1/nodes/"):-len("/version")]
            data = json.dumps({"node": node, "image": query["image"][0], "version": int(words[1]),
                               "pinned": False}, separators=(",", ":")).encode()
            self.log_change(words[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=120)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        if resp.status == 200 and version_path:
            challenged = "challenge" in query
            signature = resp.getheader("X-Dim-Signature", "")
            if words[0] == "record" and challenged and signature:
                with LOCK, open(CONTROL + ".recorded", "w") as f:
                    json.dump({"body": data.decode(), "signature": signature}, f)
            elif words[0] == "forge":
                answer = json.loads(data)
                answer["version"] = int(words[1])
                data = json.dumps(answer, separators=(",", ":")).encode()
                self.log_change(words[0])
            elif words[0] == "replay":
                with open(CONTROL + ".recorded") as f:
                    recorded = json.load(f)
                data = recorded["body"].encode()
                out_headers = [(k, v) for k, v in out_headers if k.lower() != "x-dim-signature"]
                out_headers.append(("X-Dim-Signature", recorded["signature"]))
                self.log_change("replay")
        self.send_response(resp.status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    def log_change(self, what):
        with LOCK, open(LOG, "a") as f:
            f.write(what + " " + self.path + "\n")

    do_GET = do_POST = do_PUT = forward

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Proxy).serve_forever()
