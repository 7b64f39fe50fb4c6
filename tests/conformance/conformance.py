#!/usr/bin/env python3
"""Differential conformance suite: kiln against a real BuildKit (Debian's docker.io, whose
dockerd embeds BuildKit) with buildah as a second referee.

Every case under cases/<category>/<name>/ is a Dockerfile (plus an optional case.toml and any
ignore files). The harness generates the build context from a description (git cannot store
modes, owners or hard links), builds it with each builder from the same base images, and compares
the image config and the final root filesystem (type, mode, owner, link target, content digest,
hard-link groups; times are ignored). See README.md beside this file.

Runs as root. Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE_DIR = HERE.parent.parent
CASES_DIR = HERE / "cases"
BASES_DIR = HERE / "bases"
EXPECTED_FILE = HERE / "expected.json"
DOCKER = "/usr/bin/docker"  # Debian's client; /usr/local/bin/docker may be another one
DOCKERD = "/usr/sbin/dockerd"
BUILD_TIMEOUT = 180
TMP_RE = re.compile(r"/\S*/kiln-conformance-[^/\s]+/ctx/[^/\s]+/?")

# Config fields compared (docker's names; kiln writes the same keys in its OCI config).
CONFIG_FIELDS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
                 "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild"]

# ---------------------------------------------------------------------------------------------
# Build contexts


def _tar_bytes(members: list[tuple[str, bytes]], compression: str = "") -> bytes:
    """A small archive for ADD cases: fixed owners, modes and times so every run is equal."""
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compression, format=tarfile.PAX_FORMAT) as tf:
        dirs = set()
        for name, data in members:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = 1600000000
                    tf.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.uid, info.gid = 1234, 5678
            info.mtime = 1600000000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# The default context every case gets unless its case.toml says context = "empty": plain files
# and directories with varied modes and owners. Each entry is a dict: path, type (file, dir,
# symlink, hardlink, fifo; default file), content or bytes, mode, uid, gid, target. Modes are set
# explicitly (a checkout's modes depend on the umask).
DEFAULT_CONTEXT: list[dict] = [
    {"path": "a.txt", "content": "a\n"},
    {"path": "b.txt", "content": "b\n"},
    {"path": "c.md", "content": "# c\n"},
    {"path": "exec.sh", "content": "#!/bin/sh\necho exec\n", "mode": 0o755},
    {"path": "private.txt", "content": "private\n", "mode": 0o600},
    {"path": "group-w.txt", "content": "group writable\n", "mode": 0o664},
    {"path": "owned.txt", "content": "owned\n", "uid": 1234, "gid": 5678},
    {"path": "sp ace.txt", "content": "space\n"},
    {"path": "empty.txt", "content": ""},
    {"path": "dir", "type": "dir", "mode": 0o755},
    {"path": "dir/x.txt", "content": "x\n"},
    {"path": "dir/.hidden", "content": "hidden\n"},
    {"path": "dir/sub", "type": "dir", "mode": 0o750},
    {"path": "dir/sub/y.txt", "content": "y\n"},
    {"path": "dir/sub/deep", "type": "dir", "mode": 0o755},
    {"path": "dir/sub/deep/z.txt", "content": "z\n"},
    {"path": "gdir", "type": "dir", "mode": 0o775},
    {"path": "gdir/g.txt", "content": "g\n", "mode": 0o664},
    {"path": "tight", "type": "dir", "mode": 0o700},
    {"path": "tight/t.txt", "content": "t\n", "mode": 0o640},
    {"path": "owned-dir", "type": "dir", "mode": 0o755, "uid": 1234, "gid": 5678},
    {"path": "owned-dir/o.txt", "content": "o\n", "uid": 4321, "gid": 8765},
    {"path": "emptydir", "type": "dir", "mode": 0o755},
    {"path": "logs", "type": "dir", "mode": 0o755},
    {"path": "logs/app.log", "content": "log\n"},
    {"path": "logs/keep.txt", "content": "keep\n"},
    {"path": "src", "type": "dir", "mode": 0o755},
    {"path": "src/main.c", "content": "int main(void){return 0;}\n"},
    {"path": "src/util.c", "content": "int util;\n"},
    {"path": "src/util.h", "content": "extern int util;\n"},
    {"path": "src/lib", "type": "dir", "mode": 0o755},
    {"path": "src/lib/l.c", "content": "int l;\n"},
    {"path": "src/lib/l.h", "content": "extern int l;\n"},
]

# Sets a case adds with include = ["links", ...] in its case.toml.
CONTEXT_SETS: dict[str, list[dict]] = {
    "links": [
        {"path": "link-a", "type": "symlink", "target": "a.txt"},
        {"path": "abs-link", "type": "symlink", "target": "/a.txt"},
        {"path": "abs-dir-link", "type": "symlink", "target": "/dir"},
        {"path": "dangling", "type": "symlink", "target": "does-not-exist"},
        {"path": "dir-link", "type": "symlink", "target": "dir"},
        {"path": "chain-link", "type": "symlink", "target": "link-a"},
        {"path": "dir/up-link", "type": "symlink", "target": "../b.txt"},
        {"path": "escape-link", "type": "symlink", "target": "../../../../etc/hostname"},
    ],
    "hardlinks": [
        {"path": "hard1", "content": "hard\n"},
        {"path": "hard2", "type": "hardlink", "target": "hard1"},
        {"path": "dir/hard3", "type": "hardlink", "target": "hard1"},
    ],
    "special": [
        {"path": "setuid.bin", "content": "setuid\n", "mode": 0o4755},
        {"path": "setgid.bin", "content": "setgid\n", "mode": 0o2755},
        {"path": "sticky", "type": "dir", "mode": 0o1777},
        {"path": "sticky/s.txt", "content": "s\n"},
        {"path": "world-w.txt", "content": "w\n", "mode": 0o666},
        {"path": "noperm.txt", "content": "n\n", "mode": 0o000},
    ],
    "archives": [
        {"path": "archive.tar", "bytes": _tar_bytes([("arc/one.txt", b"one\n"),
                                                     ("arc/sub/two.txt", b"two\n")])},
        {"path": "archive.tar.gz", "bytes": _tar_bytes([("gz/one.txt", b"one\n")], "gz")},
        {"path": "flat.tar", "bytes": _tar_bytes([("f1.txt", b"f1\n"), ("f2.txt", b"f2\n")])},
        {"path": "not-really.tar", "content": "plain text named .tar\n"},
    ],
}


def make_context(root: Path, entries: list[dict]) -> None:
    """Writes entries under root; later entries with the same path replace earlier ones."""
    by_path: dict[str, dict] = {}
    for e in entries:
        by_path[e["path"]] = e
    ordered = list(by_path.values())
    # Directories first (shallow first) so files land in them, hard links last.
    def key(e):
        kind = e.get("type", "file")
        return (kind == "hardlink", kind != "dir", e["path"].count("/"), e["path"])
    for e in sorted(ordered, key=key):
        if e.get("type") == "delete":
            continue
        p = root / e["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        kind = e.get("type", "file")
        if kind == "dir":
            p.mkdir(exist_ok=True)
        elif kind == "symlink":
            os.symlink(e["target"], p)
        elif kind == "hardlink":
            os.link(root / e["target"], p)
            continue
        elif kind == "fifo":
            os.mkfifo(p)
        else:
            data = e["bytes"] if "bytes" in e else e.get("content", "").encode()
            p.write_bytes(data)
        os.lchown(p, e.get("uid", 0), e.get("gid", 0))
        if kind != "symlink":
            os.chmod(p, e.get("mode", 0o755 if kind == "dir" else 0o644))
    # Parents created implicitly above are 0755 root (mkdir under umask 022).
    for e in ordered:
        if e.get("type") == "dir" and "mode" in e:
            os.chmod(root / e["path"], e["mode"])


# ---------------------------------------------------------------------------------------------
# Image archives (docker save format, which kiln's -o type=docker and buildah's docker-archive
# also write) -> config + flattened tree


@dataclass
class Node:
    kind: str  # f d l h(c/b) p
    mode: int
    uid: int
    gid: int
    target: str = ""
    digest: str = ""
    size: int = 0
    preview: str | None = None  # small text files, to show in diffs
    inode: int = 0
    implicit: bool = False


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    name = name.lstrip("/").rstrip("/")
    return "" if name == "." else name


@dataclass
class Image:
    config: dict
    tree: dict[str, Node]
    platform: tuple[str, str]
    author: str = ""


def read_image_archive(path: Path) -> Image:
    with tarfile.open(path) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        entry = manifest[0]
        cfg = json.load(outer.extractfile(entry["Config"]))
        tree: dict[str, Node] = {}
        next_inode = [1]
        for layer_name in entry["Layers"]:
            f = outer.extractfile(layer_name)
            _apply_layer(tree, f, next_inode)
    return Image(cfg.get("config") or {}, tree, (cfg.get("os", ""), cfg.get("architecture", "")),
                 cfg.get("author") or "")


def _apply_layer(tree: dict[str, Node], fileobj, next_inode: list[int]) -> None:
    with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
        members = []
        for m in tf:
            data = None
            if m.isreg():
                data = tf.extractfile(m).read()
            members.append((m, data))
    # Whiteouts apply to the lower layers first.
    for m, _ in members:
        name = _norm(m.name)
        base = name.rsplit("/", 1)[-1]
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        if base == ".wh..wh..opq":
            prefix = parent + "/" if parent else ""
            for p in [p for p in tree if p.startswith(prefix) and p != parent]:
                del tree[p]
        elif base.startswith(".wh."):
            victim = (parent + "/" if parent else "") + base[4:]
            for p in [p for p in tree if p == victim or p.startswith(victim + "/")]:
                del tree[p]
    for m, data in members:
        name = _norm(m.name)
        base = name.rsplit("/", 1)[-1]
        if not name or base.startswith(".wh."):
            continue
        # Implicit parents.
        parts = name.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in tree:
                tree[d] = Node("d", 0o755, 0, 0, implicit=True)
        if m.islnk():
            src = tree.get(_norm(m.linkname))
            if src is None:
                tree[name] = Node("?", 0, m.uid, m.gid, target="hardlink to missing " + m.linkname)
                continue
            if not src.inode:
                src.inode = next_inode[0]
                next_inode[0] += 1
            tree[name] = Node(src.kind, src.mode, src.uid, src.gid, src.target, src.digest,
                              src.size, src.preview, src.inode)
            continue
        if name in tree and tree[name].kind == "d" and m.isdir():
            # A directory entry replaces the directory's metadata, keeps its children.
            n = tree[name]
            n.mode, n.uid, n.gid, n.implicit = m.mode & 0o7777, m.uid, m.gid, False
            continue
        if name in tree and not m.isdir():
            for p in [p for p in tree if p.startswith(name + "/")]:
                del tree[p]
        if m.isdir():
            tree[name] = Node("d", m.mode & 0o7777, m.uid, m.gid)
        elif m.issym():
            tree[name] = Node("l", 0, m.uid, m.gid, target=m.linkname)
        elif m.isreg():
            preview = None
            if len(data) <= 2048:
                try:
                    preview = data.decode()
                except UnicodeDecodeError:
                    preview = None
            tree[name] = Node("f", m.mode & 0o7777, m.uid, m.gid,
                              digest=hashlib.sha256(data).hexdigest()[:16], size=len(data),
                              preview=preview)
        elif m.ischr() or m.isblk():
            tree[name] = Node("c" if m.ischr() else "b", m.mode & 0o7777, m.uid, m.gid,
                              target=f"{m.devmajor}:{m.devminor}")
        elif m.isfifo():
            tree[name] = Node("p", m.mode & 0o7777, m.uid, m.gid)
    # A file rewritten in this layer gets its own inode unless it was a hard link entry above.


# buildah 1.28 (chroot isolation) leaves the files it bind-mounts into RUN as empty stubs in the
# image; BuildKit removes them. That is a known buildah difference, not compared.
BUILDAH_CANNOT_RUN = "fork/exec /bin/sh: permission denied"
BUILDAH_STUBS = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "run")


def drop_buildah_stubs(buildah: Image, buildkit: Image) -> None:
    for p in BUILDAH_STUBS:
        n = buildah.tree.get(p)
        if n is not None and p not in buildkit.tree and (n.kind == "d" or n.size == 0):
            if n.kind == "d" and any(q.startswith(p + "/") for q in buildah.tree):
                continue
            del buildah.tree[p]


def hardlink_groups(tree: dict[str, Node]) -> set[tuple[str, ...]]:
    groups: dict[int, list[str]] = {}
    for p, n in tree.items():
        if n.inode:
            groups.setdefault(n.inode, []).append(p)
    return {tuple(sorted(g)) for g in groups.values() if len(g) > 1}


def normalize_config(cfg: dict) -> dict:
    out = {}
    for k in CONFIG_FIELDS:
        v = cfg.get(k)
        if v in (None, [], {}, ""):
            v = None
        if k == "Healthcheck" and isinstance(v, dict):
            v = {hk: hv for hk, hv in v.items() if hv not in (None, 0, [], "")}
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# Comparison


def _fmt_node(n: Node | None) -> str:
    if n is None:
        return "absent"
    s = f"{n.kind} {n.mode:04o} {n.uid}:{n.gid}"
    if n.kind == "l":
        s = f"l {n.uid}:{n.gid} -> {n.target}"
    elif n.kind in "cb":
        s += f" {n.target}"
    elif n.kind == "f":
        s += f" {n.size}B"
    return s


def _short(text: str | None, limit: int = 160) -> str:
    if text is None:
        return "(binary)"
    t = text if len(text) <= limit else text[:limit] + "..."
    return json.dumps(t)


def compare_images(a: Image, b: Image, la: str, lb: str, skip: dict | None = None) -> list[str]:
    """Differences of b (the referee) from a (kiln), one line each. skip: an expectation whose
    config fields and paths are not compared (checked against the expectation instead)."""
    diffs = []
    skip_cfg = set((skip or {}).get("config", {}))
    skip_paths = {_norm(p) for p in (skip or {}).get("tree", {})}
    ca, cb = normalize_config(a.config), normalize_config(b.config)
    for k in CONFIG_FIELDS:
        if k in skip_cfg:
            continue
        if ca[k] != cb[k]:
            diffs.append(f"config {k}: {la}={json.dumps(ca[k])} {lb}={json.dumps(cb[k])}")
    if a.platform != b.platform:
        diffs.append(f"config os/arch: {la}={a.platform} {lb}={b.platform}")
    if a.author != b.author and "author" not in skip_cfg:
        diffs.append(f"config author: {la}={a.author!r} {lb}={b.author!r}")
    for p in sorted(set(a.tree) | set(b.tree)):
        if p in skip_paths:
            continue
        na, nb = a.tree.get(p), b.tree.get(p)
        if na is None or nb is None:
            diffs.append(f"/{p}: {la}={_fmt_node(na)} {lb}={_fmt_node(nb)}")
            continue
        fields = []
        if na.kind != nb.kind:
            fields.append("type")
        else:
            if na.kind != "l" and na.mode != nb.mode:
                fields.append("mode")
            if (na.uid, na.gid) != (nb.uid, nb.gid):
                fields.append("owner")
            if na.target != nb.target:
                fields.append("target")
            if na.digest != nb.digest:
                fields.append("content")
        if fields:
            line = f"/{p}: {','.join(fields)} {la}={_fmt_node(na)} {lb}={_fmt_node(nb)}"
            if "content" in fields:
                line += f" | {la}: {_short(na.preview)} {lb}: {_short(nb.preview)}"
            diffs.append(line)
    ha, hb = hardlink_groups(a.tree), hardlink_groups(b.tree)
    for g in sorted(ha - hb):
        diffs.append(f"hard links: {la} links {' '.join('/' + x for x in g)}, {lb} does not")
    for g in sorted(hb - ha):
        diffs.append(f"hard links: {lb} links {' '.join('/' + x for x in g)}, {la} does not")
    return diffs


def check_expectations(img: Image | None, error: str | None, exp: dict,
                       label: str = "kiln") -> list[str]:
    """A result against the expectation written in a case (syntax old BuildKit lacks)."""
    diffs = []
    if exp.get("fail"):
        if img is not None:
            diffs.append(f"expected the build to fail; {label} succeeded")
        elif exp.get("error_contains") and exp["error_contains"] not in (error or ""):
            diffs.append(f"error lacks {exp['error_contains']!r}: {_short(error, 300)}")
        return diffs
    if img is None:
        return [f"{label} failed: {_short(error, 400)}"]
    cfg = normalize_config(img.config)
    for k, v in exp.get("config", {}).items():
        want = normalize_config({k: v})[k]
        if cfg.get(k) != want:
            diffs.append(f"config {k}: {label}={json.dumps(cfg.get(k))} expected={json.dumps(want)}")
    for p, want in exp.get("tree", {}).items():
        n = img.tree.get(_norm(p))
        if want == "absent":
            if n is not None:
                diffs.append(f"{p}: {label}={_fmt_node(n)} expected=absent")
            continue
        if n is None:
            diffs.append(f"{p}: {label}=absent expected=present")
            continue
        bad = []
        if "type" in want and n.kind != want["type"]:
            bad.append("type")
        if "mode" in want and n.mode != want["mode"]:
            bad.append("mode")
        if "uid" in want and n.uid != want["uid"]:
            bad.append("uid")
        if "gid" in want and n.gid != want["gid"]:
            bad.append("gid")
        if "target" in want and n.target != want["target"]:
            bad.append("target")
        if "content" in want and n.preview != want["content"]:
            bad.append("content")
        if bad:
            shown = " ".join(f"{k}={v:04o}" if k == "mode" else f"{k}={v!r}"
                             for k, v in want.items())
            line = f"{p}: {','.join(bad)} {label}={_fmt_node(n)} expected={shown}"
            if "content" in bad:
                line += f" | {label}: {_short(n.preview)}"
            diffs.append(line)
    for g in exp.get("hardlinks", []):
        if tuple(sorted(_norm(x) for x in g)) not in hardlink_groups(img.tree):
            diffs.append(f"hard links: expected {' '.join(g)} linked")
    return diffs


def _layer(entries: list[tuple]) -> bytes:
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, *rest in entries:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "f":
                data = rest[0]
                info.size, info.mode = len(data), 0o644
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, rest[0]
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, rest[0]
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def self_test(tmp: Path) -> None:
    """The archive reader against a hand-made image: whiteouts, opaque directories, hard links,
    implicit parents, a file replacing a directory. A broken reader would hide differences."""
    import io
    layers = [
        _layer([("a/", "d"), ("a/x", "f", b"x"), ("a/y", "f", b"y"), ("b/", "d"), ("b/old", "f", b"o"),
                ("h1", "f", b"h"), ("h2", "h", "h1"), ("c/d/e", "f", b"e"), ("gone/", "d"),
                ("gone/f", "f", b"f")]),
        _layer([("a/.wh.x", "f", b""), ("b/.wh..wh..opq", "f", b""), ("b/new", "f", b"n"),
                ("h1", "f", b"changed"), (".wh.gone", "f", b""), ("l", "l", "a/y")]),
    ]
    path = tmp / "selftest.tar"
    with tarfile.open(path, "w") as tf:
        names = []
        for i, data in enumerate(layers):
            n = f"{i}/layer.tar"
            names.append(n)
            info = tarfile.TarInfo(n)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for n, data in (("config.json", json.dumps({"config": {"Env": ["A=1"]}}).encode()),
                        ("manifest.json", json.dumps([{"Config": "config.json", "Layers": names}]).encode())):
            info = tarfile.TarInfo(n)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    img = read_image_archive(path)
    want = {"a", "a/y", "b", "b/new", "h1", "h2", "c", "c/d", "c/d/e", "l"}
    problems = []
    if set(img.tree) != want:
        problems.append(f"paths {sorted(img.tree)}")
    if hardlink_groups(img.tree):
        problems.append(f"h1 was rewritten, yet linked: {hardlink_groups(img.tree)}")
    if img.tree.get("h2") is None or img.tree["h2"].preview != "h":
        problems.append("h2 lost its content")
    if not img.tree["c"].implicit:
        problems.append("implicit parent not marked")
    first = read_image_archive_layers(path, 1)
    if hardlink_groups(first.tree) != {("h1", "h2")}:
        problems.append(f"hard links in one layer: {hardlink_groups(first.tree)}")
    if problems:
        raise RuntimeError("archive reader self-test failed: " + "; ".join(problems))


def read_image_archive_layers(path: Path, count: int) -> Image:
    """The image made of the first count layers only (for the self-test)."""
    with tarfile.open(path) as outer:
        entry = json.load(outer.extractfile("manifest.json"))[0]
        tree: dict[str, Node] = {}
        next_inode = [1]
        for layer_name in entry["Layers"][:count]:
            _apply_layer(tree, outer.extractfile(layer_name), next_inode)
    return Image({}, tree, ("", ""))


# ---------------------------------------------------------------------------------------------
# Builders


def run(cmd, log, timeout=BUILD_TIMEOUT, env=None, cwd=None) -> subprocess.CompletedProcess:
    with open(log, "ab") as f:
        f.write(("$ " + " ".join(str(c) for c in cmd) + "\n").encode())
        f.flush()
        try:
            return subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT,
                                  env=env, cwd=cwd, timeout=timeout)
        except subprocess.TimeoutExpired:
            f.write(b"\n(timed out)\n")
            return subprocess.CompletedProcess(cmd, 124)


def last_lines(log: Path, n: int = 6) -> str:
    """The error of a failed build: its last line that says error, else its last lines."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    keep = [l.strip() for l in lines if l.strip() and not l.startswith("$ ")]
    errors = [l for l in keep if "error" in l.lower() and "exit status" not in l.lower()]
    text = errors[-1] if errors else " / ".join(keep[-n:])
    # The private temp dir changes every run; keep the diffs stable.
    return TMP_RE.sub("<ctx>", text)


class Dockerd:
    def __init__(self, tmp: Path):
        self.dir = tmp / "docker"
        self.dir.mkdir()
        self.sock = self.dir / "docker.sock"
        self.pidfile = self.dir / "dockerd.pid"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "dockerd.log"

    def start(self, driver: str | None = None) -> None:
        cmd = [DOCKERD, "--data-root", self.dir / "data", "--exec-root", self.dir / "exec",
               "--pidfile", self.pidfile, "-H", f"unix://{self.sock}", "--iptables=false",
               "--ip-masq=false", "--bridge=none", "--log-level=warn"]
        if driver:
            cmd += ["--storage-driver", driver]
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.proc.returncode}): "
                                   f"{last_lines(self.log, 10)}")
            if self.sock.exists():
                r = subprocess.run([DOCKER, "-H", f"unix://{self.sock}", "version"],
                                   capture_output=True)
                if r.returncode == 0:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"dockerd did not answer within 60s: {last_lines(self.log, 10)}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # dockerd starts its own containerd in its session; make sure that is gone too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def cmd(self, *args) -> list:
        return [DOCKER, "-H", f"unix://{self.sock}", *args]


@dataclass
class Case:
    name: str
    dir: Path
    spec: dict
    dockerfile: str = "Dockerfile"

    @property
    def referee(self) -> str:
        return self.spec.get("referee", "buildkit")


def load_cases(pattern: str | None) -> list[Case]:
    cases = []
    for df in sorted(CASES_DIR.glob("*/*/")):
        if not df.is_dir():
            continue
        name = f"{df.parent.name}/{df.name}"
        if pattern and not any(fnmatch.fnmatch(name, p) or p in name
                               for p in pattern.split(",") if p):
            continue
        spec = {}
        if (df / "case.toml").exists():
            spec = tomllib.loads((df / "case.toml").read_text())
        cases.append(Case(name, df, spec, spec.get("dockerfile", "Dockerfile")))
    return cases


class Suite:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="kiln-conformance-", dir=args.tmpdir))
        os.chmod(self.tmp, 0o755)
        # A private copy: the binary under test may be rebuilt while the suite runs.
        self.kiln = self.tmp / "kiln"
        shutil.copy2(Path(args.kiln).resolve(), self.kiln)
        self.kiln_root = self.tmp / "kiln-root"
        self.buildah_root = self.tmp / "buildah-root"
        self.buildah_runroot = self.tmp / "buildah-run"
        self.dockerd = Dockerd(self.tmp)
        self.logdir = self.tmp / "logs"
        self.logdir.mkdir()
        self.use_buildah = args.buildah and shutil.which("buildah") is not None

    # -- environment ------------------------------------------------------------------------

    def kiln_env(self):
        env = dict(os.environ)
        env["KILN_ROOT"] = str(self.kiln_root)
        env.pop("SOURCE_DATE_EPOCH", None)
        return env

    def buildah_cmd(self, *args):
        return ["buildah", "--root", self.buildah_root, "--runroot", self.buildah_runroot,
                "--storage-driver", self.args.buildah_driver, *args]

    def setup(self) -> None:
        t0 = time.time()
        self_test(self.tmp)
        log = self.logdir / "setup.log"
        self.dockerd.start(self.args.storage_driver)
        bb = self.tmp / "bases" / "busybox"
        r = run([SOURCE_DIR / "examples/busybox/prepare.sh", bb], log)
        if r.returncode:
            raise RuntimeError(f"prepare.sh failed: {last_lines(log)}")
        self._make_base("busybox", bb, log)
        for bdir in sorted(BASES_DIR.iterdir()):
            ctx = self.tmp / "bases" / bdir.name
            shutil.copytree(bdir, ctx)
            spec_file = bdir / "base.toml"
            if spec_file.exists():
                make_context(ctx, tomllib.loads(spec_file.read_text()).get("files", []))
            self._make_base(bdir.name, ctx, log)
        if not self.args.quiet:
            print(f"conformance: setup (dockerd, base images) took {time.time() - t0:.1f}s",
                  flush=True)

    def _make_base(self, name: str, ctx: Path, log: Path) -> None:
        out = self.tmp / "bases" / f"{name}.tar"
        r = run([self.kiln, "build", "--progress", "plain", "-t", f"{name}:latest",
                 "-o", f"type=docker,dest={out}", ctx], log, env=self.kiln_env())
        if r.returncode:
            raise RuntimeError(f"kiln could not build base {name}: {last_lines(log)}")
        r = run(self.dockerd.cmd("load", "-i", out), log)
        if r.returncode:
            raise RuntimeError(f"docker load {name} failed: {last_lines(log)}")
        if self.use_buildah:
            r = run(self.buildah_cmd("pull", "-q", f"docker-archive:{out}"), log)
            if r.returncode and name == "busybox" and self.args.buildah_driver == "overlay":
                # overlay on overlay (a containerised CI) fails: fall back to vfs.
                shutil.rmtree(self.buildah_root, ignore_errors=True)
                self.args.buildah_driver = "vfs"
                r = run(self.buildah_cmd("pull", "-q", f"docker-archive:{out}"), log)
            if r.returncode:
                raise RuntimeError(f"buildah pull {name} failed: {last_lines(log)}")
            # docker-archive pulls keep the archive's tag (localhost/NAME:latest); make FROM NAME
            # resolve without a registry lookup.
            run(self.buildah_cmd("tag", f"{name}:latest", f"docker.io/library/{name}:latest"),
                log)

    def teardown(self) -> None:
        self.dockerd.stop()
        if self.use_buildah:
            # No working container may keep an overlay mounted under the private root.
            subprocess.run(self.buildah_cmd("rm", "--all"), capture_output=True)
            subprocess.run(self.buildah_cmd("rmi", "--all", "--force"), capture_output=True)
            subprocess.run(["umount", "-R", "-l", self.buildah_root / "overlay"],
                           capture_output=True)
        if self.args.keep:
            print(f"conformance: outputs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- one case ----------------------------------------------------------------------------

    def prepare_context(self, case: Case) -> Path:
        ctx = self.tmp / "ctx" / case.name.replace("/", "__")
        ctx.mkdir(parents=True)
        entries = [] if case.spec.get("context") == "empty" else list(DEFAULT_CONTEXT)
        for name in case.spec.get("include", []):
            entries += CONTEXT_SETS[name]
        entries += case.spec.get("files", [])
        make_context(ctx, entries)
        for f in case.dir.iterdir():
            if f.name == "case.toml":
                continue
            dest = ctx / f.name
            if dest.exists() or dest.is_symlink():
                dest.unlink()
            shutil.copyfile(f, dest)
            os.chmod(dest, 0o644)
        for d in case.spec.get("delete", []):
            p = ctx / d
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        return ctx

    def build_kiln(self, case: Case, ctx: Path, out: Path, log: Path, timeout: int) -> str | None:
        cmd = [self.kiln, "build", "--progress", "plain", "--network", "host",
               "-f", ctx / case.dockerfile, "-o", f"type=docker,dest={out}"]
        cmd += self._common_args(case)
        cmd += [ctx]
        r = run(cmd, log, env=self.kiln_env(), timeout=timeout)
        return None if r.returncode == 0 else (last_lines(log) or f"exit {r.returncode}")

    def _common_args(self, case: Case) -> list:
        args = []
        for k, v in case.spec.get("build_args", {}).items():
            args += ["--build-arg", f"{k}={v}"]
        if case.spec.get("target"):
            args += ["--target", case.spec["target"]]
        return args

    def build_buildkit(self, case: Case, ctx: Path, out: Path, log: Path, timeout: int) -> str | None:
        tag = "conformance/" + case.name.replace("/", "-").lower() + ":latest"
        env = dict(os.environ, DOCKER_BUILDKIT="1", BUILDKIT_PROGRESS="plain")
        env.pop("DOCKER_HOST", None)
        cmd = self.dockerd.cmd("build", "--network", "host", "-f", ctx / case.dockerfile,
                               "-t", tag, *self._common_args(case), ctx)
        r = run(cmd, log, env=env, timeout=timeout)
        if r.returncode:
            return last_lines(log) or f"exit {r.returncode}"
        r = run(self.dockerd.cmd("save", "-o", out, tag), log)
        if r.returncode:
            raise RuntimeError(f"docker save failed: {last_lines(log)}")
        run(self.dockerd.cmd("rmi", tag), log)
        return None

    def build_buildah(self, case: Case, ctx: Path, out: Path, log: Path, timeout: int) -> str | None:
        tag = "conformance-" + case.name.replace("/", "-").lower()
        cmd = self.buildah_cmd("bud", "--isolation", "chroot", "--network", "host",
                               "--layers=false", "--format", "docker", "--identity-label=false", "-f", ctx / case.dockerfile, "-t", tag,
                               *self._common_args(case), ctx)
        r = run(cmd, log, timeout=timeout)
        if r.returncode:
            return last_lines(log) or f"exit {r.returncode}"
        r = run(self.buildah_cmd("push", "-q", tag, f"docker-archive:{out}:{tag}:latest"), log)
        if r.returncode:
            raise RuntimeError(f"buildah push failed: {last_lines(log)}")
        run(self.buildah_cmd("rmi", tag), log)
        return None

    def run_case(self, case: Case) -> dict:
        """Builds one case. BuildKit (dockerd) runs in one thread while kiln and then buildah run
        in another: never two docker builds at once, at most two builds in all."""
        t0 = time.time()
        work = self.tmp / "out" / case.name.replace("/", "__")
        work.mkdir(parents=True)
        ctx = self.prepare_context(case)
        res = {"case": case.name, "description": case.spec.get("description", ""),
               "referee": case.referee}
        timeout = case.spec.get("timeout", BUILD_TIMEOUT)
        want_bk = case.referee != "expect"
        want_h = (want_bk and self.use_buildah and case.spec.get("buildah", True) is not False)
        out: dict[str, tuple] = {}

        def timed(label, fn, archive):
            t = time.time()
            err = fn(case, ctx, work / archive, work / f"{label}.log", timeout)
            res[f"t_{label}"] = round(time.time() - t, 2)
            img = None
            if err is None:
                try:
                    img = read_image_archive(work / archive)
                except (OSError, tarfile.TarError, KeyError, ValueError) as e:
                    err = f"cannot read the image archive {archive}: {e}"
            out[label] = (img, err)

        def kiln_then_buildah():
            timed("kiln", self.build_kiln, "kiln.tar")
            if want_h:
                timed("buildah", self.build_buildah, "buildah.tar")

        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(kiln_then_buildah)]
            if want_bk:
                futures.append(pool.submit(timed, "buildkit", self.build_buildkit, "buildkit.tar"))
            for f in futures:
                f.result()

        img_k, err_k = out["kiln"]
        if not want_bk:
            res["diffs"] = check_expectations(img_k, err_k, case.spec.get("expect", {}))
            res["buildkit_source"] = case.spec.get("buildkit_source", "")
            res["seconds"] = round(time.time() - t0, 2)
            return res
        img_b, err_b = out["buildkit"]
        # An [expect] table in a BuildKit-refereed case: BuildKit 20.10 is outdated on those
        # fields and paths (the case cites the current source); kiln is checked against the
        # expectation there and against BuildKit everywhere else.
        override = case.spec.get("expect")
        if override:
            res["buildkit_source"] = case.spec.get("buildkit_source", "")
        res["diffs"] = self._compare(img_k, err_k, img_b, err_b, "kiln", "buildkit", override)
        if override:
            res["diffs"] += check_expectations(img_k, err_k, override) if img_k else []
            if img_b is not None:
                res["buildkit_2010_vs_expect"] = check_expectations(img_b, None, override,
                                                                     "buildkit")
        res["outcome"] = {"kiln": err_k is None, "buildkit": err_b is None}
        if want_h and out["buildah"][1] and BUILDAH_CANNOT_RUN in (
                (work / "buildah.log").read_text(errors="replace")):
            # buildah 1.28's chroot isolation cannot start RUN as a non-root USER on some hosts
            # (this CI's among them): no verdict from buildah for the case.
            res["buildah_unavailable"] = "buildah cannot RUN as a non-root user here"
            want_h = False
        if want_h:
            img_h, err_h = out["buildah"]
            if img_h is not None and img_b is not None:
                drop_buildah_stubs(img_h, img_b)
            res["outcome"]["buildah"] = err_h is None
            res["buildah_diffs"] = self._compare(img_h, err_h, img_b, err_b, "buildah",
                                                 "buildkit", override)
            res["buildah_kiln_diffs"] = self._compare(img_k, err_k, img_h, err_h, "kiln",
                                                      "buildah", override)
        res["seconds"] = round(time.time() - t0, 2)
        return res

    @staticmethod
    def _compare(img_a, err_a, img_b, err_b, la, lb, skip=None) -> list[str]:
        if img_a is None and img_b is None:
            return []  # both refuse the Containerfile
        if img_a is None:
            return [f"{la} failed, {lb} succeeded: {_short(err_a, 400)}"]
        if img_b is None:
            return [f"{la} succeeded, {lb} failed: {_short(err_b, 400)}"]
        return compare_images(img_a, img_b, la, lb, skip)


# ---------------------------------------------------------------------------------------------
# Reporting


def classify(results: list[dict], expected: dict[str, str]) -> None:
    for r in results:
        if not r["diffs"]:
            r["status"] = "same"
        elif r["case"] in expected:
            r["status"] = "expected"
            r["reason"] = expected[r["case"]]
        else:
            r["status"] = "differ"


def _cell(text: str, limit: int = 500) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def write_known_differences(path: Path, results: list[dict], summary: str) -> None:
    rows = [r for r in results if r["status"] != "same"]
    lines = [
        "# Known differences from BuildKit",
        "",
        "<!-- Generated by tests/conformance/conformance.py --write-known-differences; do not edit. -->",
        "",
        "Found by the differential conformance suite (tests/conformance/README.md): every case is",
        "built by kiln and by BuildKit (Debian's docker.io 20.10, on a private dockerd) from the same",
        "context and the same base images, and the image config and the final root filesystem are",
        "compared; buildah 1.28 is a second referee. Where BuildKit has changed since 20.10, or for",
        "syntax 20.10 does not know, the case states what BuildKit's current source does.",
        "",
        f"Last run: `{summary}`.",
        "",
        "Status `differ` is an open bug in kiln; `expected` is a deliberate difference, kept because",
        "copying BuildKit would be unsafe (the reason says why).",
        "",
    ]
    if not rows:
        lines.append("No differences.")
    else:
        lines += ["| case | what differs (kiln vs BuildKit) | status | reason |",
                  "| --- | --- | --- | --- |"]
        for r in rows:
            what = "; ".join(r["diffs"][:3])
            if len(r["diffs"]) > 3:
                what += f"; (+{len(r['diffs']) - 3} more)"
            if r["status"] == "expected":
                reason = r["reason"]
            else:
                reason = r.get("description") or "kiln should do what BuildKit does"
                if r.get("buildkit_source"):
                    reason += " (BuildKit: " + r["buildkit_source"] + ")"
            lines.append(f"| `{r['case']}` | {_cell(what)} | {r['status']} | {_cell(reason, 700)} |")
    buildah_rows = [r for r in results if r.get("buildah_diffs") and r.get("buildah_note")]
    if buildah_rows:
        lines += ["", "## Where buildah differs from BuildKit", "",
                  "kiln follows BuildKit in each of these cases, for the reason given.", "",
                  "| case | buildah vs BuildKit | why kiln follows BuildKit |",
                  "| --- | --- | --- |"]
        for r in buildah_rows:
            what = "; ".join(r["buildah_diffs"][:2])
            lines.append(f"| `{r['case']}` | {_cell(what, 300)} | {_cell(r['buildah_note'])} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kiln", default=str(SOURCE_DIR / "build/cli/kiln"))
    ap.add_argument("--only", metavar="PATTERN", help="run cases whose name matches (glob or substring; several separated by commas)")
    ap.add_argument("--keep", action="store_true", help="keep contexts, logs and archives")
    ap.add_argument("--no-buildah", dest="buildah", action="store_false",
                    help="do not run buildah as the second referee")
    ap.add_argument("--write-known-differences", metavar="PATH")
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON")
    ap.add_argument("--storage-driver", default=None, help="dockerd storage driver (default: its choice)")
    ap.add_argument("--buildah-driver", default="overlay",
                    help="buildah's storage driver (default overlay; vfs where overlay fails)")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("-q", "--quiet", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every diff line")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("conformance: SKIP: needs root (dockerd, ownership in contexts)")
        return 77
    for tool in (DOCKERD, DOCKER):
        if not os.access(tool, os.X_OK):
            print(f"conformance: SKIP: {tool} missing (apt-get install docker.io)")
            return 77
    os.umask(0o022)
    cases = load_cases(args.only)
    if not cases:
        print("conformance: no cases match", file=sys.stderr)
        return 2
    expected = json.loads(EXPECTED_FILE.read_text()) if EXPECTED_FILE.exists() else {}
    expected = {k: v for k, v in expected.items() if not k.startswith("_")}

    t0 = time.time()
    suite = Suite(args)
    results = []
    interrupted = False
    old_term = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        suite.setup()
        for i, case in enumerate(cases, 1):
            r = suite.run_case(case)
            r["buildah_note"] = case.spec.get("buildah_note", "")
            results.append(r)
            if not args.quiet:
                mark = "ok" if not r["diffs"] else ("EXPECTED" if case.name in expected else "DIFFER")
                extra = ""
                if r.get("buildah_diffs"):
                    extra = "  (buildah disagrees with BuildKit)"
                print(f"[{i:3d}/{len(cases)}] {mark:8s} {case.name} ({r['seconds']}s){extra}",
                      flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        suite.teardown()
        signal.signal(signal.SIGTERM, old_term)
    if interrupted:
        print("conformance: interrupted", file=sys.stderr)
        return 130

    classify(results, expected)
    n = len(results)
    same = sum(r["status"] == "same" for r in results)
    differ = sum(r["status"] == "differ" for r in results)
    exp_n = sum(r["status"] == "expected" for r in results)
    summary = f"conformance: {n} cases: {same} same, {differ} differ, {exp_n} expected"

    for r in results:
        if r["status"] == "same":
            continue
        print(f"\n--- {r['case']} [{r['status']}]" + (f": {r['description']}" if r["description"] else ""))
        if r["status"] == "expected":
            print(f"    reason: {r['reason']}")
        limit = None if args.verbose else 12
        for d in r["diffs"][:limit]:
            print("    " + d)
        if limit and len(r["diffs"]) > limit:
            print(f"    ... {len(r['diffs']) - limit} more (-v shows all)")
        if r.get("buildah_diffs") is not None:
            agree = "agrees with BuildKit" if not r["buildah_diffs"] else "differs from BuildKit too"
            same_as_kiln = not r.get("buildah_kiln_diffs")
            scope = " outside the [expect] paths" if r.get("buildkit_2010_vs_expect") is not None else ""
            print(f"    buildah: {agree}{scope}" + (" (and matches kiln)" if same_as_kiln else ""))
            if args.verbose:
                for d in r["buildah_diffs"][:6]:
                    print("      " + d)
        elif r.get("buildah_unavailable"):
            print(f"    buildah: no verdict ({r['buildah_unavailable']})")
    stale = [c for c in expected if any(r["case"] == c and r["status"] == "same" for r in results)]
    for c in stale:
        print(f"conformance: note: {c} is listed in expected.json but now matches BuildKit")

    ran_h = [r for r in results if "buildah_diffs" in r]
    if ran_h:
        dis = [r for r in ran_h if r["buildah_diffs"]]
        na = sum(1 for r in results if r.get("buildah_unavailable"))
        print(f"\nbuildah: {len(ran_h)} cases: {len(ran_h) - len(dis)} agree with BuildKit, "
              f"{len(dis)} disagree" + (f" ({na} more could not RUN as non-root under buildah)"
                                        if na else ""))
        unexplained = [r["case"] for r in dis if not r["buildah_note"]]
        if unexplained and not args.quiet:
            print("buildah: disagreements without a buildah_note: " + ", ".join(unexplained))
    print(f"conformance: took {time.time() - t0:.0f}s")
    print(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.write_known_differences:
        write_known_differences(Path(args.write_known_differences), results, summary)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
