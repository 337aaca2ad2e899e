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
The top's version statements in long-poll answers (issue 20):
  record      also keeps the first statement (and its signature) in
              CONTROL.statement
  withhold    tells the node it stays where it is: the answer's version is
              set to the node's `after` (statement kept)
  forge-statement V  sets the statement's published version and the answer's
              version to V (the top's signature kept)
  stale       answers long-polls itself after a second: version `after`, and
              the last genuine statement it passed on, again and again
  old-statement V  answers long-polls itself with version V and the statement
              kept by record (genuine, but older than ones the node saw)
The statement modes act on upstream answers by the mode when the answer
comes back, so a long-poll parked before the mode changed is changed too.
usage: version_proxy.py LISTEN_PORT UPSTREAM_URL CONTROL LOG_FILE
Each changed answer is logged as "MODE PATH" in LOG_FILE.
"""
import time
import http.client
import http.server
import json
import sys
import threading
import urllib.parse

LISTEN, UPSTREAM, CONTROL, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
UP = urllib.parse.urlparse(UPSTREAM)
LOCK = threading.Lock()
LAST = {}     # the last genuine statement passed on: statement, statement_signature
FROZEN = {}   # what stale repeats, taken from LAST when it starts


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
        if version_path and words[0] in ("stale", "old-statement") and "challenge" not in query:
            node = url.path[len("/v1/nodes/"):-len("/version")]
            if words[0] == "stale":
                time.sleep(1)
                with LOCK:
                    if not FROZEN:
                        FROZEN.update(LAST)
                    said = dict(FROZEN)
                version = int(query["after"][0])
            else:
                with open(CONTROL + ".statement") as f:
                    said = json.load(f)
                version = int(words[1])
            return self.answer_itself(words[0], node, query, version, said)
        if version_path and words[0] in ("forge", "replay") and "challenge" not in query:
            # A long-poll answered at once by the man in the middle: the node
            # is told to go back to version V.
            node = url.path[len("/v1/nodes/"):-len("/version")]
            return self.answer_itself(words[0], node, query, int(words[1]), {})
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=120)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        late = mode()
        if resp.status == 200 and version_path and "challenge" not in query:
            answer = json.loads(data)
            if "statement" in answer:
                said = {"statement": answer["statement"], "statement_signature": answer["statement_signature"]}
                with LOCK:
                    LAST.update(said)
                    if late[0] == "record":
                        try:
                            with open(CONTROL + ".statement", "x") as f:
                                json.dump(said, f)
                        except FileExistsError:
                            pass
            changed = True
            if late[0] == "withhold":
                changed = answer["version"] != int(query["after"][0])
                answer["version"], answer["pinned"] = int(query["after"][0]), False
            elif late[0] == "forge-statement":
                statement = json.loads(answer["statement"])
                statement["published"] = int(late[1])
                answer["statement"] = json.dumps(statement, separators=(",", ":"))
                answer["version"] = int(late[1])
            elif late[0] == "stale":
                with LOCK:
                    if not FROZEN:
                        FROZEN.update(LAST)
                    answer.update(FROZEN)
                answer["version"], answer["pinned"] = int(query["after"][0]), False
            else:
                changed = False
            if changed:
                data = json.dumps(answer, separators=(",", ":")).encode()
                self.log_change(late[0])
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

    def answer_itself(self, what, node, query, version, said):
        """A version answer made by the man in the middle, with `said` (a
        statement and its signature) when not empty."""
        answer = {"node": node, "image": query["image"][0], "version": version, "pinned": False}
        answer.update(said)
        data = json.dumps(answer, separators=(",", ":")).encode()
        self.log_change(what)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_change(self, what):
        with LOCK, open(LOG, "a") as f:
            f.write(what + " " + self.path + "\n")

    do_GET = do_POST = do_PUT = forward

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Proxy).serve_forever()
