#!/usr/bin/env python3
"""Install the pinned third-party tools of tools/gotools/tools.toml.

    tools/gotools/install.py NAME [NAME...]   install when missing; print each path
    tools/gotools/install.py --path NAME      the path it would have (nothing installed)
    tools/gotools/install.py --list           names, kinds and pinned versions

Go programs are built with ``go install PACKAGE@VERSION`` (the module proxy,
checksums from the Go checksum database) into
``~/.cache/kstrata/tools/NAME-VERSION/`` (``KSTRATA_TOOLS_CACHE`` moves the
root), once per machine; the build goes to a temporary directory first, so an
interrupted build leaves nothing that looks installed.  Go programs whose
module carries ``replace`` directives (which ``go install PACKAGE@VERSION``
refuses) are built with ``go build PACKAGE`` inside a small wrapper module of
ours under tools/gotools/ (kind ``gomod``: its go.mod pins the version and
mirrors the replaces, its go.sum is committed); the binary's build info must
then name the pinned module version.  Go modules needed for their files
only (kind ``gosource``: a CRD a test installs) are fetched with ``go mod
download -json MODULE@VERSION`` into the Go module cache, checked against
the Go checksum database, and their path is the module's directory there;
``files`` named in the manifest must be in it.  Debian packages are
installed with ``apt-get install PACKAGE=VERSION`` (needs root) unless that
version is installed already.  Every tool is then run once (``version_args``)
and must report the pinned version.  Concurrent installs of one tool wait for
each other (a lock file beside it).

Progress and the time an install took go to standard error; standard output
carries only the paths, one a line, for scripts and the Makefile.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "tools.toml"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "l"}
GO_BUILD_TIMEOUT = 1800  # seconds: promtool and helm are large builds on 2 cores


class ToolError(Exception):
    pass


@dataclass(frozen=True)
class Tool:
    name: str
    kind: str  # "go", "gomod", "gosource" or "apt"
    package: str
    version: str
    binary: str
    ldflags: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    version_args: list[str] = field(default_factory=list)
    version_match: str = ""
    #: kind "gomod": the wrapper module's directory, relative to tools/gotools/.
    module_dir: str = ""
    #: kind "gosource": files (relative to the module) that must be there.
    files: list[str] = field(default_factory=list)

    def expand(self, text: str) -> str:
        return text.format(
            version=self.version,
            bare=self.version.removeprefix("v"),
            module_version=self.module_version,
        )

    @property
    def module_version(self) -> str:
        """Prometheus numbers its Go module v0.3MM.P for its release 3.MM.P."""
        match = re.fullmatch(r"v0\.3(\d\d)\.(\d+)", self.version)
        if match is None:
            return self.version.removeprefix("v")
        return f"3.{int(match.group(1))}.{match.group(2)}"


def load_tools(manifest: Path = MANIFEST) -> dict[str, Tool]:
    data = tomllib.loads(manifest.read_text())
    tools = {}
    for name, entry in data.items():
        kind = entry["kind"]
        if kind not in ("go", "gomod", "gosource", "apt"):
            raise ToolError(f"{manifest}: tool {name}: kind must be go, gomod, gosource or apt")
        if kind == "gomod" and not entry.get("module_dir"):
            raise ToolError(f"{manifest}: tool {name}: kind gomod needs module_dir")
        binary = entry.get("binary") or entry["package"].rstrip("/").rsplit("/", 1)[-1]
        tools[name] = Tool(
            name=name,
            kind=kind,
            package=entry["package"],
            version=entry["version"],
            binary=binary,
            ldflags=list(entry.get("ldflags", [])),
            tags=list(entry.get("tags", [])),
            version_args=list(entry.get("version_args", [])),
            version_match=entry.get("version_match", ""),
            module_dir=entry.get("module_dir", ""),
            files=list(entry.get("files", [])),
        )
    return tools


def cache_root() -> Path:
    configured = os.environ.get("KSTRATA_TOOLS_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "kstrata" / "tools"


def tool_dir(tool: Tool) -> Path:
    return cache_root() / f"{tool.name}-{tool.version}"


def tool_path(tool: Tool) -> Path:
    if tool.kind == "gosource":
        return _module_cache() / f"{_escape_module(tool.package)}@{tool.version}"
    if tool.kind in ("go", "gomod"):
        return tool_dir(tool) / tool.binary
    return Path("/usr/bin") / tool.binary


def _module_cache() -> Path:
    result = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or not result.stdout.strip():
        raise ToolError("go env GOMODCACHE failed (Go >= 1.25 is needed):\n" + result.stderr)
    return Path(result.stdout.strip())


def _escape_module(path: str) -> str:
    """The module cache's case encoding: each capital letter as ``!`` and its lower case."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in path)


def _download_module(tool: Tool) -> Path:
    """``go mod download -json MODULE@VERSION``; its directory in the module cache.

    Run outside any module (a temporary directory), with this machine's Go:
    the go command checks the download against the Go checksum database and
    refuses a module whose go.mod needs a newer Go.  Nothing is built.
    """
    started = time.monotonic()
    present = tool_path(tool).is_dir()
    env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN", "local"))
    target = f"{tool.package}@{tool.version}"
    with tempfile.TemporaryDirectory(prefix="kstrata-gosource-") as scratch:
        result = subprocess.run(
            ["go", "mod", "download", "-json", target],
            env=env,
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=GO_BUILD_TIMEOUT,
        )
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {}
    if result.returncode != 0 or info.get("Error") or not info.get("Dir"):
        said = info.get("Error") or _tail(result.stdout + result.stderr)
        raise ToolError(f"go mod download {target} failed:\n{said}")
    if info.get("Version") != tool.version:
        raise ToolError(f"go mod download {target} gave version {info.get('Version')}")
    directory = Path(info["Dir"])
    missing = [name for name in tool.files if not (directory / name).is_file()]
    if missing:
        raise ToolError(f"{target} has no {', '.join(missing)} in {directory}")
    seconds = time.monotonic() - started
    if not present:
        _log(f"installed {tool.name} {tool.version} (source) in {seconds:.1f} s: {directory}")
    return directory


def _log(message: str) -> None:
    print(f"gotools: {message}", file=sys.stderr, flush=True)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def verify(tool: Tool, path: Path) -> None:
    """Run the installed tool; it must say it is the pinned version."""
    if tool.kind == "gomod":
        _verify_build_info(tool, path)
    if not tool.version_args:
        return
    result = subprocess.run(
        [str(path), *tool.version_args], capture_output=True, text=True, timeout=60
    )
    said = result.stdout + result.stderr
    expected = tool.expand(tool.version_match)
    if result.returncode != 0 or expected not in said:
        raise ToolError(
            f"{path} {' '.join(tool.version_args)} should mention {expected!r} "
            f"(exit status {result.returncode}):\n{_tail(said)}"
        )


def _verify_build_info(tool: Tool, path: Path) -> None:
    """The binary's Go build info names the pinned module version of its package."""
    result = subprocess.run(
        ["go", "version", "-m", str(path)], capture_output=True, text=True, timeout=60
    )
    for line in result.stdout.splitlines():
        fields = line.split()
        # Go records the module of the built package as "mod", others as "dep".
        if len(fields) >= 3 and fields[0] in ("mod", "dep") and _within(tool.package, fields[1]):
            if fields[2] == tool.version:
                return
            raise ToolError(f"{path} was built from {fields[1]} {fields[2]}, not {tool.version}")
    raise ToolError(f"{path}: go version -m names no module of {tool.package}:\n{result.stderr}")


def _within(package: str, module: str) -> bool:
    return package == module or package.startswith(module + "/")


def _module_dir(tool: Tool) -> Path:
    return HERE / tool.module_dir


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install_go(tool: Tool) -> Path:
    final = tool_dir(tool)
    binary = final / tool.binary
    with _locked(cache_root() / f".{tool.name}-{tool.version}.lock"):
        if binary.is_file() and _recipe(final) == _expected_recipe(tool):
            return binary
        if shutil.which("go") is None:
            raise ToolError(f"Go is needed to build {tool.name} (go >= 1.25)")
        started = time.monotonic()
        _log(f"building {tool.package}@{tool.version} (once per machine; may take minutes)")
        cache_root().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{tool.name}-", dir=cache_root()))
        try:
            seconds = _build_into(tool, staging, started)
            if final.exists():
                shutil.rmtree(final)
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _log(f"installed {tool.name} {tool.version} in {seconds} s: {binary}")
        return binary


def _build_into(tool: Tool, staging: Path, started: float) -> float:
    env = dict(
        os.environ,
        GOBIN=str(staging),
        CGO_ENABLED="0",
        GOFLAGS="-buildvcs=false",
        # Build with this machine's Go; never fetch another toolchain.
        GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN", "local"),
    )
    if tool.kind == "gomod":
        # Inside our wrapper module: its go.mod and go.sum decide every version.
        command = ["go", "build", "-trimpath", "-mod=readonly", "-o", str(staging / tool.binary)]
        target, cwd = tool.package, _module_dir(tool)
    else:
        command = ["go", "install", "-trimpath"]
        target, cwd = f"{tool.package}@{tool.version}", staging
    if tool.tags:
        command += ["-tags", ",".join(tool.tags)]
    if tool.ldflags:
        command += ["-ldflags", " ".join(tool.expand(flag) for flag in tool.ldflags)]
    command.append(target)
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=GO_BUILD_TIMEOUT
    )
    if result.returncode != 0:
        raise ToolError(
            f"{' '.join(command[:2])} {target} failed:\n" + _tail(result.stdout + result.stderr)
        )
    verify(tool, staging / tool.binary)
    seconds = round(time.monotonic() - started, 1)
    record = {
        "package": tool.package,
        "version": tool.version,
        "go": _go_version(),
        "install_seconds": seconds,
        **_expected_recipe(tool),
    }
    (staging / "installed.json").write_text(json.dumps(record, indent=2) + "\n")
    return seconds


def _expected_recipe(tool: Tool) -> dict[str, object]:
    """What decides the binary: a changed recipe in tools.toml builds it again."""
    recipe: dict[str, object] = {
        "package": tool.package,
        "tags": list(tool.tags),
        "ldflags": [tool.expand(f) for f in tool.ldflags],
    }
    if tool.kind == "gomod":
        # A changed wrapper go.mod or go.sum builds it again.
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            digest.update((_module_dir(tool) / name).read_bytes())
        recipe["module"] = digest.hexdigest()
    return recipe


def _recipe(directory: Path) -> dict[str, object] | None:
    try:
        record = json.loads((directory / "installed.json").read_text())
    except (OSError, ValueError):
        return None
    recipe = {key: record.get(key) for key in ("package", "tags", "ldflags")}
    if "module" in record:
        recipe["module"] = record["module"]
    return recipe


def _go_version() -> str:
    result = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True)
    return result.stdout.strip()


def _dpkg_version(package: str) -> str | None:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status} ${Version}", package],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not result.stdout.startswith("install ok installed "):
        return None
    return result.stdout.rsplit(" ", 1)[-1]


_apt_updated: list[bool] = []


def _install_apt(tool: Tool) -> Path:
    path = tool_path(tool)
    if _dpkg_version(tool.package) == tool.version and path.is_file():
        return path
    if os.geteuid() != 0:
        raise ToolError(
            f"{tool.name} needs the Debian package {tool.package}={tool.version}: "
            f"run `apt-get install {tool.package}={tool.version}` as root"
        )
    started = time.monotonic()
    with _locked(cache_root() / ".apt.lock"):
        env = dict(os.environ, **APT_ENV)
        if not _apt_updated:
            result = subprocess.run(
                ["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600
            )
            if result.returncode != 0:
                raise ToolError("apt-get update failed:\n" + _tail(result.stdout + result.stderr))
            _apt_updated.append(True)
        command = [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "--allow-downgrades",
            f"{tool.package}={tool.version}",
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise ToolError(
                f"apt-get install {tool.package}={tool.version} failed:\n"
                + _tail(result.stdout + result.stderr)
            )
    _log(f"installed {tool.name} {tool.version} in {time.monotonic() - started:.1f} s: {path}")
    return path


def install(name: str, tools: dict[str, Tool] | None = None) -> Path:
    """Install ``name`` if it is missing and return the path of its program."""
    tools = load_tools() if tools is None else tools
    if name not in tools:
        raise ToolError(f"unknown tool {name!r}; known: {', '.join(sorted(tools))}")
    tool = tools[name]
    if tool.kind == "gosource":
        return _download_module(tool)
    path = _install_apt(tool) if tool.kind == "apt" else _install_go(tool)
    verify(tool, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--path", action="store_true", help="print the paths, install nothing")
    parser.add_argument("--list", action="store_true", help="list the pinned tools")
    args = parser.parse_args(argv)
    tools = load_tools()
    if args.list:
        for tool in tools.values():
            print(f"{tool.name}\t{tool.kind}\t{tool.package}\t{tool.version}")
        return 0
    if not args.names:
        parser.error("name at least one tool (--list shows them)")
    unknown = [name for name in args.names if name not in tools]
    if unknown:
        parser.error(f"unknown tool {unknown[0]!r}; known: {', '.join(sorted(tools))}")
    try:
        for name in args.names:
            print(tool_path(tools[name]) if args.path else install(name, tools))
    except ToolError as error:
        print(f"gotools: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
