"""The fuzz targets: one function per untrusted-input surface, bytes in.

Each target feeds one input to kstrata's public parsing entry points and
lets through only the errors those entry points document (classes of
:mod:`kstrata.errors`).  Any other exception escapes, and the fuzzer records
it as a crash: a ``KeyError`` or ``RecursionError`` from hostile input is a
bug, whatever the input.  Where a cheap property holds for every input
(a sealed value opens to itself, rendered JSON loads back as the same
configuration), the target checks that too and raises ``AssertionError``.

The first byte of an input picks a mode within the target, so one corpus
covers several entry points that read the same kind of data.

Everything kstrata imports lazily (the jsonschema path, the RE2 translator,
the import readers) is imported here at the top, so the harness can
instrument it for coverage (:mod:`fuzz.harness`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import yaml

from kstrata.crypto import (
    KeyPair,
    KeyRing,
    PublicKeyBundle,
    Scope,
    SealingContext,
    Suite,
    parse_token,
    seal,
    seal_multi,
)
from kstrata.domain import readback, regex, schema, schema_keywords
from kstrata.domain.documents import load_json, load_yaml_documents
from kstrata.domain.jsonvalue import JSONValue, Limits
from kstrata.domain.merge import merge_diff, merge_layers, merge_patch, null_member, same_json
from kstrata.domain.render import FORMATS, OutputFormat, OutputSpec, env_key, render, render_text
from kstrata.domain.secret_template import (
    Reference,
    check_references,
    parse_template_data,
    render_data,
)
from kstrata.errors import (
    InputLimitError,
    InvalidInputError,
    InvalidSchemaError,
    SealingError,
    TemplateError,
    UnsealError,
)
from kstrata.watch import parse_auto, parse_env, parse_properties

# Referenced so the lazily used modules stay imported (and instrumented).
_LAZY: Final = (schema_keywords, regex)

Target = Callable[[bytes], None]

# --- sealing tokens --------------------------------------------------------

_CREATED: Final = datetime(2026, 1, 1, tzinfo=UTC)
#: Fixed key material: the committed token seeds are sealed to these keys
#: (tests/fuzz/seeds.py), so mutations of them reach HPKE and the AEAD.
KEY_X25519: Final = KeyPair(Suite.X25519, bytes(range(1, 33)), _CREATED)
KEY_HYBRID: Final = KeyPair(Suite.MLKEM768_X25519, bytes(range(2, 98)), _CREATED)
RING: Final = KeyRing([KEY_X25519, KEY_HYBRID])
CONTEXT: Final = SealingContext.bind("strict", item="password", namespace="team-a", name="db")
OTHER_CONTEXT: Final = SealingContext.bind("strict", item="password", namespace="team-b", name="db")
_SEALING_ERRORS: Final = (SealingError, InputLimitError)


def _text(data: bytes) -> str:
    # Lone surrogates included: a JSON document can carry them into a spec.
    return data.decode("utf-8", "surrogateescape")


def _open_any(token: str, context: SealingContext) -> None:
    try:
        header = parse_token(token)
    except _SEALING_ERRORS:
        return
    assert header.key_ids, "a parsed token names at least one key"
    try:
        opened = RING.open(token, context)
    except _SEALING_ERRORS:
        return
    assert isinstance(opened, bytes)
    assert RING.key_id_for(token) in header.key_ids


def _fuzzed_context(data: bytes) -> tuple[SealingContext | None, str]:
    # scope byte, then item, namespace, name and token split at NUL.
    scopes = list(Scope)
    scope = scopes[data[0] % len(scopes)] if data else Scope.STRICT
    parts = _text(data[1:]).split("\x00", 3)
    while len(parts) < 4:
        parts.insert(0, "x")
    item, namespace, name, token = parts
    try:
        context = SealingContext.bind(scope, item=item, namespace=namespace, name=name)
    except _SEALING_ERRORS:
        return None, token
    return context, token


def fuzz_token(data: bytes) -> None:
    """Token parsing and opening, key bundles and key entries."""
    if not data:
        return
    mode, payload = data[0] % 5, data[1:]
    if mode == 0:
        _open_any(_text(payload), CONTEXT)
    elif mode == 1:
        context, token = _fuzzed_context(payload)
        if context is not None:
            _open_any(token, context)
    elif mode == 2:
        _seal_round_trip(payload)
    elif mode == 3:
        try:
            bundle = PublicKeyBundle.parse(payload)
        except _SEALING_ERRORS:
            return
        again = PublicKeyBundle.parse(bundle.serialize())
        assert [k.key_id for k in again] == [k.key_id for k in bundle]
    else:
        try:
            pair = KeyPair.from_secret_entry(payload)
        except _SEALING_ERRORS:
            return
        assert KeyPair.from_secret_entry(pair.to_secret_entry()).key_id == pair.key_id


def _seal_round_trip(plaintext: bytes) -> None:
    for token in (
        seal(plaintext, KEY_X25519.public, CONTEXT),
        seal(plaintext, KEY_HYBRID.public, CONTEXT),
        seal_multi(plaintext, [KEY_HYBRID.public, KEY_X25519.public], CONTEXT),
    ):
        assert RING.open(token, CONTEXT) == plaintext
        try:
            RING.open(token, OTHER_CONTEXT)
        except UnsealError:
            pass
        else:
            raise AssertionError("a token opened under another context")


# --- YAML and JSON documents -----------------------------------------------

_SMALL: Final = Limits(max_bytes=2048, max_depth=6, max_nodes=200)
_INPUT_ERRORS: Final = (InvalidInputError,)


def _assert_json(value: object) -> None:
    # What the loaders return must be JSON: finite numbers, string keys.
    json.dumps(value, allow_nan=False)


def fuzz_documents(data: bytes) -> None:
    """YAML streams and JSON documents, with default and with small limits."""
    if not data:
        return
    mode, payload = data[0] % 4, data[1:]
    try:
        if mode == 0:
            _assert_json(load_yaml_documents(payload, source="in.yaml"))
        elif mode == 1:
            _assert_json(load_json(payload, source="in.json"))
        elif mode == 2:
            _assert_json(load_yaml_documents(payload, source="in.yaml", limits=_SMALL))
        else:
            _pure_python_agrees(payload)
    except _INPUT_ERRORS:
        return


def _pure_python_agrees(payload: bytes) -> None:
    """libyaml and the pure-Python parser build the same values when both succeed."""
    try:
        fast: Any = load_yaml_documents(payload, source="in.yaml", limits=_SMALL)
    except _INPUT_ERRORS:
        fast = None
    saved = yaml.__with_libyaml__
    setattr(yaml, "__with_libyaml__", False)  # noqa: B010 (the name is Final to mypy)
    try:
        slow = load_yaml_documents(payload, source="in.yaml", limits=_SMALL)
    finally:
        setattr(yaml, "__with_libyaml__", saved)  # noqa: B010
    _assert_json(slow)
    if fast is not None:
        assert documents_equal(fast, slow), "libyaml and pure-Python YAML disagree"


def documents_equal(left: list[JSONValue], right: list[JSONValue]) -> bool:
    return len(left) == len(right) and all(
        same_json(a, b) for a, b in zip(left, right, strict=True)
    )


# --- merge and render ------------------------------------------------------


def _layers(data: bytes) -> list[JSONValue] | None:
    try:
        return load_yaml_documents(data, source="layers.yaml")
    except _INPUT_ERRORS:
        return None


def fuzz_merge_render(data: bytes) -> None:
    """Merge patches, merge diffs and every render format on loaded documents."""
    if not data:
        return
    flags, layers = data[0], _layers(data[1:])
    if not layers:
        return
    for left, right in itertools.pairwise(layers):
        try:
            patched = merge_patch(left, right)
            patch = merge_diff(left, right)
        except _INPUT_ERRORS:
            continue
        if null_member(right) is None:
            assert same_json(merge_patch(left, patch), right), "merge_diff is not exact"
        _assert_json(patched)
    try:
        merged = merge_layers((f"layer{i}", layer) for i, layer in enumerate(layers))
    except _INPUT_ERRORS:
        return
    for fmt in FORMATS:
        try:
            rendered = render(merged, OutputSpec(format=fmt, flatten_keys=bool(flags & 1)))
        except _INPUT_ERRORS:
            continue
        assert rendered.size > 0 or not rendered.data
    _renders_back(merged)


def _renders_back(config: dict[str, JSONValue]) -> None:
    """Rendered JSON and YAML load back as the configuration they came from."""
    for fmt, load in (("json", load_json), ("yaml", load_yaml_documents)):
        try:
            text = render_text(config, fmt)  # type: ignore[arg-type]
        except _INPUT_ERRORS:
            continue
        loaded = load(text, source=f"rendered.{fmt}")
        if fmt == "yaml":
            assert isinstance(loaded, list)
            assert len(loaded) == 1
            loaded = loaded[0]
        assert same_json(loaded, config), f"rendered {fmt} does not load back the same"


# --- the schema checker ----------------------------------------------------

_SCHEMA_ERRORS: Final = (InvalidInputError,)


def fuzz_schema(data: bytes) -> None:
    """Schema compilation, validation, and the ECMA-262-to-RE2 pattern compiler."""
    if not data:
        return
    if data[0] & 1:
        _pattern(_text(data[1:]))
        return
    layers = _layers(data[1:])
    if not layers or not isinstance(layers[0], dict):
        return
    spec = layers[0]
    try:
        schema.check_schema(spec)
    except _SCHEMA_ERRORS:
        return
    for config in layers[1:]:
        try:
            violations = schema.validate(spec, config, environment="fuzz")
        except _SCHEMA_ERRORS:
            continue
        for violation in violations:
            assert isinstance(violation.path, str)
            assert isinstance(violation.message, str)
        _builtin_agrees(spec, config, bool(violations))


def _builtin_agrees(spec: dict[str, JSONValue], config: JSONValue, invalid: bool) -> None:
    """The built-in checker's verdict is jsonschema's (its documented promise)."""
    plain = json.loads(json.dumps(spec, sort_keys=True))
    if not schema._supported(plain, root=True):
        return
    reference = schema._build_jsonschema(plain)
    jsonschema_invalid = bool(schema._violations(reference, config))
    assert invalid == jsonschema_invalid, "built-in checker and jsonschema disagree"


def _pattern(text: str) -> None:
    pattern_text, _, subject = text.partition("\x00")
    try:
        pattern = regex.compile_pattern(pattern_text)
    except InvalidSchemaError:
        return
    assert isinstance(pattern.search(subject), bool)


# --- .env and .properties --------------------------------------------------

_IMPORT_NAMES: Final = ("app.env", "app.properties", "app.yaml", "app.json", "app.bin")


def fuzz_env_properties(data: bytes) -> None:
    """The .env and .properties readers, by name and through `import -f`."""
    if not data:
        return
    mode, payload = data[0] % 5, data[1:]
    try:
        if mode == 0:
            _string_map(parse_env(payload, "in.env"))
        elif mode == 1:
            _string_map(parse_properties(payload, "in.properties"))
        elif mode == 2:
            parse_auto(payload, _IMPORT_NAMES[len(payload) % len(_IMPORT_NAMES)])
        elif mode == 3:
            fmt: OutputFormat = "env" if len(payload) % 2 else "properties"
            text = payload.decode("utf-8", "replace")
            for candidate in readback.candidates(text, fmt, f"in.{fmt}"):
                _assert_json(candidate)
        else:
            _flat_round_trip(payload)
    except _INPUT_ERRORS:
        return


def _string_map(parsed: dict[str, str]) -> None:
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())


def _flat_round_trip(payload: bytes) -> None:
    """A flat map of strings renders as .env/.properties and parses back the same."""
    text = _text(payload)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return  # lone surrogates cannot be written as UTF-8 at all
    pairs = [line.partition("=") for line in text.split("\x00")]
    flat: dict[str, JSONValue] = {key: value for key, _, value in pairs if key}
    if not flat:
        return
    props = render_text(flat, "properties")
    assert parse_properties(props.encode("utf-8"), "rt.properties") == flat
    try:
        env = render_text(flat, "env")
    except _INPUT_ERRORS:
        return
    expected = {env_key((key,)): value for key, value in flat.items()}
    if len(expected) == len(flat):
        assert parse_env(env.encode("utf-8"), "rt.env") == expected


# --- templated Secret data ---------------------------------------------------

#: A value no message may ever show.
_TEMPLATE_CANARY: Final = b"kstrata-fuzz-canary"


def fuzz_secret_template(data: bytes) -> None:
    """``spec.template.data``: any text parses or is a TemplateError naming its key.

    What parses renders exactly its literal text and each referenced item's
    bytes, in order; a missing item is a TemplateError without any value.
    """
    text = _text(data)
    try:
        parsed = parse_template_data({"K": text})
    except TemplateError as error:
        message = str(error)
    except InputLimitError:
        return
    else:
        message = ""
    if message:
        assert message.startswith("spec.template.data.K"), "an error without the key"
        return
    (template,) = parsed.templates.values()
    refs = sorted(template.references)
    items = {key: _TEMPLATE_CANARY + bytes([i % 256]) for i, key in enumerate(refs)}
    expected = b"".join(
        items[s.key] if isinstance(s, Reference) else s.encode("utf-8", "surrogateescape")
        for s in template.segments
    )
    try:
        check_references(parsed, items)
        rendered = render_data(parsed, items)["K"]
    except UnicodeEncodeError:
        return  # a lone surrogate in the literal text: never valid JSON from the API server
    except InputLimitError:
        return
    assert rendered == expected, "rendered bytes differ from the segments"
    if refs:
        short = dict(list(items.items())[1:])
        try:
            check_references(parsed, short)
        except TemplateError as error:
            message = str(error)
        assert message, "a missing item was not reported"
        assert _TEMPLATE_CANARY.decode() not in message, "a value in the message"


TARGETS: Final[dict[str, Target]] = {
    "token": fuzz_token,
    "documents": fuzz_documents,
    "merge_render": fuzz_merge_render,
    "schema": fuzz_schema,
    "env_properties": fuzz_env_properties,
    "secret_template": fuzz_secret_template,
}
