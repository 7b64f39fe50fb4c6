#!/usr/bin/env python3
"""Builds hostile inputs for kiln's adversarial tests: tar archives, OCI image layouts and
docker-archives whose entries and manifests say whatever the test wants, which honest writers
never produce.

Usage:
  hostile_archives.py tar OUT SPEC          one tar (SPEC: a layer, see below)
  hostile_archives.py layout DIR SPEC       an OCI image layout tagged "latest"
  hostile_archives.py docker-archive OUT SPEC

SPEC is JSON. A layer is
  {"entries": [ENTRY...], "compression": "none"|"gzip"|"zstd"}
or a compression bomb, a zstd stream of one file of `size` zero bytes made of concatenated
frames (so it is written in seconds, not minutes):
  {"bomb": {"name": "zeros", "size": BYTES}}
An ENTRY is {"name", "type": "file"|"dir"|"symlink"|"hardlink"|"chr"|"blk"|"fifo",
"data", "mode", "uid", "gid", "linkname", "devmajor", "devminor"}; names and link targets are
stored exactly as given ("../x", "/etc/passwd").

A layout SPEC is {"layers": [LAYER...], "diff_ids": [...] (optional: override what the config
claims, e.g. another image's), "missing": [INDEX...] (layers whose blob is left out)}.
A docker-archive SPEC is {"layers": [LAYER...], "diff_ids": [...] (optional), "layer_paths":
[...] (optional: what manifest.json names instead of the layer files), "members": [ENTRY...]
(optional: extra archive members, e.g. a symlink to a host file)}.
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = TYPES[e.get("type", "file")]
            info.mode = e.get("mode", 0o755 if info.type == tarfile.DIRTYPE else 0o644)
            info.uid = e.get("uid", 0)
            info.gid = e.get("gid", 0)
            info.mtime = 1700000000
            info.linkname = e.get("linkname", "")
            info.devmajor = e.get("devmajor", 0)
            info.devminor = e.get("devminor", 0)
            data = e.get("data", "").encode()
            if info.type == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out.getvalue()


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-19" if len(data) < (1 << 20) else "-1"],
                          input=data, stdout=subprocess.PIPE, check=True).stdout


def bomb(spec):
    """A zstd layer of one file of spec["size"] zeros: returns (blob, diff_id)."""
    size = spec["size"]
    info = tarfile.TarInfo(spec.get("name", "zeros"))
    info.size = size
    info.mtime = 1700000000
    header = info.tobuf(tarfile.PAX_FORMAT)
    chunk = 64 << 20
    frame = zstd(b"\0" * chunk)
    full, rest = divmod(size, chunk)
    tail = b"\0" * rest + b"\0" * ((-size) % 512) + b"\0" * 1024
    blob = zstd(header) + frame * full + zstd(tail)
    digest = hashlib.sha256(header)
    block = b"\0" * chunk
    for _ in range(full):
        digest.update(block)
    digest.update(tail)
    return blob, "sha256:" + digest.hexdigest()


def layer_blob(spec):
    """(blob bytes, media type, diff ID) of a layer SPEC."""
    if "bomb" in spec:
        blob, diff_id = bomb(spec["bomb"])
        return blob, "application/vnd.oci.image.layer.v1.tar+zstd", diff_id
    raw = tar_bytes(spec.get("entries", []))
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    compression = spec.get("compression", "gzip")
    if compression == "gzip":
        return gzip.compress(raw, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip", diff_id
    if compression == "zstd":
        return zstd(raw), "application/vnd.oci.image.layer.v1.tar+zstd", diff_id
    return raw, "application/vnd.oci.image.layer.v1.tar", diff_id


def config_bytes(diff_ids):
    return json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "hostile"}
                    for _ in diff_ids],
    }, sort_keys=True).encode()


def put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest


def write_layout(out, spec):
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    layers, diff_ids = [], []
    for i, layer in enumerate(spec["layers"]):
        blob, media_type, diff_id = layer_blob(layer)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        if i not in spec.get("missing", []):
            put_blob(out, blob)
        layers.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
        diff_ids.append(diff_id)
    config = config_bytes(spec.get("diff_ids", diff_ids))
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put_blob(out, config), "size": len(config)},
        "layers": layers,
    }, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": put_blob(out, manifest), "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)


def write_docker_archive(out, spec):
    members = []  # (TarInfo, bytes or None)
    paths, diff_ids = [], []
    for i, layer in enumerate(spec["layers"]):
        blob, _, diff_id = layer_blob(dict(layer, compression="none"))
        path = "layer%d/layer.tar" % i
        members.append((tarfile.TarInfo(path), blob))
        paths.append(path)
        diff_ids.append(diff_id)
    config = config_bytes(spec.get("diff_ids", diff_ids))
    config_path = hashlib.sha256(config).hexdigest() + ".json"
    members.append((tarfile.TarInfo(config_path), config))
    manifest = json.dumps([{"Config": config_path, "RepoTags": ["hostile:latest"],
                            "Layers": spec.get("layer_paths", paths)}]).encode()
    members.append((tarfile.TarInfo("manifest.json"), manifest))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
        extra = spec.get("members", [])
        if extra:
            raw = tarfile.open(fileobj=io.BytesIO(tar_bytes(extra)))
            for info in raw.getmembers():
                tar.addfile(info, raw.extractfile(info) if info.isreg() else None)


def main():
    kind, out, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if kind == "tar":
        blob, _, _ = layer_blob(spec)
        with open(out, "wb") as f:
            f.write(blob)
    elif kind == "layout":
        write_layout(out, spec)
    elif kind == "docker-archive":
        write_docker_archive(out, spec)
    else:
        sys.exit("unknown kind " + kind)


if __name__ == "__main__":
    main()
