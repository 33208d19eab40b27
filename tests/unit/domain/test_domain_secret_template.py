"""Templated Secret data: the small language, its errors (never a value) and its bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.domain.secret_template import (
    MAX_RENDERED_BYTES,
    MAX_TEMPLATE_CHARS,
    Reference,
    check_references,
    parse_template,
    parse_template_data,
    render_data,
)
from kstrata.errors import InputLimitError, InvalidInputError, TemplateError

ITEMS = {"user": b"app", "password": b"s3cr3t-CANARY", "db-host": b"db.internal"}


def render(text: str, items: dict[str, bytes] = ITEMS) -> bytes:
    data = parse_template_data({"OUT": text})
    check_references(data, items)
    return render_data(data, items)["OUT"]


def test_connection_string_from_user_and_password() -> None:
    url = render('postgres://{{ .user }}:{{ index . "password" }}@{{ index . "db-host" }}:5432/app')
    assert url == b"postgres://app:s3cr3t-CANARY@db.internal:5432/app"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{.user}}", b"app"),
        ("{{ .user }}", b"app"),
        ("{{\t.user\n}}", b"app"),
        ('{{ index . "user" }}', b"app"),
        ("{{ index . `db-host` }}", b"db.internal"),
        ('{{ "{{" }}', b"{{"),
        ('{{ "a\\"b\\\\c\\n" }}', b'a"b\\c\n'),
        ("x {{- .user -}} y", b"xappy"),
        ("x\n\t {{- .user }} y", b"xapp y"),
        ("x {{/* a comment with }} in it */}} y", b"x  y"),
        ("x {{- /* trimmed */ -}} y", b"xy"),
        ("}} alone is text", b"}} alone is text"),
        ("", b""),
    ],
)
def test_the_forms_go_templates_and_bitnami_users_write(text: str, expected: bytes) -> None:
    assert render(text) == expected


def test_binary_items_are_inserted_as_bytes() -> None:
    items = {"blob": bytes(range(256))}
    assert render("<{{ .blob }}>", items) == b"<" + bytes(range(256)) + b">"


def test_a_template_key_replaces_an_item_and_null_leaves_one_out() -> None:
    data = parse_template_data({"password": "{{ .password }}!", "user": None, "URL": "{{ .user }}"})
    out = render_data(data, ITEMS)
    assert out == {
        "URL": b"app",
        "db-host": b"db.internal",
        "password": b"s3cr3t-CANARY!",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{{ .user", "action not closed"),
        ('{{ "x }}', "string not closed"),
        ("{{ `x }}", "raw string not closed"),
        ("{{/* x }}", "comment not closed"),
        ("{{ if .user }}x{{ end }}", "'if' is not supported"),
        ("{{ range . }}x{{ end }}", "'range' is not supported"),
        ('{{ printf "%s" .user }}', "'printf' is not supported"),
        ("{{ .user | upper }}", "unexpected '|'"),
        ("{{ $x := .user }}", "unexpected '$'"),
        ("{{ . }}", "all items at once"),
        ("{{ .user.name }}", "unexpected '.'"),
        ("{{ .db-host }}", 'index . "key"'),
        ("{{ }}", "empty action"),
        ('{{ index . "" }}', "cannot be empty"),
        ('{{ "\\q" }}', "unsupported escape"),
        ('{{ template "x" }}', "'template' is not supported"),
        ('{{ index . "a" "b" }}', "unsupported action"),
    ],
)
def test_unsupported_or_broken_templates_are_clear_errors(text: str, says: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template_data({"DATABASE_URL": text})
    message = str(caught.value)
    assert message.startswith("spec.template.data.DATABASE_URL: at character ")
    assert says in message
    assert caught.value.reason == "InvalidTemplate"


def test_a_missing_item_names_template_and_item_keys_never_a_value() -> None:
    data = parse_template_data({"URL": "{{ .user }}:{{ .pasword }}", "OTHER": "{{ .nope }}"})
    with pytest.raises(TemplateError) as caught:
        check_references(data, ITEMS, environment="prod")
    message = str(caught.value)
    assert "spec.template.data.URL references item(s) pasword" in message
    assert "spec.template.data.OTHER references item(s) nope" in message
    assert "for environment prod" in message
    assert "CANARY" not in message
    with pytest.raises(TemplateError, match=r"references item (nope|pasword)") as at_render:
        render_data(data, ITEMS)
    assert "CANARY" not in str(at_render.value)


def test_messages_list_a_bounded_number_of_keys() -> None:
    items = [f"item-{i:03}-" + "x" * 240 for i in range(256)]
    data = parse_template_data({f"T{i:03}": "{{ .missing }}" for i in range(256)})
    with pytest.raises(TemplateError) as caught:
        check_references(data, items)
    message = str(caught.value)
    assert "(and 248 more)" in message
    assert message.count("references item(s) missing") == 8
    assert len(message) < 4096


def test_a_template_without_references_is_a_plain_value() -> None:
    data = parse_template_data({"MODE": "read-only"})
    check_references(data, [])
    assert render_data(data, {}) == {"MODE": b"read-only"}


def test_bounds_on_template_text_count_and_rendered_size() -> None:
    with pytest.raises(InputLimitError, match="65536"):
        parse_template("K", "x" * (MAX_TEMPLATE_CHARS + 1))
    with pytest.raises(InputLimitError, match="more than 256"):
        parse_template_data({f"k{i}": "x" for i in range(257)})
    big = {"big": b"B" * 100_000}
    data = parse_template_data({"K": "{{ .big }}" * 20})
    with pytest.raises(InputLimitError) as caught:
        render_data(data, big)
    assert f"exceed {MAX_RENDERED_BYTES} bytes" in str(caught.value)
    assert "BBBB" not in str(caught.value)


def test_wrong_shapes() -> None:
    assert not parse_template_data(None)
    with pytest.raises(TemplateError, match="must map"):
        parse_template_data(["x"])
    with pytest.raises(TemplateError, match=r"spec.template.data.K must be a string"):
        parse_template_data({"K": 3})


# --- properties ------------------------------------------------------------

_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=12)
_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@given(st.text(max_size=200).filter(lambda t: "{{" not in t))
def test_text_without_actions_is_literal(text: str) -> None:
    assert render(text, {}) == text.encode("utf-8")


@settings(max_examples=100)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=20).filter(lambda t: "{" not in t).map(lambda t: ("lit", t)),
            _KEYS.map(lambda k: ("index", k)),
            _NAMES.map(lambda k: ("field", k)),
        ),
        max_size=12,
    ),
    st.binary(max_size=64),
)
def test_references_render_exactly(parts: list[tuple[str, str]], value: bytes) -> None:
    text, expected, keys = "", b"", set()
    for kind, word in parts:
        if kind == "lit":
            text += word
            expected += word.encode("utf-8")
        else:
            text += f"{{{{ .{word} }}}}" if kind == "field" else f'{{{{ index . "{word}" }}}}'
            expected += value
            keys.add(word)
    template = parse_template("K", text)
    assert template.references == frozenset(keys)
    items = dict.fromkeys(keys, value)
    assert render(text, items) == expected


def _failure(data: object, items: dict[str, bytes]) -> str | None:
    try:
        parsed = parse_template_data(data)
        check_references(parsed, items)
        render_data(parsed, items)
    except InvalidInputError as error:
        return str(error)
    return None


_FRAGMENTS = st.sampled_from(
    ["{{ .user }}", '{{ index . "password" }}', "{{ .missing }}", "{{ if", "{{ .user", "}}", "x"]
)


@settings(max_examples=100)
@given(st.lists(_FRAGMENTS, max_size=8), st.binary(min_size=8, max_size=32), st.integers(0, 40))
def test_errors_never_carry_an_item_value(parts: list[str], secret: bytes, repeat: int) -> None:
    canary = "CANARY" + secret.hex()
    items = {"user": canary.encode(), "password": canary.encode() * 16_000}
    message = _failure({"K": "".join(parts) * repeat, "L": "{{ .password }}" * repeat}, items)
    if message is not None:
        assert canary not in message
        assert secret.hex() not in message


@given(st.text(max_size=120))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        template = parse_template("K", text)
    except TemplateError as error:
        message = str(error)
    else:
        assert all(isinstance(s, str | Reference) for s in template.segments)
        return
    assert message.startswith("spec.template.data.K")
