"""Write the seed corpora under tests/fuzz/corpus/ (run by hand; the output is committed).

    .venv/bin/python tests/fuzz/seeds.py

Seeds are small, valid (or nearly valid) inputs for every mode of every
target, so the fuzzer starts from inputs that get past the first checks:
tokens really sealed to the harness's fixed keys, YAML with anchors and merge
keys, schemas that use the built-in checker and ones that need jsonschema.
The first byte of each seed is the target's mode byte (see fuzz.targets).
Re-running rewrites the seeds (tokens differ each time: sealing is
randomised); inputs the fuzzer found are kept under their hash names.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.targets import CONTEXT, KEY_HYBRID, KEY_X25519, RING
from kstrata.crypto import PublicKeyBundle, seal, seal_multi

CORPUS = Path(__file__).resolve().parent / "corpus"

_YAML = [
    b"a: 1\nb: [x, y]\nc: {d: null}\n",
    b"base: &b {x: 1, y: two}\nother:\n  <<: *b\n  y: 3\n",
    b"---\nkey: value\n---\n- 1\n- 2.5\n- true\n...\n",
    b'text: |\n  multi\n  line\ndate: 2026-01-01\nq: "\\u00e9\\n"\n',
    b"[[[[[[[[[[1]]]]]]]]]]\n",
    b"a: &a [1, 2]\nb: [*a, *a, *a]\nc: !!str 1\n",
    b'{"json": [1, -0.0, 1e10, "s"], "n": null}\n',
]

_LAYERS = [
    b"server:\n  port: 8080\n  host: a\nlist: [1, 2]\n---\nserver:\n  port: 9090\n  host: null\n",
    b'a: {b: {c: 1}}\n---\na: {b: [1, {c: x}]}\n---\nz: "line\\nbreak"\n',
    b'db:\n  url: "postgres://h/db?x=1 #y"\n  pool: 5\n---\ndb: {pool: 10, flag: true}\n',
    b'"key with space": \'v=1:2\'\nunicode: "\\u00e9\\u2028"\nnum: 1.5e300\n',
    b"a: []\nb: {}\n---\na: [null]\n",
]

_SCHEMAS = [
    b'{"type": "object", "properties": {"port": {"type": "integer", "minimum": 1}},'
    b' "required": ["port"], "additionalProperties": false}\n---\nport: 80\n---\nport: 0\n',
    b"type: object\nproperties:\n  name: {type: string, pattern: '^[a-z]+(-[a-z]+)*$',"
    b" maxLength: 10}\n---\nname: ab-cd\n---\nname: AB\n",
    b"$defs:\n  n: {type: number}\ntype: object\npatternProperties:\n  '^x-': {$ref: '#/$defs/n'}\n"
    b"---\nx-a: 1\nx-b: s\n",
    b"oneOf: [{type: string}, {type: integer}]\n---\n1\n---\n[]\n",
    b"type: array\nitems: {enum: [a, b]}\nminItems: 1\nuniqueItems: true\n"
    b"---\n[a, b]\n---\n[a, a]\n",
    b"$ref: '#'\n---\n1\n",
    b"type: object\nproperties:\n  v: {const: {a: [1]}}\nunevaluatedProperties: false\n"
    b"---\nv: {a: [1]}\n",
]

_PATTERNS = [
    "^(a+)+$\x00aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
    "\\d{2,4}-\\w+\\s\x00123-ab ",
    "(?<year>\\d{4})-\\p{L}+\\u00e9[^\\]a-z]\x002026-é",
    "[\\b]\\cJ\\x41\\u{1F600}.$\x00\x08\nA😀x",
    "(?i:abc)|(?s:a.b)|[]|[^]\x00ABC",
    "\\1(?=x)\x00x",
]

_ENV = [
    b'export A=1\nB=\'single # kept\'\nC="dq \\n \\" \\\\"\n# comment\n\nD=plain # comment\n',
    b"KEY.with-dash=v\nEMPTY=\n",
]

_PROPERTIES = [
    b"# c\n! c\na.b=1\na.c : two\nkey\\ with\\ space = v\\u00e9\\\n   continued\nplain\n",
    b"x[0]=a\nx[1]=b\ny=\\t\\n\\r\\f\n",
]


_TEMPLATES = [
    b'postgres://{{ .user }}:{{ index . "db-password" }}@db:5432/app',
    b'a {{- /* c */ -}} b {{ `raw` }} {{ "q\\"" }} }}',
    b"{{ if .user }}x{{ end }}{{ .a.b }}{{ printf",
]


def _write(target: str, name: str, data: bytes) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def _many(target: str, prefix: str, mode: int, items: list[bytes]) -> None:
    for index, item in enumerate(items):
        _write(target, f"seed-{prefix}-{index}", bytes([mode]) + item)


def main() -> None:
    tokens = [
        seal(b"s3cret", KEY_X25519.public, CONTEXT),
        seal(b"", KEY_HYBRID.public, CONTEXT),
        seal_multi(b"multi", [KEY_X25519.public, KEY_HYBRID.public], CONTEXT),
        "kss1:AQ",
        "kss3:AAAA",
    ]
    for token in tokens[:3]:
        assert RING.open(token, CONTEXT) is not None
    _many("token", "open", 0, [t.encode() for t in tokens])
    scoped = b"\x00password\x00team-a\x00db\x00" + tokens[0].encode()
    _write("token", "seed-context-0", bytes([1]) + scoped)
    _write("token", "seed-roundtrip-0", bytes([2]) + b"value")
    bundle = PublicKeyBundle.of([KEY_X25519, KEY_HYBRID]).serialize().encode()
    _write("token", "seed-bundle-0", bytes([3]) + bundle)
    _write("token", "seed-entry-0", bytes([4]) + KEY_X25519.to_secret_entry())

    _many("documents", "yaml", 0, _YAML)
    _many("documents", "json", 1, [b'{"a": [1, 2.5, "x", null, true], "b": {"c": {}}}'])
    _many("documents", "small", 2, _YAML[:3])
    _many("documents", "pure", 3, _YAML)

    _many("merge_render", "layers", 0, _LAYERS)
    _many("merge_render", "flat", 1, _LAYERS[:2])

    _many("schema", "schema", 0, _SCHEMAS)
    _many("schema", "pattern", 1, [p.encode() for p in _PATTERNS])

    _many("env_properties", "env", 0, _ENV)
    _many("env_properties", "properties", 1, _PROPERTIES)
    _many("env_properties", "auto", 2, _ENV + _PROPERTIES)
    _many("env_properties", "import", 3, _ENV[:1] + _PROPERTIES[:1])
    _many("env_properties", "roundtrip", 4, [b"a.b=1\x00KEY=v w\x00x y=\\t#!"])

    for index, item in enumerate(_TEMPLATES):
        _write("secret_template", f"seed-template-{index}", item)


if __name__ == "__main__":
    main()
