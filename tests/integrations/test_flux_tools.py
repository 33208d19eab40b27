"""The Flux wrapper modules under tools/gotools/flux/ pin what tools.toml says.

tools.toml names the version the installer checks in the built binary's Go
build info; the wrapper module's go.mod is what really decides it.  This fast
test keeps the two, and the replace directives copied from Flux's own go.mod,
from drifting apart without a build.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

GOTOOLS = Path(__file__).resolve().parents[2] / "tools" / "gotools"
sys.path.insert(0, str(GOTOOLS))
import install  # noqa: E402

FLUX = ("flux-source-controller", "flux-kustomize-controller")


@pytest.mark.parametrize("name", FLUX)
def test_wrapper_module_requires_the_pinned_version(name: str) -> None:
    tool = install.load_tools()[name]
    assert tool.kind == "gomod"
    go_mod = (GOTOOLS / tool.module_dir / "go.mod").read_text()
    assert f"\ntool {tool.package}\n" in go_mod
    required = re.search(
        rf"^\s*(?:require\s+)?{re.escape(tool.package)} (v\S+)(?: // indirect)?$", go_mod, re.M
    )
    assert required is not None
    assert required.group(1) == tool.version
    assert (GOTOOLS / tool.module_dir / "go.sum").is_file()
    # Flux's own go-digest replace (BLAKE3) is mirrored; no local-path replace is.
    assert "replace github.com/opencontainers/go-digest =>" in go_mod
    assert not re.search(r"=>\s*\.", go_mod)


def test_a_gomod_tool_without_module_dir_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "tools.toml"
    manifest.write_text('[x]\nkind = "gomod"\npackage = "example.com/x"\nversion = "v1.0.0"\n')
    with pytest.raises(install.ToolError, match="kind gomod needs module_dir"):
        install.load_tools(manifest)


def test_a_changed_wrapper_module_builds_again() -> None:
    tool = install.load_tools()["flux-source-controller"]
    recipe = install._expected_recipe(tool)
    assert isinstance(recipe["module"], str)
    assert len(recipe["module"]) == 64
    other = install.Tool(**{**tool.__dict__, "module_dir": "flux/kustomize-controller"})
    assert install._expected_recipe(other)["module"] != recipe["module"]
