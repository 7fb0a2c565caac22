#!/usr/bin/env python3
"""Writes an OCI image layout tar for the e2e node's containerd (`ctr images import`), without a registry or a
container engine.

  image.py --out iotrelay.tar --name iotrelay.local/iotrelay:e2e --dockerfile Dockerfile --bin-dir target/release
      The project's image, in the layout of the Dockerfile's final stage, read from the Dockerfile itself so the
      two cannot drift: every `COPY --from=build /out/<bin> ... <dir>/` puts <bin-dir>/<bin> into <dir>; USER,
      ENTRYPOINT, ENV and WORKDIR become the image config; a build-stage `setcap CAPS /out/<bin>` becomes <bin>'s
      file capability (the security.capability xattr, as a PAX record containerd applies). The base image (distroless cc: /etc/passwd with
      nonroot 65532, /etc/group, /tmp, glibc and libgcc) is made from this Debian host: the same accounts and
      the shared libraries `ldd` lists for the binaries.
  image.py --out pause.tar --name iotrelay.local/pause:e2e --file /var/cache/iotrelay/bin/pause:/pause \\
      --entrypoint /pause --user 65535:65535
      A one-file image (the pod sandbox's pause image).

One uncompressed layer, fixed timestamps and owners: the same inputs give the same digests.
"""
import argparse
import hashlib
import io
import json
import os
import platform
import re
import shlex
import struct
import subprocess
import sys
import tarfile

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What distroless' nonroot variants hold in /etc/passwd and /etc/group.
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" \
         "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"


class Layer:
    """An image layer: a tar whose entries are added once each, parents first."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.seen = set()

    def _info(self, path, kind, mode):
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, 0, 0
        return info

    def dir(self, path, mode=0o755):
        path = os.path.normpath(path)
        if path in ("/", ".") or path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        self.tar.addfile(self._info(path, tarfile.DIRTYPE, mode))

    def data(self, path, data, mode=0o644, xattrs=None):
        self.dir(os.path.dirname(path))
        if path in self.seen:
            return
        self.seen.add(path)
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        if xattrs:
            info.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, path, target):
        self.dir(os.path.dirname(path))
        if path in self.seen:
            return
        self.seen.add(path)
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def host_path(self, path):
        """The host's file at `path`, with every symlink on the way (e.g. Debian's /lib -> usr/lib) as a symlink."""
        parts = path.strip("/").split("/")
        cur = ""
        for i, part in enumerate(parts):
            cur += "/" + part
            if os.path.islink(cur):
                target = os.readlink(cur)
                self.symlink(cur, target)
                rest = "/".join(parts[i + 1:])
                resolved = os.path.normpath(os.path.join(os.path.dirname(cur), target))
                return self.host_path(resolved + ("/" + rest if rest else ""))
        with open(path, "rb") as f:
            self.data(path, f.read(), os.stat(path).st_mode & 0o777)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def dockerfile_final_stage(path):
    """(copies [(src basename, dest dir)], user, entrypoint, env, workdir) of the Dockerfile's last stage."""
    lines, cur = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    last = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
    copies, user, entry, env, workdir = [], None, None, [], None
    for line in lines[last + 1:]:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "COPY":
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            dest = args[-1]
            if not dest.endswith("/"):
                sys.exit(f"image.py: COPY to a file ({dest}) is not supported; copy into a directory/")
            copies += [(os.path.basename(src), dest) for src in args[:-1]]
        elif word == "USER":
            user = rest.strip()
        elif word == "ENTRYPOINT":
            entry = json.loads(rest)
        elif word == "ENV":
            env += [f"{k}={v}" for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', rest)]
        elif word == "WORKDIR":
            workdir = rest.strip()
        elif word not in ("ARG", "LABEL", "EXPOSE"):
            sys.exit(f"image.py: Dockerfile instruction {word} in the final stage is not modelled here")
    return copies, user, entry, env, workdir


CAP_NUMBERS = {"cap_net_bind_service": 10, "cap_net_admin": 12}


def file_caps(path):
    """{binary basename: security.capability value} from the Dockerfile's `setcap CAPS /out/<bin>` (VFS_CAP_REVISION_2:
    magic and effective flag, then permitted and inheritable, low and high 32 bits, little endian)."""
    out = {}
    for caps, binary in re.findall(r"setcap\s+(\S+)\s+/out/(\S+)", open(path).read()):
        m = re.fullmatch(r"([a-z_,]+)=\+(e?)(i?)p", caps)
        if not m or any(c not in CAP_NUMBERS for c in m.group(1).split(",")):
            sys.exit(f"image.py: setcap {caps} is not modelled here")
        bits = sum(1 << CAP_NUMBERS[c] for c in m.group(1).split(","))
        magic = 0x02000000 | (1 if m.group(2) else 0)
        out[binary] = struct.pack("<IIIII", magic, bits, bits if m.group(3) else 0, 0, 0)
    return out


def shared_libs(binaries):
    libs = []
    for b in binaries:
        out = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        libs += re.findall(r"(/\S+) \(0x", out)
    return sorted(set(libs))


def blob(blobs, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True, help="image reference, e.g. iotrelay.local/iotrelay:e2e")
    ap.add_argument("--dockerfile")
    ap.add_argument("--bin-dir", help="where the Dockerfile's COPY sources (by basename) are")
    ap.add_argument("--file", action="append", default=[], help="SRC:DST (one file)")
    ap.add_argument("--entrypoint")
    ap.add_argument("--user")
    a = ap.parse_args()

    layer = Layer()
    user, entry, env, workdir = a.user, [a.entrypoint] if a.entrypoint else None, [PATH_ENV], None
    binaries = []
    if a.dockerfile:
        copies, user, entry, denv, workdir = dockerfile_final_stage(a.dockerfile)
        caps = file_caps(a.dockerfile)
        env += denv
        layer.data("/etc/passwd", PASSWD.encode())
        layer.data("/etc/group", GROUP.encode())
        layer.dir("/tmp", 0o1777)
        layer.dir("/home/nonroot", 0o700)
        for name, dest in copies:
            src = os.path.join(a.bin_dir, name)
            with open(src, "rb") as f:
                xattrs = {"security.capability": caps[name]} if name in caps else None
                layer.data(os.path.join(dest, name), f.read(), 0o755, xattrs)
            binaries.append(src)
        for lib in shared_libs(binaries):
            layer.host_path(lib)
    for spec in a.file:
        src, dst = spec.split(":", 1)
        with open(src, "rb") as f:
            layer.data(dst, f.read(), 0o755)
    layer_bytes = layer.bytes()

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    cfg = {"Env": env}
    if user:
        cfg["User"] = user
    if entry:
        cfg["Entrypoint"] = entry
    if workdir:
        cfg["WorkingDir"] = workdir
    config = {
        "architecture": arch, "os": "linux", "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]},
        "history": [{"created_by": "e2e/k8s/image.py"}],
    }
    blobs = {}
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(blobs, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(blobs, layer_bytes, "application/vnd.oci.image.layer.v1.tar")],
    }
    desc = blob(blobs, json.dumps(manifest, sort_keys=True).encode(), manifest["mediaType"])
    desc["platform"] = {"architecture": arch, "os": "linux"}
    desc["annotations"] = {"io.containerd.image.name": a.name,
                           "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1]}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc]}

    with tarfile.open(a.out + ".tmp", "w", format=tarfile.PAX_FORMAT) as out:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            out.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":")[1], data)
        add("index.json", json.dumps(index, sort_keys=True).encode())
    os.replace(a.out + ".tmp", a.out)
    print(f"image.py: {a.name} -> {a.out} ({len(layer_bytes) // 1024} KiB layer, manifest {desc['digest'][:19]})")


if __name__ == "__main__":
    main()
