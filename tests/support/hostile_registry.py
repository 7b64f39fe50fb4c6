#!/usr/bin/env python3
"""A registry that lies, for kiln's adversarial tests (standard library only).

  hostile_registry.py --port P --sentinel-port S

Serves one small valid image (a gzip layer, a config, an OCI manifest) under every repository
name `CASE/img`, tag `1`, and lies the way CASE says:

  good               nothing: the control
  wrong-digest       the layer's bytes are not the digest the manifest names
  wrong-size         the manifest gives the layer a smaller size than it has
  short-body         the layer's Content-Length is right, half of it arrives, then the connection closes
  endless-body       the layer never ends (no Content-Length, zeros until the client goes)
  slow               the layer arrives one byte a second
  redirect-loop      the layer redirects to itself
  redirect-file      the layer redirects to file:///etc/passwd
  redirect-gopher    the layer redirects to gopher://127.0.0.1:S/_HELLO
  unauthorized-loop  every request is 401 (the token endpoint hands out tokens nobody accepts)
  realm-gopher       401 with a token realm gopher://127.0.0.1:S/_HELLO
  realm-file         401 with a token realm file:///etc/passwd
  realm-dict         401 with a token realm dict://127.0.0.1:S/HELLO
  malformed-json     the manifest is not JSON
  number-overflow    the manifest's schemaVersion is 1e999 (a number no double holds)
  huge-json          the manifest is 64 MiB of JSON
  schema1            a Docker schema-1 manifest
  nested-index       an index whose entry is another index
  missing-blob       the layer is 404
  config-not-json    the config blob is not JSON (its digest is right)

The sentinel port S is a TCP listener the test runs: any connection to it is a request kiln must
not have made. Each request is printed as "METHOD PATH -> STATUS".
"""

import argparse
import gzip
import hashlib
import http.server
import io
import json
import sys
import tarfile
import time


def log(line):
    print(line, flush=True)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"hello from a hostile registry\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mtime = 1700000000
        tar.addfile(info, io.BytesIO(data))
    layer_tar = raw.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
    }).encode()
    return layer, config


LAYER, CONFIG = make_image()


BAD_CONFIG = b"\0not json"
INNER_INDEX = json.dumps({"schemaVersion": 2,
                          "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": []}).encode()


def manifest(layer_size=None, config=CONFIG):
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(LAYER),
                    "size": len(LAYER) if layer_size is None else layer_size}],
    }).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sentinel = 0

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", headers=()):
        log("%s %s -> %d" % (self.command, self.path, status))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def challenge(self, realm):
        self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                  [("WWW-Authenticate", 'Bearer realm="%s",service="hostile"' % realm),
                   ("Content-Type", "application/json")])

    def handle_any(self):
        path = self.path.split("?")[0]
        if path == "/token":
            return self.send(200, b'{"token":"nobody-accepts-this"}',
                             [("Content-Type", "application/json")])
        if path == "/v2/":
            return self.send(200, b"{}")
        parts = path.split("/")
        # /v2/CASE/img/(manifests|blobs)/REF
        if len(parts) < 6 or parts[1] != "v2":
            return self.send(404)
        case, kind, ref = parts[2], parts[4], parts[5]
        port = self.server.server_address[1]
        sentinel = "127.0.0.1:%d" % self.sentinel
        if case == "unauthorized-loop":
            return self.challenge("http://127.0.0.1:%d/token" % port)
        if case == "realm-gopher":
            return self.challenge("gopher://%s/_HELLO" % sentinel)
        if case == "realm-file":
            return self.challenge("file:///etc/passwd")
        if case == "realm-dict":
            return self.challenge("dict://%s/HELLO" % sentinel)
        if kind == "manifests":
            return self.manifest(case, ref)
        if kind == "blobs":
            return self.blob(case, ref)
        return self.send(404)

    def manifest(self, case, ref):
        oci = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")]
        index = [("Content-Type", "application/vnd.oci.image.index.v1+json")]
        if case == "malformed-json":
            return self.send(200, b"{not json", oci)
        if case == "number-overflow":
            return self.send(200, b'{"schemaVersion":1e999}', oci)
        if case == "huge-json":
            body = b'{"schemaVersion":2,"pad":"' + b"x" * (64 << 20) + b'"}'
            return self.send(200, body, oci)
        if case == "wrong-size":
            body = manifest(layer_size=len(LAYER) // 2)
            return self.send(200, body, oci + [("Docker-Content-Digest", sha256(body))])
        if case == "schema1":
            body = json.dumps({"schemaVersion": 1, "name": "schema1/img", "tag": "1",
                               "fsLayers": [{"blobSum": sha256(LAYER)}]}).encode()
            return self.send(200, body, [("Content-Type",
                                          "application/vnd.docker.distribution.manifest.v1+prettyjws")])
        if case == "nested-index":
            if ref == sha256(INNER_INDEX):
                return self.send(200, INNER_INDEX, index)
            body = json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                               "digest": sha256(INNER_INDEX), "size": len(INNER_INDEX),
                               "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
            return self.send(200, body, index)
        if case == "config-not-json":
            return self.send(200, manifest(config=BAD_CONFIG), oci)
        body = manifest()
        return self.send(200, body, oci + [("Docker-Content-Digest", sha256(body))])

    def blob(self, case, ref):
        if ref == sha256(CONFIG):
            return self.send(200, CONFIG)
        if ref == sha256(BAD_CONFIG):
            return self.send(200, BAD_CONFIG)
        if ref != sha256(LAYER):
            return self.send(404)
        if case == "missing-blob":
            return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
        if case == "wrong-digest":
            data = bytearray(LAYER)
            data[len(data) // 2] ^= 1
            return self.send(200, bytes(data))
        if case == "redirect-loop":
            return self.send(307, b"", [("Location", self.path)])
        if case == "redirect-file":
            return self.send(307, b"", [("Location", "file:///etc/passwd")])
        if case == "redirect-gopher":
            return self.send(307, b"", [("Location",
                                         "gopher://127.0.0.1:%d/_HELLO" % self.sentinel)])
        if case == "short-body":
            log("%s %s -> 200 (half)" % (self.command, self.path))
            self.send_response(200)
            self.send_header("Content-Length", str(len(LAYER)))
            self.end_headers()
            self.wfile.write(LAYER[:len(LAYER) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if case == "endless-body":
            log("%s %s -> 200 (endless)" % (self.command, self.path))
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                return
        if case == "slow":
            log("%s %s -> 200 (slow)" % (self.command, self.path))
            self.send_response(200)
            self.send_header("Content-Length", str(len(LAYER)))
            self.end_headers()
            try:
                for b in LAYER:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                return
            return
        return self.send(200, LAYER)

    do_GET = do_HEAD = do_POST = handle_any


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sentinel-port", type=int, required=True)
    config = parser.parse_args()
    Handler.sentinel = config.sentinel_port
    server = http.server.ThreadingHTTPServer(("127.0.0.1", config.port), Handler)
    server.daemon_threads = True
    log("listening on 127.0.0.1:%d" % config.port)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
