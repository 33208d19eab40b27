"""`kstrata import -f`: offline, exact manifests, proven round trips, lossy inputs refused."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstrata.app.profile_import import import_files
from kstrata.cli.main import main
from kstrata.domain.merge import merge_diff, merge_patch, null_member
from kstrata.domain.render import render_text

CANARY = "canary-4e1b-looks-secret"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def canonical(value: Any) -> str:
    """JSON text that tells true, 1 and 1.0 (and 0.0 and -0.0) apart, unlike ==."""
    return json.dumps(value, sort_keys=True)


BASE = "db:\n  host: localhost\n  pool: 5\nport: 8080\n"


def test_overlays_become_environments_golden(tmp_path: Path) -> None:
    base = write(tmp_path, "app.yaml", BASE)
    prod = write(tmp_path, "prod.yaml", "# prod differs only here\ndb: {host: db.prod}\n")
    staging = write(tmp_path, "staging.json", '{"port": 9090, "db": {"pool": null}}')
    code, out, err = run(
        "import", "-f", str(base), "--env", f"prod={prod}", "--env", f"staging={staging}"
    )
    assert (code, err) == (0, "")
    assert out == (
        "apiVersion: kstrata.dev/v1alpha1\n"
        "kind: ConfigProfile\n"
        "metadata:\n"
        "  name: app\n"
        "spec:\n"
        "  base:\n"
        "    db:\n"
        "      host: localhost\n"
        "      pool: 5\n"
        "    port: 8080\n"
        "  environments:\n"
        "    prod:\n"
        "      db:\n"
        "        host: db.prod\n"
        "    staging:\n"
        "      db:\n"
        "        pool: null\n"
        "      port: 9090\n"
        "  output:\n"
        "    format: yaml\n"
        "    key: app.yaml\n"
    )
    # The manifest renders through the ordinary offline path as intended:
    # overlays merge-patch the base, and null deletes.
    manifest = write(tmp_path, "profile.yaml", out)
    code, rendered, _ = run("render", "-f", str(manifest), "--env", "staging")
    assert (code, rendered) == (0, "db:\n  host: localhost\nport: 9090\n")
    # dev (the default environment) has no overlay: the base, as it was.
    code, rendered, _ = run("render", "-f", str(manifest), "--env", "dev")
    assert (code, rendered) == (0, BASE)


def test_full_files_become_minimal_overlays_golden(tmp_path: Path) -> None:
    base = write(tmp_path, "app.yaml", BASE)
    prod_text = "db:\n  host: db.prod\n  pool: 5\nport: 8080\ntls: true\n"
    dev_text = "db:\n  host: localhost\nport: 8080\n"
    prod = write(tmp_path, "prod.yaml", prod_text)
    dev = write(tmp_path, "dev.yaml", dev_text)
    code, out, err = run(
        "import",
        "-f",
        str(base),
        "--full",
        "--env",
        f"prod={prod}",
        "--env",
        f"dev={dev}",
        "--name",
        "web",
        "-n",
        "team-a",
    )
    assert (code, err) == (0, "")
    assert out == (
        "apiVersion: kstrata.dev/v1alpha1\n"
        "kind: ConfigProfile\n"
        "metadata:\n"
        "  name: web\n"
        "  namespace: team-a\n"
        "spec:\n"
        "  base:\n"
        "    db:\n"
        "      host: localhost\n"
        "      pool: 5\n"
        "    port: 8080\n"
        "  environments:\n"
        "    dev:\n"
        "      db:\n"
        "        pool: null\n"
        "    prod:\n"
        "      db:\n"
        "        host: db.prod\n"
        "      tls: true\n"
        "  output:\n"
        "    format: yaml\n"
        "    key: app.yaml\n"
    )
    manifest = write(tmp_path, "profile.yaml", out)
    for environment, text in (("prod", prod_text), ("dev", dev_text)):
        assert run("render", "-f", str(manifest), "--env", environment) == (0, text, "")
    # An environment the profile does not declare is a mistake, not "the base".
    code, out, err = run("render", "-f", str(manifest), "--env", "prodd")
    assert (code, out) == (2, "")
    assert err == (
        "error: environment prodd is not declared by ConfigProfile web (did you mean prod?); "
        "declared: dev, prod\n"
    )


def test_env_and_properties_files_round_trip(tmp_path: Path) -> None:
    env = write(tmp_path, "app.env", "LOG_LEVEL=info\nMOTD='hello world'\nPORT=8080\n")
    result = import_files(env)
    assert "    PORT: '8080'\n" in result.manifest
    assert "    format: env\n    key: app.env\n" in result.manifest

    nested = write(tmp_path, "app.properties", "hosts[0]=a\nhosts[1]=b\nserver.port=80\n")
    result = import_files(nested)
    # Nested where the keys form one tree: `get --key server.port` and `set` then work.
    assert "    hosts:\n    - a\n    - b\n    server:\n      port: '80'\n" in result.manifest

    # `a` and `a.b` cannot both be nodes of one tree: flat keys reproduce it instead.
    flat = write(tmp_path, "flat.properties", "a=1\na.b=2\n")
    result = import_files(flat)
    assert "  base:\n    a: '1'\n    a.b: '2'\n" in result.manifest


def test_an_empty_overlay_file_declares_the_environment(tmp_path: Path) -> None:
    base = write(tmp_path, "app.yaml", BASE)
    empty = write(tmp_path, "qa.yaml", "# nothing differs in qa\n")
    result = import_files(base, [("qa", empty)])
    assert "  environments:\n    qa: {}\n" in result.manifest


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("app.yaml", f"# owner: team a\nport: 8080\nsecret: {CANARY}\n", "it has comments"),
        ("app.yaml", f"port: 8080\n\nsecret: {CANARY}\n", "it has blank lines"),
        ("app.yaml", f"secret: {CANARY}\nport: 8080\n", "sorted order"),
        ("app.yaml", f"port: 8080\nsecret: {CANARY}", "does not end with a newline"),
        ("app.json", f'{{"port": 8080, "secret": "{CANARY}"}}\n', "formatting differs"),
        ("app.env", f"port=8080\nSECRET={CANARY}\n", "line 1 is not in kstrata's env form"),
        ("app.properties", f"port: 8080\nsecret={CANARY}\n", "formatting differs"),
    ],
)
def test_files_that_would_not_come_back_byte_for_byte_are_refused(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    path = write(tmp_path, name, text)
    code, out, err = run("import", "-f", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {path} cannot be reproduced byte for byte: ")
    assert reason in err
    assert "first difference at line" in err
    assert CANARY not in err


def test_a_lossy_full_environment_file_is_refused_naming_it(tmp_path: Path) -> None:
    base = write(tmp_path, "app.yaml", BASE)
    prod = write(tmp_path, "prod.yaml", f"db:\n  host: {CANARY}\n  pool: 5\nport: 8080  # hi\n")
    code, out, err = run("import", "-f", str(base), "--full", "--env", f"prod={prod}")
    assert (code, out) == (1, "")
    assert f"{prod} cannot be reproduced byte for byte: it has comments" in err
    assert "line 4" in err
    assert CANARY not in err


def test_null_leaves_are_refused_with_their_path(tmp_path: Path) -> None:
    base = write(tmp_path, "app.yaml", BASE)
    prod = write(tmp_path, "prod.yaml", "db:\n  host: null\n  pool: 5\nport: 8080\n")
    code, out, err = run("import", "-f", str(base), "--full", "--env", f"prod={prod}")
    assert (code, out) == (1, "")
    assert f"{prod}: $.db.host is null" in err
    assert "merge patch deletes" in err

    in_base = write(tmp_path, "nulls.yaml", "a:\n  b: null\n")
    code, out, err = run("import", "-f", str(in_base))
    assert (code, out) == (1, "")
    assert "$.a.b is null" in err


def test_full_needs_one_format_for_every_environment(tmp_path: Path) -> None:
    base = write(tmp_path, "app.yaml", BASE)
    prod = write(tmp_path, "prod.json", '{\n  "port": 1\n}\n')
    code, _, err = run("import", "-f", str(base), "--full", "--env", f"prod={prod}")
    assert code == 1
    assert "is json but the base is yaml" in err


def test_several_yaml_documents_are_not_one_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "app.yaml", "a: 1\n---\nb: 2\n")
    code, _, err = run("import", "-f", str(path))
    assert code == 1
    assert "expected one YAML document" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["import"],
        ["import", "configmap/x", "-f", "{d}/app.yaml"],
        ["import", "-f", "{d}/app.yaml", "--env", "prod"],
        ["import", "-f", "{d}/app.yaml", "--env", "Prod={d}/p.yaml"],
        ["import", "-f", "{d}/app.yaml", "--env", "a={d}/a.yaml", "--env", "a={d}/b.yaml"],
        ["import", "-f", "{d}/APP.yaml"],
        ["import", "-f", "{d}/app.txt"],
        ["import", "-f", "{d}/missing.yaml"],
        ["import", "-f", "{d}/app.yaml", "--env", "prod={d}/missing.yaml"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, argv: list[str]) -> None:
    for name in ("app.yaml", "APP.yaml", "app.txt", "a.yaml", "b.yaml", "p.yaml"):
        write(tmp_path, name, "a: 1\n")
    code, out, err = run(*(arg.format(d=tmp_path) for arg in argv))
    assert (code, out) == (2, "")
    assert err.startswith("error: ")


def test_import_files_needs_neither_a_cluster_nor_the_kubernetes_client(tmp_path: Path) -> None:
    base = write(tmp_path, "app.yaml", BASE)
    probe = (
        "import sys, io\n"
        "from kstrata.cli.main import main\n"
        f"assert main(['--kubeconfig', '/nonexistent', 'import', '-f', {str(base)!r}],"
        " out=io.StringIO()) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --- merge_diff: the inverse of RFC 7386 merge_patch ------------------------

SCALARS = (
    st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
KEYS = st.text(max_size=4)


def json_values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4)
        ),
        max_leaves=16,
    )


ANY_OBJECT = st.dictionaries(KEYS, json_values(st.none() | SCALARS), max_size=5)
NULL_FREE_OBJECT = st.dictionaries(KEYS, json_values(SCALARS), max_size=5)


@given(base=ANY_OBJECT, target=NULL_FREE_OBJECT)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_merge_patch_of_the_diff_is_the_target(base: Any, target: Any) -> None:
    patch = merge_diff(base, target)
    assert canonical(merge_patch(base, patch)) == canonical(target)
    # Minimal: keys whose values already match are left out.
    assert isinstance(patch, dict)
    for key in patch:
        assert (
            key not in base or key not in target or canonical(base[key]) != canonical(target[key])
        )


@given(config=NULL_FREE_OBJECT)
def test_the_diff_of_equal_objects_is_empty(config: Any) -> None:
    assert merge_diff(config, json.loads(json.dumps(config))) == {}


def test_merge_diff_tells_booleans_integers_and_floats_apart() -> None:
    assert merge_diff({"a": 1}, {"a": True}) == {"a": True}
    assert merge_diff({"a": 1}, {"a": 1.0}) == {"a": 1.0}
    assert canonical(merge_diff({"a": 0.0}, {"a": -0.0})) == '{"a": -0.0}'


def test_null_member_finds_object_members_but_not_array_items() -> None:
    assert null_member({"a": {"b": None}}) == "$.a.b"
    assert null_member({"a": [None, {"b": None}]}) is None
    assert null_member({"x.y": None}) == "$['x.y']"


READABLE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -_", min_size=1, max_size=8)
CONFIG_SCALARS = st.booleans() | st.integers(-1000, 1000) | READABLE
CONFIGS = st.dictionaries(
    st.text(alphabet="abcdefgh", min_size=1, max_size=3),
    st.recursive(
        CONFIG_SCALARS,
        lambda children: (
            st.lists(children, max_size=2)
            | st.dictionaries(
                st.text(alphabet="abcdefgh", min_size=1, max_size=3), children, max_size=3
            )
        ),
        max_leaves=8,
    ),
    max_size=4,
)


@given(base=CONFIGS, prod=CONFIGS, dev=CONFIGS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_full_import_reproduces_every_canonical_file(
    tmp_path: Path, base: Any, prod: Any, dev: Any
) -> None:
    files = {}
    for name, config in (("app", base), ("prod", prod), ("dev", dev)):
        files[name] = write(tmp_path, f"{name}.yaml", render_text(config, "yaml"))
    result = import_files(files["app"], [("prod", files["prod"]), ("dev", files["dev"])], full=True)
    manifest = write(tmp_path, "profile.yaml", result.manifest)
    for environment, config in (("prod", prod), ("dev", dev)):
        code, out, err = run("render", "-f", str(manifest), "--env", environment)
        assert (code, err) == (0, "")
        assert out == render_text(config, "yaml")
    # Without a dev overlay the default environment renders the base exactly.
    result = import_files(files["app"], [("prod", files["prod"])], full=True)
    manifest = write(tmp_path, "profile.yaml", result.manifest)
    assert run("render", "-f", str(manifest), "--env", "dev") == (
        0,
        render_text(base, "yaml"),
        "",
    )
