#!/usr/bin/env python3
"""Container images for the local test node, built on this machine without a registry.

Why this exists: the node under ``tools/node/`` runs real Pods, and this
machine can pull no image (no registry is reachable, only package
registries).  So the images a Pod needs are built here, from Debian packages,
PyPI and this repository, and handed to containerd as image archives:

* ``kstrata-pause:dev``: the sandbox image, the static Go program beside this
  file (``pause/``), one layer written by this module;
* ``kstrata-python-base:bookworm``: Debian bookworm from ``debootstrap``
  (minbase + Python + pip), plus the host's CA bundle so that ``pip`` inside a
  build trusts the TLS-intercepting egress proxy; the ``PYTHON_IMAGE`` the
  Dockerfiles build on;
* ``kstrata-operator:dev``: ``operator/Dockerfile`` built by ``buildah``;
* ``kstrata-toolbox:dev``: ``tools/images/toolbox.Dockerfile``, a shell,
  ``python3`` and kstrata for test workloads (the operator image with a
  shell's entry point: no layer of its own to store twice).

Each image is a docker-archive tarball (``manifest.json``, config, layers:
what ``ctr images import`` takes; buildah's oci-archive with a ``name:tag``
reference imports nothing, silently).  A tarball is rebuilt only when a
stamp (the sha256 of its inputs) changes, so a warm ``build`` takes well
under two seconds.

Boundary: a development tool, root only (debootstrap, buildah and containerd
need it).  It writes nothing outside its cache directory except Debian
packages it installs when a tool is missing; buildah keeps its storage in the
cache (``--root``) and its run state under ``/run/kstrata-buildah``, which is
removed, with anything mounted under either, when a build ends.  buildah runs
in a private mount namespace with ``/var/lib`` read-only (see ``Buildah``)
and builds with chroot isolation (no runc state, no cgroups).  ``clean``
removes only what this module put in the cache; ``load`` imports the archives
into a containerd the caller runs (namespace ``k8s.io``) and starts and stops
nothing.  The operator package never imports this module.

Environment (read only here, at the edge):
  KSTRATA_IMAGE_CACHE  cache directory (default ~/.cache/kstrata/images)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODULE_DIR = Path(__file__).resolve().parent
REPO_ROOT = MODULE_DIR.parent.parent

PAUSE_IMAGE = "kstrata-pause:dev"
BASE_IMAGE = "kstrata-python-base:bookworm"
OPERATOR_IMAGE = "kstrata-operator:dev"
TOOLBOX_IMAGE = "kstrata-toolbox:dev"
ALL_IMAGES = (PAUSE_IMAGE, BASE_IMAGE, OPERATOR_IMAGE, TOOLBOX_IMAGE)
#: What a node runs; the base only exists to build the other two on.
RUNTIME_IMAGES = (PAUSE_IMAGE, OPERATOR_IMAGE, TOOLBOX_IMAGE)

DEBIAN_SUITE = "bookworm"
DEBIAN_FALLBACK_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
)
#: Bumped whenever a recipe below changes in a way the stamps cannot see.
RECIPE_VERSION = "1"

#: buildah's run state (locks, mount counts) lives under here while a build
#: runs, one directory per cache, and is removed when it ends.
BUILDAH_RUNROOTS = Path("/run/kstrata-buildah")
#: Layer and config timestamps of the archives written here: fixed, so the
#: same inputs give the same image ID (and ``load`` can skip it).
EPOCH = "1970-01-01T00:00:00Z"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

#: Tools this module runs, by the Debian package that provides each.
BUILD_TOOLS = {"debootstrap": "debootstrap", "buildah": "buildah", "tar": "tar"}
LOAD_TOOLS = {"ctr": "containerd"}


class ImagesError(RuntimeError):
    """An image could not be built or loaded."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise ImagesError(
            "building and loading the node images needs root (debootstrap, buildah and "
            "containerd do); run it as root"
        )


# --- Debian packages ---------------------------------------------------------

_apt_updated: list[bool] = []


def find_binary(name: str) -> str | None:
    """``name`` on PATH or in an sbin directory (root's PATH may lack them)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_debian_packages(binaries: dict[str, str]) -> None:
    """Install, with apt, the package of every binary (key) missing from this machine.

    ``binaries`` maps a binary name to the Debian package that ships it.  The
    package lists are refreshed once per process, and only when something is
    missing; apt here starts no services.
    """
    missing = {name: package for name, package in binaries.items() if find_binary(name) is None}
    if not missing:
        return
    require_root()
    packages = sorted(set(missing.values()))
    if not _apt_updated:
        result = _run_captured(["apt-get", "update"], env=APT_ENV)
        if result.returncode != 0:
            raise ImagesError(
                f"apt-get update failed (needed to install {', '.join(packages)}):\n"
                + _tail(result.stdout + result.stderr)
            )
        _apt_updated.append(True)
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    result = _run_captured(command, env=APT_ENV)
    if result.returncode != 0:
        raise ImagesError(
            f"installing the Debian package(s) {', '.join(packages)} failed:\n"
            + _tail(result.stdout + result.stderr)
        )
    for name, package in missing.items():
        if find_binary(name) is None:
            raise ImagesError(f"the Debian package {package} is installed but provides no {name}")


# --- small helpers ---------------------------------------------------------------


def _environment(extra: dict[str, str] | None) -> dict[str, str]:
    """This process's environment plus ``extra``, with the sbin directories on PATH.

    debootstrap, chroot and mount live there, and a root shell may lack them.
    """
    env = dict(os.environ, **(extra or {}))
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":")
    env["PATH"] = ":".join(path + [d for d in SBIN_DIRS if d not in path])
    return env


def _run_captured(
    command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env=_environment(env),
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_logged(
    command: list[str],
    log: Path,
    what: str,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run ``command`` with its output appended to ``log``; raise with the tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(
            command,
            env=_environment(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise ImagesError(
            f"{what} failed (exit {result.returncode}); the end of {log}:\n"
            + _tail(log.read_text(errors="replace"))
        )


def cache_dir() -> Path:
    configured = os.environ.get("KSTRATA_IMAGE_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "kstrata" / "images"


def archive_path(name: str) -> Path:
    """Where the docker-archive of image ``name`` (``repo:tag``) lives in the cache."""
    return cache_dir() / "archives" / (name.replace(":", "_") + ".tar")


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".stamp")


def _is_current(target: Path, stamp: str) -> bool:
    stamp_file = _stamp_path(target)
    return target.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp


def _mark_current(target: Path, stamp: str) -> None:
    temporary = _stamp_path(target).with_suffix(".tmp")
    temporary.write_text(stamp)
    temporary.replace(_stamp_path(target))


class _Stamp:
    """A sha256 over named inputs: a change to any of them gives another stamp."""

    def __init__(self, recipe: str) -> None:
        self._digest = hashlib.sha256(f"{recipe} v{RECIPE_VERSION}\0".encode())

    def text(self, name: str, value: str) -> None:
        self._digest.update(f"{name}\0{value}\0".encode())

    def file(self, path: Path) -> None:
        name = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
        self._digest.update(name.encode() + b"\0")
        self._digest.update(hashlib.sha256(path.read_bytes()).digest())

    def tree(self, directory: Path) -> None:
        """Every file under ``directory`` but byte code (what .dockerignore leaves in)."""
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                self.file(path)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mount_points_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (the order to unmount them in)."""
    found: list[Path] = []
    prefix = str(root).rstrip("/")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
        raw = line.split(" ")[4]
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw)
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below ``root`` (lazily when busy)."""
    for point in _mount_points_under(root):
        if _run_captured(["umount", str(point)]).returncode != 0:
            _run_captured(["umount", "-l", str(point)])
    left = _mount_points_under(root)
    if left:
        raise ImagesError(f"could not unmount {', '.join(map(str, left))}")


def _remove_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        unmount_under(path)
        shutil.rmtree(path)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


# --- docker-archive, written here --------------------------------------------------


def write_docker_archive(
    target: Path, name: str, layers: list[Path], config: dict[str, Any], history: list[str]
) -> str:
    """Write a docker-archive of uncompressed ``layers`` (tar files); return the image ID.

    ``config`` is the image's run configuration (``Entrypoint``, ``Env``...);
    the image ID is the sha256 of the config blob, the same ID buildah and
    containerd give the image.
    """
    diff_ids = [_sha256_of(layer) for layer in layers]
    image_config = {
        "architecture": _goarch(),
        "os": "linux",
        "created": EPOCH,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [{"created": EPOCH, "created_by": line} for line in history],
    }
    config_blob = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    image_id = hashlib.sha256(config_blob).hexdigest()
    manifest = [
        {
            "Config": f"{image_id}.json",
            "RepoTags": [name],
            "Layers": [f"{d}/layer.tar" for d in diff_ids],
        }
    ]
    temporary = target.with_name(target.name + ".tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as archive:
        for digest, layer in zip(diff_ids, layers, strict=True):
            archive.addfile(_tar_entry(f"{digest}/", None))
            with layer.open("rb") as handle:
                archive.addfile(_tar_entry(f"{digest}/layer.tar", layer.stat().st_size), handle)
        _add_bytes(archive, f"{image_id}.json", config_blob)
        _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
    temporary.replace(target)
    return f"sha256:{image_id}"


def _tar_entry(name: str, size: int | None, mode: int = 0o644) -> tarfile.TarInfo:
    """A root-owned entry with a fixed mtime; ``size`` None makes a directory."""
    info = tarfile.TarInfo(name.rstrip("/"))
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if size is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = mode
    return info


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    archive.addfile(_tar_entry(name, len(data), mode), io.BytesIO(data))


def _write_layer(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """A layer tar holding ``files`` (path -> (content, mode)) and their parent directories."""
    directories = sorted({str(Path(p).parent) for p in files if str(Path(p).parent) != "."})
    parents: set[str] = set()
    for directory in directories:
        parts = Path(directory).parts
        parents.update(str(Path(*parts[: i + 1])) for i in range(len(parts)))
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as layer:
        for directory in sorted(parents):
            layer.addfile(_tar_entry(directory + "/", None))
        for path, (data, mode) in sorted(files.items()):
            _add_bytes(layer, path, data, mode)


def archive_config_digest(archive: Path) -> str:
    """The image ID (``sha256:`` of the config blob) of a docker-archive."""
    with tarfile.open(archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        if manifest_file is None:
            raise ImagesError(f"{archive} has no manifest.json")
        manifest = json.load(manifest_file)
        config_file = tar.extractfile(manifest[0]["Config"])
        if config_file is None:
            raise ImagesError(f"{archive} lacks its config blob")
        return "sha256:" + hashlib.sha256(config_file.read()).hexdigest()


# --- the pause image ---------------------------------------------------------------


def _pause_stamp() -> str:
    stamp = _Stamp("pause")
    for name in ("go.mod", "main.go"):
        stamp.file(MODULE_DIR / "pause" / name)
    stamp.text("go", _go_version())
    stamp.text("arch", _goarch())
    return stamp.hexdigest()


def _go_version() -> str:
    if find_binary("go") is None:
        ensure_debian_packages({"go": "golang-go"})
    result = _run_captured(["go", "env", "GOVERSION"])
    if result.returncode != 0:
        raise ImagesError("`go env GOVERSION` failed:\n" + _tail(result.stderr))
    return result.stdout.strip()


def _build_pause(target: Path, log: Path) -> None:
    work = cache_dir() / "pause"
    work.mkdir(parents=True, exist_ok=True)
    binary = work / "pause"
    env = {
        "CGO_ENABLED": "0",
        "GOFLAGS": "-buildvcs=false -mod=readonly",
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
    }
    command = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."]
    _run_logged(command, log, "building the pause binary", env=env, cwd=MODULE_DIR / "pause")
    layer = work / "layer.tar"
    _write_layer(layer, {"pause": (binary.read_bytes(), 0o755)})
    write_docker_archive(
        target,
        PAUSE_IMAGE,
        [layer],
        # Numeric, like the upstream pause image: runAsNonRoot holds without /etc/passwd.
        {"Entrypoint": ["/pause"], "User": "65535:65535"},
        ["COPY pause /pause (tools/images/pause, CGO_ENABLED=0 go build -trimpath)"],
    )
    layer.unlink()


# --- the Python base image ------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine for the main ``bookworm`` suite."""
    sources = [Path("/etc/apt/sources.list")]
    directory = Path("/etc/apt/sources.list.d")
    if directory.is_dir():
        sources += sorted(directory.glob("*.list")) + sorted(directory.glob("*.sources"))
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        mirror = _mirror_deb822(text) if path.suffix == ".sources" else _mirror_one_line(text)
        if mirror:
            return mirror
    return DEBIAN_FALLBACK_MIRROR


def _mirror_one_line(text: str) -> str | None:
    for line in text.splitlines():
        # deb [options] uri suite component...
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == DEBIAN_SUITE:
            return words[1].rstrip("/")
    return None


def _mirror_deb822(text: str) -> str | None:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if (
            "deb" in fields.get("types", "").split()
            and DEBIAN_SUITE in fields.get("suites", "").split()
        ):
            uris = fields.get("uris", "").split()
            if uris:
                return uris[0].rstrip("/")
    return None


def _rootfs_stamp(mirror: str) -> str:
    stamp = _Stamp("rootfs")
    stamp.text("suite", DEBIAN_SUITE)
    stamp.text("mirror", mirror)
    stamp.text("packages", ",".join(BASE_PACKAGES))
    stamp.text("arch", _goarch())
    return stamp.hexdigest()


def _base_stamp(rootfs_stamp: str) -> str:
    stamp = _Stamp("base")
    stamp.text("rootfs", rootfs_stamp)
    stamp.file(HOST_CA_BUNDLE)
    return stamp.hexdigest()


def _build_rootfs(target: Path, mirror: str, log: Path) -> None:
    """debootstrap bookworm (minbase + Python), trimmed, as one layer tar: the slow step."""
    work = target.parent / "rootfs.work"
    _remove_tree(work)
    work.mkdir(parents=True)
    command = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(BASE_PACKAGES),
        DEBIAN_SUITE,
        str(work),
        mirror,
    ]
    try:
        try:
            _run_logged(command, log, f"debootstrap {DEBIAN_SUITE} from {mirror}", env=APT_ENV)
        except ImagesError as exc:
            detail = work / "debootstrap" / "debootstrap.log"
            if detail.is_file():
                raise ImagesError(f"{exc}\n{detail}:\n{_tail(detail.read_text())}") from None
            raise
        unmount_under(work)
        _trim_rootfs(work)
        # Top-level names, not ".": entries read "usr/bin/...", as in any image layer.
        entries = sorted(entry.name for entry in work.iterdir())
        temporary = target.with_name(target.name + ".tmp")
        tar = ["tar", "--create", "--file", str(temporary), "--numeric-owner", "--sort=name"]
        tar += ["--xattrs", "--xattrs-include=*", "--directory", str(work), *entries]
        _run_logged(tar, log, "packing the base root filesystem")
        temporary.replace(target)
    finally:
        _remove_tree(work)


def _trim_rootfs(root: Path) -> None:
    """What an image does not need: caches, host leftovers, the pip guard."""
    emptied = [
        "var/cache/apt",
        "var/lib/apt/lists",
        "var/log",
        "tmp",
        "var/tmp",
        "dev",  # the runtime mounts its own /dev
        "run",
        "usr/share/man",
        "usr/share/info",
    ]
    for relative in emptied:
        directory = root / relative
        if directory.is_dir():
            for entry in directory.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    # Documentation but the copyright files (which travel with the binaries).
    for entry in (root / "usr/share/doc").glob("*/*"):
        if entry.name != "copyright":
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    # debootstrap copies the host's; the runtime provides them per container.
    for relative in ("etc/resolv.conf", "etc/hostname"):
        (root / relative).unlink(missing_ok=True)
    # Images install into their own virtualenv; the guard only stops a system pip.
    for guard in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        guard.unlink()


def _build_base(target: Path, rootfs: Path, log: Path) -> None:
    layer = cache_dir() / "base" / "ca-layer.tar"
    # The host's bundle trusts the machine's egress proxy: pip in a build needs it.
    _write_layer(layer, {"etc/ssl/certs/ca-certificates.crt": (HOST_CA_BUNDLE.read_bytes(), 0o644)})
    write_docker_archive(
        target,
        BASE_IMAGE,
        [rootfs, layer],
        {"Env": list(BASE_ENV), "Cmd": ["python3"]},
        [
            f"debootstrap --variant=minbase --include={','.join(BASE_PACKAGES)} {DEBIAN_SUITE}",
            f"COPY {HOST_CA_BUNDLE} (the host's CA bundle)",
        ],
    )
    layer.unlink()
    with log.open("a") as handle:
        handle.write(f"wrote {target}\n")


# --- buildah -------------------------------------------------------------------------


_PRIVATE_READ_ONLY_VAR_LIB = (
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    "sh",
    "-c",
    'mount --bind /var/lib /var/lib && mount -o remount,bind,ro /var/lib && exec "$@"',
    "buildah-in-a-mount-namespace",
)


@dataclass(frozen=True)
class Buildah:
    """buildah with its own storage in the cache, so the global one is never touched.

    Every buildah command runs in a mount namespace of its own, where
    ``/var/lib`` is read-only: buildah 1.28 (containers/image) otherwise
    creates ``/var/lib/containers/cache`` for its blob-info cache whatever
    ``--root`` says; unable to, it keeps that cache in memory.  A bonus: what
    buildah mounts lives and dies with the namespace, so nothing it mounts
    can outlive the command.
    """

    root: Path
    runroot: Path
    driver: str
    tmpdir: Path

    def command(self, *args: str) -> list[str]:
        return [
            *_PRIVATE_READ_ONLY_VAR_LIB,
            "buildah",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.driver,
            *args,
        ]

    @property
    def env(self) -> dict[str, str]:
        # Big temporary files (layer diffs, pushed archives) stay in the cache too.
        return {"TMPDIR": str(self.tmpdir)}

    def run(self, log: Path, what: str, *args: str, cwd: Path | None = None) -> None:
        _run_logged(self.command(*args), log, what, env=self.env, cwd=cwd)

    def query(self, *args: str) -> str:
        result = _run_captured(self.command(*args), env=self.env)
        if result.returncode != 0:
            raise ImagesError(f"buildah {' '.join(args)} failed:\n" + _tail(result.stderr))
        return result.stdout

    def image_id(self, name: str) -> str | None:
        """The ID (``sha256:...``) of local image ``name``, None when there is none."""
        result = _run_captured(
            self.command("inspect", "--type", "image", "--format", "{{.FromImageID}}", name),
            env=self.env,
        )
        if result.returncode != 0:
            return None
        return "sha256:" + result.stdout.strip().removeprefix("sha256:")


@contextlib.contextmanager
def _buildah_session() -> Iterator[Buildah]:
    """buildah storage under the cache; on the way out nothing stays mounted or in /run."""
    ensure_debian_packages({"buildah": "buildah"})
    base = cache_dir() / "buildah"
    root = base / "root"
    tmpdir = base / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    driver_file = base / "driver"
    runroot = _runroot()
    runroot.mkdir(parents=True, exist_ok=True)
    try:
        if driver_file.is_file():
            driver = driver_file.read_text().strip()
        else:
            driver = _pick_storage_driver(root, runroot, tmpdir)
            driver_file.write_text(driver)
        session = Buildah(root, runroot, driver, tmpdir)
        yield session
    finally:
        with contextlib.suppress(OSError, ImagesError):
            if driver_file.is_file():
                done = Buildah(root, runroot, driver_file.read_text().strip(), tmpdir)
                _run_captured(done.command("umount", "--all"), env=done.env)
        _remove_tree(runroot)
        with contextlib.suppress(OSError):
            BUILDAH_RUNROOTS.rmdir()  # unless another cache's build is running
        unmount_under(root)
        shutil.rmtree(tmpdir, ignore_errors=True)


def _runroot() -> Path:
    """This cache's buildah run state: builds in two caches must not share it."""
    return BUILDAH_RUNROOTS / hashlib.sha256(str(cache_dir()).encode()).hexdigest()[:12]


def _pick_storage_driver(root: Path, runroot: Path, tmpdir: Path) -> str:
    """overlay where the kernel and the backing filesystem allow it, vfs otherwise."""
    for driver in ("overlay", "vfs"):
        probe = Buildah(root, runroot, driver, tmpdir)
        result = _run_captured(probe.command("info"), env=probe.env)
        if result.returncode == 0:
            return driver
        shutil.rmtree(root, ignore_errors=True)
    raise ImagesError("buildah works with neither the overlay nor the vfs storage driver")


def _import_archive(buildah: Buildah, archive: Path, name: str, log: Path) -> str:
    """Make a docker-archive the local image ``name`` unless it is; return its full name."""
    local = containerd_name(name)
    wanted = archive_config_digest(archive)
    if buildah.image_id(local) != wanted:
        pull = ["pull", "--quiet", f"docker-archive:{archive}"]
        buildah.run(log, f"importing {archive.name} into buildah", *pull)
        buildah.run(log, f"naming {name}", "tag", wanted.removeprefix("sha256:"), local)
    return local


def _build_dockerfile(
    buildah: Buildah,
    target: Path,
    name: str,
    dockerfile: Path,
    build_args: dict[str, str],
    log: Path,
) -> None:
    # Named as containerd will name it: the archive then carries that one name
    # (a localhost/ name would be pushed into it as a second one).
    local = containerd_name(name)
    command = ["bud", "--file", str(dockerfile), "--tag", local, "--format", "docker"]
    # RUN steps reach PyPI on the host's network.  chroot isolation: no runc,
    # so no runc state in /run/runc, no cgroups, nothing this VM's missing
    # capabilities can refuse; a build's RUN steps need no more.
    command += ["--network", "host", "--isolation", "chroot", "--pull=never", "--layers=false"]
    for key, value in sorted(build_args.items()):
        command += ["--build-arg", f"{key}={value}"]
    what = f"buildah bud {dockerfile.relative_to(REPO_ROOT)}"
    buildah.run(log, what, *command, ".", cwd=REPO_ROOT)
    temporary = target.with_name(target.name + ".tmp")
    temporary.unlink(missing_ok=True)
    push = ["push", "--quiet", local, f"docker-archive:{temporary}:{name}"]
    buildah.run(log, f"buildah push {name}", *push)
    temporary.replace(target)
    _prune(buildah)


def _prune(buildah: Buildah) -> None:
    """Drop superseded builds, finished stages and any image this module does not name."""
    ours = {containerd_name(name) for name in ALL_IMAGES}
    listing = buildah.query("images", "--format", "{{.Name}}:{{.Tag}}")
    foreign = sorted({ref for ref in listing.split() if ref not in ours and "<none>" not in ref})
    if foreign:
        _run_captured(buildah.command("rmi", *foreign), env=buildah.env)
    _run_captured(buildah.command("rmi", "--prune"), env=buildah.env)


def _operator_stamp(base_stamp: str) -> str:
    stamp = _Stamp("operator")
    stamp.text("base", base_stamp)
    for name in ("operator/Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        stamp.file(REPO_ROOT / name)
    stamp.file(REPO_ROOT / "requirements" / "runtime.txt")
    stamp.tree(REPO_ROOT / "operator" / "kstrata")
    stamp.tree(REPO_ROOT / "config")
    return stamp.hexdigest()


def _toolbox_stamp(operator_stamp: str) -> str:
    stamp = _Stamp("toolbox")
    stamp.text("operator", operator_stamp)
    stamp.file(MODULE_DIR / "toolbox.Dockerfile")
    return stamp.hexdigest()


# --- building them all ----------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    name: str
    archive: Path
    seconds: float
    rebuilt: bool


def build_images(*, quiet: bool = False) -> list[Built]:
    """Bring every archive up to date; report, per image, whether it was rebuilt."""
    require_root()
    cache = cache_dir()
    logs = cache / "logs"
    results: list[Built] = []

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    def step(name: str, stamp: str, build: Callable[[Path, Path], None], slow: str = "") -> None:
        target = archive_path(name)
        started = time.monotonic()
        rebuilt = not _is_current(target, stamp)
        if rebuilt:
            say(f"building {name}{slow}...")
            log = logs / (name.replace(":", "_") + ".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"# {name}, stamp {stamp}\n")
            build(target, log)
            _mark_current(target, stamp)
        results.append(Built(name, target, time.monotonic() - started, rebuilt))

    with _locked(cache / ".lock"):
        step(PAUSE_IMAGE, _pause_stamp(), _build_pause)

        mirror = debian_mirror()
        rootfs = cache / "base" / "rootfs.tar"
        rootfs_stamp = _rootfs_stamp(mirror)
        base_stamp = _base_stamp(rootfs_stamp)

        def build_base(target: Path, log: Path) -> None:
            if not _is_current(rootfs, rootfs_stamp):
                ensure_debian_packages(BUILD_TOOLS)
                say(f"  debootstrap {DEBIAN_SUITE} from {mirror} (a minute or two, cached)")
                _build_rootfs(rootfs, mirror, log)
                _mark_current(rootfs, rootfs_stamp)
            _build_base(target, rootfs, log)

        step(BASE_IMAGE, base_stamp, build_base)
        operator_stamp = _operator_stamp(base_stamp)
        toolbox_stamp = _toolbox_stamp(operator_stamp)
        if _is_current(archive_path(OPERATOR_IMAGE), operator_stamp) and _is_current(
            archive_path(TOOLBOX_IMAGE), toolbox_stamp
        ):
            step(OPERATOR_IMAGE, operator_stamp, _never)
            step(TOOLBOX_IMAGE, toolbox_stamp, _never)
        else:
            with _buildah_session() as buildah:
                import_log = logs / "buildah-import.log"
                local_base = _import_archive(
                    buildah, archive_path(BASE_IMAGE), BASE_IMAGE, import_log
                )

                def build_operator(target: Path, log: Path) -> None:
                    dockerfile = REPO_ROOT / "operator" / "Dockerfile"
                    args = {"PYTHON_IMAGE": local_base}
                    _build_dockerfile(buildah, target, OPERATOR_IMAGE, dockerfile, args, log)

                def build_toolbox(target: Path, log: Path) -> None:
                    # The toolbox is the operator image with a shell's entry point:
                    # bring the operator back into storage when only the archive is left.
                    operator = archive_path(OPERATOR_IMAGE)
                    local = _import_archive(buildah, operator, OPERATOR_IMAGE, import_log)
                    dockerfile = MODULE_DIR / "toolbox.Dockerfile"
                    args = {"KSTRATA_IMAGE": local}
                    _build_dockerfile(buildah, target, TOOLBOX_IMAGE, dockerfile, args, log)

                step(OPERATOR_IMAGE, operator_stamp, build_operator, " (buildah, pip from PyPI)")
                step(TOOLBOX_IMAGE, toolbox_stamp, build_toolbox)
    return results


def _never(target: Path, log: Path) -> None:
    raise AssertionError(f"{target} was expected to be current (log {log})")


def ensure_images(*, quiet: bool = False) -> dict[str, Path]:
    """Build what changed; return the docker-archive of every image by name (``repo:tag``)."""
    return {built.name: built.archive for built in build_images(quiet=quiet)}


# --- loading into containerd ----------------------------------------------------------


def containerd_name(name: str) -> str:
    """What a pod spec's ``image: name`` normalises to (and what ``ctr`` lists)."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def _ctr(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run_captured(["ctr", "--address", address, "--namespace", "k8s.io", *args])


def _loaded_config_digest(address: str, name: str) -> str | None:
    """The config digest of image ``name`` in containerd when it is there and complete."""
    ref = containerd_name(name)
    listing = _ctr(address, "images", "ls")
    if listing.returncode != 0:
        raise ImagesError(f"ctr images ls at {address} failed:\n" + _tail(listing.stderr))
    target = None
    for line in listing.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == ref:
            target = fields[2]
    if target is None:
        return None
    check = _ctr(address, "images", "check", f"name=={ref}")
    if check.returncode != 0 or "complete" not in check.stdout:
        return None
    digest: str | None = target
    for _ in range(3):  # an index, then a manifest: follow down to the config
        blob = _ctr(address, "content", "get", str(digest))
        if blob.returncode != 0:
            return None
        document = json.loads(blob.stdout)
        if "config" in document:
            return str(document["config"]["digest"])
        digest = next(
            (
                entry["digest"]
                for entry in document.get("manifests", [])
                if entry.get("platform", {}).get("architecture", _goarch()) == _goarch()
            ),
            None,
        )
        if digest is None:
            return None
    return None


def load_images(address: str, names: list[str] | None = None, *, quiet: bool = False) -> None:
    """Import the archives (default: pause, operator, toolbox) into containerd's ``k8s.io``.

    Builds first what is out of date (saying so on stderr unless ``quiet``), so
    a node never runs images older than the sources.  An image whose config
    digest containerd already holds, complete, under the same name is skipped.
    """
    require_root()
    ensure_debian_packages(LOAD_TOOLS)
    wanted = list(RUNTIME_IMAGES if names is None else names)
    unknown = [name for name in wanted if name not in ALL_IMAGES]
    if unknown:
        raise ImagesError(
            f"no such image here: {', '.join(unknown)} (known: {', '.join(ALL_IMAGES)})"
        )
    archives = ensure_images(quiet=quiet)
    for name in wanted:
        archive = archives[name]
        if _loaded_config_digest(address, name) == archive_config_digest(archive):
            continue
        result = _ctr(address, "images", "import", str(archive))
        if result.returncode != 0:
            raise ImagesError(f"ctr images import {archive} failed:\n" + _tail(result.stderr))
        if _loaded_config_digest(address, name) != archive_config_digest(archive):
            raise ImagesError(
                f"{archive} imported, but containerd holds no complete {containerd_name(name)}"
            )


#: What this module keeps in the cache directory (``clean`` removes these only:
#: a caller may keep other things beside them).
CACHE_ENTRIES = ("archives", "base", "buildah", "pause", "logs", ".lock")


def clean() -> None:
    """Remove the archives, the debootstrap root filesystem and buildah's storage."""
    require_root()
    cache = cache_dir()
    if not cache.is_dir():
        return
    with _locked(cache / ".lock"):  # not under a running build
        for name in CACHE_ENTRIES:
            entry = cache / name
            if entry.is_dir():
                _remove_tree(entry)
            else:
                entry.unlink(missing_ok=True)
        _remove_tree(_runroot())
    with contextlib.suppress(OSError):
        BUILDAH_RUNROOTS.rmdir()
    with contextlib.suppress(OSError):
        cache.rmdir()  # only when nothing else lives there


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the image archives that are out of date")
    load = commands.add_parser("load", help="import the images into a running containerd")
    load.add_argument("--address", required=True, help="containerd's socket")
    load.add_argument("names", nargs="*", help=f"images (default: {', '.join(RUNTIME_IMAGES)})")
    commands.add_parser("clean", help="remove the cache")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            for built in build_images():
                state = "built" if built.rebuilt else "cached"
                size = built.archive.stat().st_size / 1e6
                print(
                    f"{built.name:30} {state:6} {built.seconds:7.2f} s "
                    f"{size:7.1f} MB  {built.archive}"
                )
        elif args.command == "load":
            load_images(args.address, args.names or None)
            print(f"loaded into {args.address} (namespace k8s.io)")
        elif args.command == "clean":
            clean()
            print(f"removed {cache_dir()}")
    except ImagesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
