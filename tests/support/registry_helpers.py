#!/usr/bin/env python3
"""Servers the registry tests put beside Debian's docker-registry (standard library only).

  token  --port P --key KEY.pem --cert CERT.pem --issuer I --service S --user U --password W
      A token server for docker-registry's `auth.token`: GET /token?service=S&scope=... answers
      {"token": JWT} where the JWT is signed RS256 with KEY (by `openssl dgst`), carries CERT in
      its x5c header, and grants every action asked for when the basic credentials are U:W.
      Anonymous requests get a token that grants nothing; wrong credentials get 401. POST /token
      with grant_type=refresh_token and refresh_token=W (an identity token) answers
      {"access_token": JWT} for U.

  proxy  --port P --upstream HOST:PORT [--fault F]
      Forwards every request to the registry, changing one thing (F):
        corrupt-blobs        flips one byte of every blob body it passes on
        drop-first-upload    reads half of the first blob upload (PUT/PATCH with a body), then
                             closes the connection without an answer; so again for every later
                             request to that upload session (libcurl resends a request once
                             by itself when a reused connection dies), so that only a new
                             session gets through
        drop-first-download  sends half of the first blob body larger than 64 KiB, then closes
        drop-first-download-ignore-range
                             the same, and drops Range headers as a server that cannot resume
        fail-first-503       answers the first manifest request 503 with Retry-After: 1
        referrers-api        adds the OCI 1.1 referrers API the registry lacks: manifests PUT
                             through it that name a subject are listed at
                             GET /v2/<name>/referrers/<digest> (an OCI index)

Each handled request is printed as one line, "METHOD PATH -> STATUS [range=...]".
"""

import argparse
import base64
import hashlib
import http.client
import http.server
import json
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def log(line):
    print(line, flush=True)


class TokenHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    config = None

    def log_message(self, *args):
        pass

    def reply(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def refuse(self):
        log("%s /token -> 401" % self.command)
        self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                     "message": "invalid username or password"}]})

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/token":
            self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
            return
        query = parse_qs(url.query)
        header = self.headers.get("Authorization", "")
        user = None
        if header.startswith("Basic "):
            given = base64.b64decode(header[6:]).decode()
            if given != self.config.user + ":" + self.config.password:
                self.refuse()
                return
            user = self.config.user
        self.grant(user, query.get("service", [""])[0], query.get("scope", []), "token")

    def do_POST(self):
        """OAuth2: an identity token (here: the password) as a refresh token."""
        length = int(self.headers.get("Content-Length", "0") or "0")
        form = parse_qs(self.rfile.read(length).decode())
        if (form.get("grant_type") != ["refresh_token"] or
                form.get("refresh_token") != [self.config.password]):
            self.refuse()
            return
        self.grant(self.config.user, form.get("service", [""])[0], form.get("scope", []),
                   "access_token")

    def grant(self, user, service, scopes, field):
        cfg = self.config
        access = []
        if user:
            for scope in scopes:
                for one in scope.split(" "):
                    kind, rest = one.split(":", 1)
                    name, actions = rest.rsplit(":", 1)
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        jwt_header = {"typ": "JWT", "alg": "RS256", "x5c": [cfg.cert_der]}
        claims = {"iss": cfg.issuer, "sub": user or "", "aud": service,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": str(uuid.uuid4()),
                  "access": access}
        signing_input = (b64url(json.dumps(jwt_header).encode()) + "." +
                         b64url(json.dumps(claims).encode()))
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", cfg.key],
                                   input=signing_input.encode(), capture_output=True,
                                   check=True).stdout
        log("%s /token -> 200 user=%s scopes=%s" % (self.command, user, scopes))
        self.reply(200, {field: signing_input + "." + b64url(signature), "expires_in": 300})


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    config = None
    lock = threading.Lock()
    fired = False  # the one-off faults happen once
    doomed_session = None  # drop-first-upload: the upload session it broke

    def log_message(self, *args):
        pass

    def fire_once(self):
        with ProxyHandler.lock:
            if ProxyHandler.fired:
                return False
            ProxyHandler.fired = True
            return True

    def is_doomed_upload(self, session):
        with ProxyHandler.lock:
            if ProxyHandler.doomed_session is None and not ProxyHandler.fired:
                ProxyHandler.doomed_session = session
                ProxyHandler.fired = True
            return ProxyHandler.doomed_session == session

    referrers = {}  # (repository, subject digest) -> [descriptor]

    def answer_referrers(self):
        path = urlsplit(self.path).path
        name, _, digest = path[len("/v2/"):].partition("/referrers/")
        with ProxyHandler.lock:
            listed = list(ProxyHandler.referrers.get((name, digest), []))
        body = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": listed}).encode()
        log("%s %s -> 200 (%d referrers)" % (self.command, self.path, len(listed)))
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def note_referrer(self, body, status):
        path = urlsplit(self.path).path
        if self.command != "PUT" or "/manifests/" not in path or status != 201 or not body:
            return
        try:
            doc = json.loads(body)
        except ValueError:
            return
        if not isinstance(doc, dict) or not isinstance(doc.get("subject"), dict):
            return
        name = path[len("/v2/"):].partition("/manifests/")[0]
        entry = {"mediaType": doc.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
                 "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body),
                 "artifactType": doc.get("artifactType") or doc["config"]["mediaType"]}
        if doc.get("annotations"):
            entry["annotations"] = doc["annotations"]
        with ProxyHandler.lock:
            ProxyHandler.referrers.setdefault((name, doc["subject"]["digest"]), []).append(entry)

    def handle_any(self):
        fault = self.config.fault
        if (fault == "referrers-api" and self.command == "GET" and
                "/referrers/" in urlsplit(self.path).path):
            self.answer_referrers()
            return
        length = int(self.headers.get("Content-Length", "0") or "0")
        is_upload = "/blobs/uploads/" in self.path and self.command in ("PUT", "PATCH")
        if (fault == "drop-first-upload" and is_upload and length > 0 and
                self.is_doomed_upload(urlsplit(self.path).path)):
            self.rfile.read(length // 2)
            log("%s %s -> dropped" % (self.command, self.path))
            self.close_connection = True
            self.connection.close()
            return
        body = self.rfile.read(length) if length else None
        if (fault == "fail-first-503" and "/manifests/" in self.path and self.fire_once()):
            log("%s %s -> 503" % (self.command, self.path))
            self.send_response(503)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return

        upstream = http.client.HTTPConnection(self.config.upstream, timeout=30)
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() in ("connection", "keep-alive", "proxy-connection"):
                continue
            if name.lower() != "range" or fault != "drop-first-download-ignore-range":
                upstream.putheader(name, value)
        upstream.endheaders(body)
        response = upstream.getresponse()
        data = response.read() if self.command != "HEAD" else b""
        upstream.close()
        if fault == "referrers-api":
            self.note_referrer(body, response.status)

        is_blob_get = (self.command == "GET" and "/blobs/sha256:" in self.path and
                       response.status in (200, 206))
        if fault == "corrupt-blobs" and is_blob_get and data:
            data = bytearray(data)
            data[len(data) // 2] ^= 0x01
            data = bytes(data)
        truncate = (fault.startswith("drop-first-download") and is_blob_get and
                    len(data) > 65536 and self.fire_once())

        log("%s %s -> %d%s" % (self.command, self.path, response.status,
                               " range=" + self.headers["Range"] if "Range" in self.headers
                               else ""))
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                    "content-length"):
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", response.getheader("Content-Length", "0"))
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if truncate:
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            log("%s %s -> cut off after %d bytes" % (self.command, self.path, len(data) // 2))
            self.close_connection = True
            self.connection.close()
            return
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_PATCH = do_POST = do_DELETE = handle_any


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["token", "proxy"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key")
    parser.add_argument("--cert")
    parser.add_argument("--issuer")
    parser.add_argument("--service")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--upstream")
    parser.add_argument("--fault", default="none",
                        choices=["none", "corrupt-blobs", "drop-first-upload",
                                 "drop-first-download", "drop-first-download-ignore-range",
                                 "fail-first-503", "referrers-api"])
    config = parser.parse_args()
    if config.role == "token":
        der = subprocess.run(["openssl", "x509", "-in", config.cert, "-outform", "DER"],
                             capture_output=True, check=True).stdout
        config.cert_der = base64.b64encode(der).decode()
        handler = TokenHandler
    else:
        handler = ProxyHandler
    handler.config = config
    server = http.server.ThreadingHTTPServer(("127.0.0.1", config.port), handler)
    server.daemon_threads = True
    log("listening on 127.0.0.1:%d" % config.port)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
