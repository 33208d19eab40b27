"""Rendering: golden output per format, escaping, flattening, limits, determinism."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstrata.domain.documents import load_json, load_yaml
from kstrata.domain.jsonvalue import JSONObject
from kstrata.domain.render import (
    MAX_CONFIGMAP_BYTES,
    OutputSpec,
    env_value,
    properties_escape,
    render,
    render_text,
)
from kstrata.errors import RenderError

CONFIG: dict[str, Any] = {
    "server": {"port": 8080, "host": "0.0.0.0", "tls": {"enabled": True}},
    "ratio": 0.25,
    "hosts": ["a.example.com", "b.example.com"],
    "greeting": "hello world",
    "notes": "line one\nline two\n",
    "optional": None,
    "debug": False,
}

GOLDEN_YAML = """\
debug: false
greeting: hello world
hosts:
- a.example.com
- b.example.com
notes: |
  line one
  line two
optional: null
ratio: 0.25
server:
  host: 0.0.0.0
  port: 8080
  tls:
    enabled: true
"""

GOLDEN_JSON = """\
{
  "debug": false,
  "greeting": "hello world",
  "hosts": [
    "a.example.com",
    "b.example.com"
  ],
  "notes": "line one\\nline two\\n",
  "optional": null,
  "ratio": 0.25,
  "server": {
    "host": "0.0.0.0",
    "port": 8080,
    "tls": {
      "enabled": true
    }
  }
}
"""

GOLDEN_ENV = """\
DEBUG=false
GREETING='hello world'
HOSTS_0=a.example.com
HOSTS_1=b.example.com
NOTES="line one\\nline two\\n"
OPTIONAL=
RATIO=0.25
SERVER_HOST=0.0.0.0
SERVER_PORT=8080
SERVER_TLS_ENABLED=true
"""

GOLDEN_PROPERTIES = """\
debug=false
greeting=hello world
hosts[0]=a.example.com
hosts[1]=b.example.com
notes=line one\\nline two\\n
optional=
ratio=0.25
server.host=0.0.0.0
server.port=8080
server.tls.enabled=true
"""


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("yaml", GOLDEN_YAML),
        ("json", GOLDEN_JSON),
        ("env", GOLDEN_ENV),
        ("properties", GOLDEN_PROPERTIES),
    ],
)
def test_golden_output(fmt: Any, expected: str) -> None:
    assert render_text(CONFIG, fmt) == expected


@pytest.mark.parametrize(
    ("fmt", "key"),
    [
        ("yaml", "config.yaml"),
        ("json", "config.json"),
        ("env", "config.env"),
        ("properties", "config.properties"),
    ],
)
def test_default_key_per_format_and_digest_of_canonical_data(fmt: Any, key: str) -> None:
    rendered = render(CONFIG, OutputSpec(format=fmt))
    assert rendered.key == key
    assert list(rendered.data) == [key]
    canonical = json.dumps(rendered.data, sort_keys=True, separators=(",", ":"))
    assert rendered.digest == hashlib.sha256(canonical.encode()).hexdigest()
    assert rendered.size == len(key) + len(rendered.data[key].encode())


def test_explicit_key_is_used() -> None:
    assert list(render(CONFIG, OutputSpec(format="json", key="app.json")).data) == ["app.json"]


def test_yaml_and_json_output_round_trips() -> None:
    assert load_yaml(render_text(CONFIG, "yaml")) == CONFIG
    assert load_json(render_text(CONFIG, "json")) == CONFIG


def test_yaml_quotes_strings_that_would_read_back_as_other_types() -> None:
    config: JSONObject = {"a": "yes", "b": "2024-01-01", "c": "123", "d": "null", "e": "ünï"}
    text = render_text(config, "yaml")
    assert text == "a: 'yes'\nb: '2024-01-01'\nc: '123'\nd: 'null'\ne: ünï\n"
    assert yaml.safe_load(text) == config


def test_yaml_never_folds_long_lines_nor_emits_anchors() -> None:
    shared: JSONObject = {"k": "v"}
    text = render_text({"long": "word " * 100, "x": shared, "y": shared}, "yaml")
    assert "\n" not in text.split("long: ")[1].split("\nx:")[0]
    assert "&" not in text
    assert "*" not in text


# --- env ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("plain-value_1.2/3:4@5+6,7=", "plain-value_1.2/3:4@5+6,7="),
        ("with space", "'with space'"),
        ("$HOME and `cmd`", "'$HOME and `cmd`'"),
        ('say "hi"', "'say \"hi\"'"),
        ("it's", '"it\'s"'),
        ("back\\slash", '"back\\\\slash"'),
        ("two\nlines\r\tend", '"two\\nlines\\r\\tend"'),
        ('it\'s "q"', '"it\'s \\"q\\""'),
        ("ünï", "'ünï'"),
    ],
)
def test_env_value_quoting(text: str, expected: str) -> None:
    assert env_value(text) == expected


def test_env_rejects_control_characters_by_path_not_value() -> None:
    with pytest.raises(RenderError) as caught:
        render_text({"a": {"b": "SECRET\x01"}}, "env")
    assert "$.a.b" in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_env_keys_are_upper_cased_and_sanitised() -> None:
    config: JSONObject = {"log-level": "info", "9lives": 1, "é": {"x.y": [True]}, "": 2}
    assert render_text(config, "env") == "_=2\n_9LIVES=1\nLOG_LEVEL=info\n__X_Y_0=true\n"


def test_empty_objects_and_arrays_produce_no_lines() -> None:
    assert render_text({"a": {}, "b": [], "c": 1}, "env") == "C=1\n"
    assert render_text({"a": {}, "b": [], "c": 1}, "properties") == "c=1\n"


def test_floats_render_canonically() -> None:
    config: JSONObject = {"a": 1.0, "b": 1e20, "c": -0.5, "d": 10, "e": 2.5e-7}
    assert render_text(config, "env") == "A=1.0\nB=1e+20\nC=-0.5\nD=10\nE=2.5e-07\n"


# --- properties -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "is_key", "expected"),
    [
        ("a b", True, "a\\ b"),
        ("a b", False, "a b"),
        (" lead", False, "\\ lead"),
        ("k=v:w#x!y", True, "k\\=v\\:w\\#x\\!y"),
        ("k=v:w#x!y", False, "k\\=v\\:w\\#x\\!y"),
        ("back\\slash", False, "back\\\\slash"),
        ("t\tn\nr\rf\f", False, "t\\tn\\nr\\rf\\f"),
        ("é☃", False, "\\u00E9\\u2603"),
        ("😀", False, "\\uD83D\\uDE00"),
        ("\x01\x7f", False, "\\u0001\\u007F"),
        ("~{}|", False, "~{}|"),
    ],
)
def test_properties_escaping_matches_java_store(text: str, is_key: bool, expected: str) -> None:
    assert properties_escape(text, is_key=is_key) == expected


def test_properties_lines_are_ascii() -> None:
    text = render_text({"ключ": "значение 😀", "a": {"b c": [" x"]}}, "properties")
    assert text == (
        "a.b\\ c[0]=\\ x\n\\u043A\\u043B\\u044E\\u0447=\\u0437\\u043D\\u0430\\u0447"
        "\\u0435\\u043D\\u0438\\u0435 \\uD83D\\uDE00\n"
    )
    text.encode("ascii")


# --- flattening and collisions --------------------------------------------------


def test_flatten_keys_adds_env_style_entries() -> None:
    rendered = render(
        {"db": {"host": "h", "port": 5432}, "tags": ["a b"], "x": None},
        OutputSpec(format="yaml", flatten_keys=True),
    )
    assert rendered.data == {
        "DB_HOST": "h",
        "DB_PORT": "5432",
        "TAGS_0": "a b",  # entries are literal values: no dotenv quoting
        "X": "",
        "config.yaml": "db:\n  host: h\n  port: 5432\ntags:\n- a b\nx: null\n",
    }


@pytest.mark.parametrize("fmt", ["env", "yaml"])
def test_flattened_collision_names_both_paths(fmt: Any) -> None:
    config: JSONObject = {"a_b": "SECRET1", "a": {"b": "SECRET2"}}
    with pytest.raises(RenderError) as caught:
        render(config, OutputSpec(format=fmt, flatten_keys=True))
    message = str(caught.value)
    assert "A_B" in message
    assert "$.a.b" in message
    assert "$.a_b" in message
    assert "SECRET" not in message


def test_properties_collision_names_both_paths() -> None:
    with pytest.raises(RenderError, match=r"a\.b is produced by both \$\.a\.b and \$\['a\.b'\]"):
        render_text({"a.b": 1, "a": {"b": 2}}, "properties")


def test_flattened_key_colliding_with_the_file_key_is_an_error() -> None:
    with pytest.raises(RenderError, match=r"collides with spec\.output\.key"):
        render({"app": 1}, OutputSpec(format="yaml", key="APP", flatten_keys=True))


def test_flattened_key_over_253_characters_is_an_error() -> None:
    with pytest.raises(RenderError, match="longer than 253"):
        render({"k" * 254: 1}, OutputSpec(flatten_keys=True))


def test_invalid_output_key_is_an_error() -> None:
    with pytest.raises(RenderError, match="not a valid ConfigMap key"):
        render({}, OutputSpec(key="bad/key"))


# --- the 1 MiB limit --------------------------------------------------------------


def test_size_limit_is_exact_and_message_has_no_content() -> None:
    overhead = len("config.env") + len("A=\n")
    fits = "x" * (MAX_CONFIGMAP_BYTES - overhead)
    rendered = render({"a": fits}, OutputSpec(format="env"))
    assert rendered.size == MAX_CONFIGMAP_BYTES
    with pytest.raises(RenderError) as caught:
        render({"a": fits + "x"}, OutputSpec(format="env"))
    message = str(caught.value)
    assert str(MAX_CONFIGMAP_BYTES + 1) in message
    assert str(MAX_CONFIGMAP_BYTES) in message
    assert "xxxx" not in message


def test_size_counts_utf8_bytes() -> None:
    rendered = render({"a": "é" * 10}, OutputSpec(format="json"))
    assert rendered.size == len("config.json") + len(rendered.data["config.json"].encode())
    assert rendered.size > len("config.json") + len(rendered.data["config.json"])


def test_non_json_value_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="not JSON"):
        render_text({"a": float("nan")}, "json")


# --- determinism ------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
configs = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=15,
    ),
    max_size=5,
)


def reordered(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: reordered(item, rng) for key, item in items}
    if isinstance(value, list):
        return [reordered(item, rng) for item in value]
    return value


def outcome(config: dict[str, Any], output: OutputSpec) -> tuple[str, Any]:
    try:
        rendered = render(config, output)
    except RenderError as exc:
        return ("error", str(exc))
    return ("ok", (rendered.data, rendered.digest, rendered.size))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    configs,
    st.randoms(use_true_random=False),
    st.sampled_from(["yaml", "json", "env", "properties"]),
)
def test_key_order_never_changes_bytes_or_digest(
    config: dict[str, Any], rng: random.Random, fmt: Any
) -> None:
    output = OutputSpec(format=fmt, flatten_keys=fmt == "yaml")
    assert outcome(config, output) == outcome(reordered(config, rng), output)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_yaml_and_json_read_back_to_the_same_config(config: dict[str, Any]) -> None:
    assert load_yaml(render_text(config, "yaml")) == config
    assert load_json(render_text(config, "json")) == config


# --- escaping round trips -----------------------------------------------------------


def java_properties_unescape(text: str) -> str:
    """What ``java.util.Properties.load`` makes of one escaped key or value."""
    units: list[int] = []
    index = 0
    while index < len(text):
        ch = text[index]
        if ch != "\\":
            units.append(ord(ch))
            index += 1
            continue
        following = text[index + 1]
        if following == "u":
            units.append(int(text[index + 2 : index + 6], 16))
            index += 6
            continue
        units.append(ord({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(following, following)))
        index += 2
    raw = b"".join(unit.to_bytes(2, "little") for unit in units)
    return raw.decode("utf-16-le", "surrogatepass")


def dotenv_unquote(text: str) -> str:
    """The documented reading of a rendered env value."""
    if text.startswith("'"):
        assert text.endswith("'")
        return text[1:-1]
    if not text.startswith('"'):
        return text
    assert text.endswith('"')
    escapes = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
    out, index, body = [], 0, text[1:-1]
    while index < len(body):
        if body[index] == "\\":
            out.append(escapes[body[index + 1]])
            index += 2
        else:
            assert body[index] != '"'
            out.append(body[index])
            index += 1
    return "".join(out)


def java_properties_line(line: str) -> tuple[str, str]:
    """Split one logical line the way ``Properties.load`` does, then unescape."""
    index = 0
    while index < len(line) and line[index] not in "=: \t\f":
        index += 2 if line[index] == "\\" else 1
    key, rest = line[:index], line[index:]
    rest = rest.lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return java_properties_unescape(key), java_properties_unescape(rest)


@settings(max_examples=150, deadline=None)
@given(st.text(), st.text())
def test_properties_lines_read_back_as_java_would(key: str, value: str) -> None:
    line = f"{properties_escape(key, is_key=True)}={properties_escape(value, is_key=False)}"
    assert line.isascii()
    assert "\n" not in line
    assert "\r" not in line
    assert java_properties_line(line) == (key, value)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")))
def test_env_value_round_trips_or_refuses_control_characters(text: str) -> None:
    portable = all((ord(ch) >= 0x20 and ord(ch) != 0x7F) or ch in "\n\r\t" for ch in text)
    if not portable:
        with pytest.raises(RenderError):
            env_value(text)
        return
    quoted = env_value(text)
    assert "\n" not in quoted
    assert dotenv_unquote(quoted) == text
