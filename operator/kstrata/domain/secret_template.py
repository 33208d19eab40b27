"""Templated Secret data: ``spec.template.data`` entries built from a SealedSecret's items.

Why: an application often wants one value made of several secrets (a
connection string from a user and a password).  Sealing the combination
would put the password in two tokens that can drift apart; a template keeps
the literal part (``postgres://``, the host) in clear in the spec and
combines the opened items only in the operator's memory, so the rendered
value exists nowhere but in the produced Secret.

The language is deliberately tiny: a template is literal text with actions
in ``{{ }}``, and an action is one of

* ``{{ .user }}``: the item ``user`` (a name of letters, digits and ``_``,
  not starting with a digit);
* ``{{ index . "db-password" }}``: the item ``db-password`` (any item key;
  the form Bitnami sealed-secrets users write for keys with ``-`` or ``.``);
* ``{{ "text" }}`` or ``{{ `text` }}``: that text (a way to write ``{{``);
* ``{{/* comment */}}``: nothing.

``{{-`` and ``-}}`` trim the white space before or after the action, as in
Go's text/template, so a Bitnami SealedSecret whose templates use only these
forms renders the same bytes here.  There are no functions, pipelines,
conditionals, loops or variables: nothing runs, nothing reads a file or the
environment.  Anything else is a ``TemplateError`` naming the template key
and the character position; a reference to an item the SealedSecret does not
have names the template key and the missing item key (Go would print
``<no value>``; a connection string with that in it is worse than none).

Rendering works on bytes: the literal text is UTF-8, an item's bytes are
inserted as they are (a binary item stays binary).  The rendered Secret data
is bounded (``MAX_RENDERED_BYTES``, the API server's limit for a Secret)
while it is being built, so a template that repeats a large item thousands
of times fails before it allocates more.  A template key that is also an
item key replaces that item in the Secret (Bitnami's rule, so migrated
objects keep their meaning); a key mapped to ``null`` leaves that item out
of the Secret (also Bitnami's), for items that exist only to be combined.

Boundary: pure; knows nothing of sealing or the cluster.  Messages never
carry an item value (they are built from the template text, which is public
in the spec, and from item keys).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from kstrata.errors import InputLimitError, TemplateError

#: Longest template text (the CRD's maxLength on each ``spec.template.data`` value).
MAX_TEMPLATE_CHARS: Final = 65_536
#: Most entries in ``spec.template.data`` (the CRD's maxProperties).
MAX_TEMPLATES: Final = 256
#: The rendered Secret data, all keys and values together, at most: the API
#: server refuses a Secret over 1 MiB anyway, this makes it a clear error
#: before any of it is built.
MAX_RENDERED_BYTES: Final = 1_048_576
#: Where the templates live in a SealedSecret, for messages.
WHERE: Final = "spec.template.data"

_SPACE: Final = " \t\r\n"
_SPACES: Final = frozenset(_SPACE)
_IDENT_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT: Final = _IDENT_START | frozenset("0123456789")
_ESCAPES: Final = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_SUPPORTED: Final = (
    'supported: {{ .key }}, {{ index . "key" }}, {{ "text" }}, {{/* comment */}}, '
    "with optional {{- and -}}"
)
_NAMED_MAX: Final = 40
#: Template keys, item keys or problems one message lists before "and N more".
_LISTED_MAX: Final = 8


@dataclass(frozen=True)
class Reference:
    """An action that inserts the item ``key``."""

    key: str


Segment: TypeAlias = "str | Reference"


@dataclass(frozen=True)
class SecretTemplate:
    """One parsed ``spec.template.data`` entry: literal text and references, in order."""

    key: str
    segments: tuple[Segment, ...]

    @property
    def references(self) -> frozenset[str]:
        return frozenset(s.key for s in self.segments if isinstance(s, Reference))


@dataclass(frozen=True)
class TemplateData:
    """All of ``spec.template.data``: templates by key, and the keys left out (``null``)."""

    templates: Mapping[str, SecretTemplate]
    omitted: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.templates) or bool(self.omitted)

    def references(self) -> dict[str, frozenset[str]]:
        return {key: t.references for key, t in self.templates.items() if t.references}


def _error(key: str, position: int, problem: str) -> TemplateError:
    return TemplateError(f"{WHERE}.{key}: at character {position + 1}: {problem}")


def _shown(word: str) -> str:
    return word if len(word) <= _NAMED_MAX else word[:_NAMED_MAX] + "..."


class _Parser:
    """One template's text, read left to right (no regular expressions, no recursion)."""

    def __init__(self, key: str, text: str) -> None:
        self.key = key
        self.text = text
        self.pos = 0
        self.segments: list[Segment] = []
        self.trim_next = False

    def parse(self) -> SecretTemplate:
        text = self.text
        while True:
            start = text.find("{{", self.pos)
            literal = text[self.pos : len(text) if start < 0 else start]
            if self.trim_next:
                literal = literal.lstrip(_SPACE)
                self.trim_next = False
            if start < 0:
                self._literal(literal)
                break
            # Go's rule: "{{-" trims only when white space follows ("{{-3}}" is a number).
            trim_before = text.startswith("{{-", start) and text[start + 3 : start + 4] in _SPACES
            if trim_before:
                literal = literal.rstrip(_SPACE)
            self._literal(literal)
            self.pos = start + (4 if trim_before else 2)
            self._action(start)
        return SecretTemplate(self.key, tuple(self.segments))

    def _literal(self, text: str) -> None:
        if not text:
            return
        if self.segments and isinstance(self.segments[-1], str):
            self.segments[-1] += text
        else:
            self.segments.append(text)

    def _fail(self, position: int, problem: str) -> TemplateError:
        return _error(self.key, position, problem)

    def _action(self, start: int) -> None:
        text = self.text
        if text.startswith("/*", self.pos):
            self._comment(start)
            return
        words: list[tuple[int, str, str]] = []  # (position, kind, text)
        while True:
            self._skip_space()
            if self.pos >= len(text):
                raise self._fail(start, "action not closed: '{{' without '}}'")
            if self._close():
                break
            words.append(self._word(start))
        self._meaning(start, words)

    def _close(self) -> bool:
        """At ``}}`` or ``-}}`` (the latter after white space): consume it."""
        text = self.text
        if text.startswith("}}", self.pos):
            self.pos += 2
            return True
        if text.startswith("-}}", self.pos) and self.pos > 0 and text[self.pos - 1] in _SPACE:
            self.pos += 3
            self.trim_next = True
            return True
        return False

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def _comment(self, start: int) -> None:
        end = self.text.find("*/", self.pos + 2)
        if end < 0:
            raise self._fail(start, "comment not closed: '/*' without '*/'")
        self.pos = end + 2
        self._skip_space_if_trimming()
        if not self._close():
            raise self._fail(start, "a comment must end with '*/}}' or '*/ -}}'")

    def _skip_space_if_trimming(self) -> None:
        # Only "*/ -}}" may put white space between the comment and the braces.
        saved = self.pos
        self._skip_space()
        if not self.text.startswith("-}}", self.pos):
            self.pos = saved

    def _word(self, start: int) -> tuple[int, str, str]:
        text, at = self.text, self.pos
        char = text[at]
        if char == '"':
            return at, "string", self._quoted(start)
        if char == "`":
            end = text.find("`", at + 1)
            if end < 0:
                raise self._fail(at, "raw string not closed: '`' without '`'")
            self.pos = end + 1
            return at, "string", text[at + 1 : end]
        if char == ".":
            end = at + 1
            while end < len(text) and text[end] in _IDENT:
                end += 1
            name = text[at + 1 : end]
            if name and name[0] not in _IDENT_START:
                raise self._fail(at, f"'.{_shown(name)}' is not an item name; {_SUPPORTED}")
            if end < len(text) and text[end] not in _SPACE and not text.startswith("}}", end):
                raise self._fail(
                    end,
                    f"unexpected {text[end]!r} after '.{_shown(name)}': for an item key with "
                    "'-' or '.' write {{ index . \"key\" }}",
                )
            self.pos = end
            return at, "field" if name else "dot", name
        if char in _IDENT_START:
            end = at
            while end < len(text) and text[end] in _IDENT:
                end += 1
            self.pos = end
            return at, "identifier", text[at:end]
        raise self._fail(at, f"unexpected {char!r} in an action; {_SUPPORTED}")

    def _quoted(self, start: int) -> str:
        text = self.text
        out: list[str] = []
        at = self.pos + 1
        while at < len(text):
            char = text[at]
            if char == '"':
                self.pos = at + 1
                return "".join(out)
            if char == "\n":
                break
            if char == "\\":
                escape = text[at + 1 : at + 2]
                if escape in _ESCAPES:
                    out.append(_ESCAPES[escape])
                    at += 2
                    continue
                raise self._fail(
                    at, 'unsupported escape in a string (\\\\, \\", \\n, \\t and \\r are)'
                )
            out.append(char)
            at += 1
        raise self._fail(self.pos, "string not closed: '\"' without '\"'")

    def _meaning(self, start: int, words: list[tuple[int, str, str]]) -> None:
        kinds = [kind for _, kind, _ in words]
        if kinds == ["field"]:
            self.segments.append(Reference(words[0][2]))
            return
        if kinds == ["string"]:
            self._literal(words[0][2])
            return
        if kinds == ["identifier", "dot", "string"] and words[0][2] == "index":
            item = words[2][2]
            if not item:
                raise self._fail(words[2][0], 'index . "": an item key cannot be empty')
            self.segments.append(Reference(item))
            return
        if not words:
            raise self._fail(start, f"empty action; {_SUPPORTED}")
        position, kind, word = words[0]
        if kind == "identifier" and word != "index":
            problem = f"'{_shown(word)}' is not supported (no functions, conditions or loops)"
        elif kind == "dot" and len(words) == 1:
            problem = "'{{ . }}' (all items at once) is not supported: name one item"
        else:
            problem = "unsupported action"
        raise self._fail(position, f"{problem}; {_SUPPORTED}")


def parse_template(key: str, text: str) -> SecretTemplate:
    """Parse one ``spec.template.data`` value; ``TemplateError`` names ``key`` and the position."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise InputLimitError(
            f"{WHERE}.{key}: template is {len(text)} characters, "
            f"more than the {MAX_TEMPLATE_CHARS} allowed"
        )
    return _Parser(key, text).parse()


def parse_template_data(data: object) -> TemplateData:
    """``spec.template.data`` (a map of key to template text or null) parsed and checked."""
    if data is None:
        return TemplateData({})
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise TemplateError(f"{WHERE} must map Secret keys to template strings (or null)")
    if len(data) > MAX_TEMPLATES:
        raise InputLimitError(f"{WHERE} has {len(data)} entries, more than {MAX_TEMPLATES}")
    templates: dict[str, SecretTemplate] = {}
    omitted: set[str] = set()
    for key in sorted(data):
        value = data[key]
        if value is None:
            omitted.add(key)
        elif isinstance(value, str):
            templates[key] = parse_template(key, value)
        else:
            raise TemplateError(f"{WHERE}.{key} must be a string (or null)")
    return TemplateData(templates, frozenset(omitted))


def check_references(
    data: TemplateData, item_keys: Collection[str], *, environment: str | None = None
) -> None:
    """Every reference names an item there is; else one error naming each template and item key."""
    have = frozenset(item_keys)
    problems = []
    for key, refs in sorted(data.references().items()):
        missing = sorted(refs - have)
        if missing:
            problems.append(f"{WHERE}.{key} references item(s) {_listed(missing)}")
    if problems:
        where = f" for environment {environment}" if environment else ""
        known = _listed(sorted(have)) if have else "none"
        raise TemplateError(
            _listed(problems, sep="; ")
            + f": no such item in this SealedSecret{where} (items: {known})"
        )


def _listed(names: list[str], *, sep: str = ", ") -> str:
    # Bounded: the message goes into a status condition and an event.
    shown = sep.join(names[:_LISTED_MAX])
    more = len(names) - _LISTED_MAX
    return shown + (f" (and {more} more)" if more > 0 else "")


def _item_keys(encrypted: object) -> frozenset[str]:
    return (
        frozenset(k for k in encrypted if isinstance(k, str))
        if isinstance(encrypted, Mapping)
        else frozenset()
    )


def check_sealed_spec(spec: object, environments: Collection[str]) -> None:
    """A SealedSecret spec's templates against its items, offline (``kstrata validate``).

    Checked for the pinned ``spec.environment`` (else each of
    ``environments``) and every declared environment, as admission does;
    a spec without templates passes.  Only keys are read, never a token.
    """
    if not isinstance(spec, Mapping):
        return
    template = spec.get("template")
    if not isinstance(template, Mapping) or template.get("data") is None:
        return
    data = parse_template_data(template.get("data"))
    declared = spec.get("environments")
    declared = declared if isinstance(declared, Mapping) else {}
    pinned = spec.get("environment")
    names = {pinned} if isinstance(pinned, str) else set(environments)
    base = _item_keys(spec.get("encryptedData"))
    for environment in sorted(names | {k for k in declared if isinstance(k, str)}):
        overlay = declared.get(environment)
        extra = _item_keys(overlay.get("encryptedData")) if isinstance(overlay, Mapping) else set()
        check_references(data, base | extra, environment=environment)


def render_data(data: TemplateData, items: Mapping[str, bytes]) -> dict[str, bytes]:
    """The Secret data: ``items``, with each template's output replacing or adding its key.

    Keys mapped to null are left out.  ``check_references`` must have passed;
    a reference still missing is a ``TemplateError`` here too (never a value).
    The total size is checked while rendering.
    """
    out = {k: v for k, v in items.items() if k not in data.omitted and k not in data.templates}
    size = sum(len(k) + len(v) for k, v in out.items())
    for key, template in data.templates.items():
        size += len(key)
        parts: list[bytes] = []
        for segment in template.segments:
            if isinstance(segment, Reference):
                if segment.key not in items:
                    raise TemplateError(
                        f"{WHERE}.{key} references item {segment.key}: "
                        "no such item in this SealedSecret"
                    )
                part = items[segment.key]
            else:
                part = segment.encode("utf-8")
            size += len(part)
            if size > MAX_RENDERED_BYTES:
                parts.clear()
                raise InputLimitError(
                    f"{WHERE}.{key}: the Secret's data would exceed {MAX_RENDERED_BYTES} bytes "
                    "(the API server's limit for a Secret)"
                )
            parts.append(part)
        out[key] = b"".join(parts)
    return dict(sorted(out.items()))


def canonical(data: object) -> list[tuple[str, str | None]]:
    """``spec.template.data`` sorted, for the revision digest (template text is public)."""
    if not isinstance(data, Mapping):
        return []
    return sorted((str(k), v if isinstance(v, str) else None) for k, v in data.items())


__all__ = [
    "MAX_RENDERED_BYTES",
    "MAX_TEMPLATES",
    "MAX_TEMPLATE_CHARS",
    "Reference",
    "SecretTemplate",
    "TemplateData",
    "canonical",
    "check_references",
    "check_sealed_spec",
    "parse_template",
    "parse_template_data",
    "render_data",
]
