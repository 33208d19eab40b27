"""spec.template.data in the SealedSecret use case: parsed with the spec, counted in the digest."""

from __future__ import annotations

import pytest

from kstrata.app.sealed_secrets import parse_sealed_spec, tokens_digest
from kstrata.errors import TemplateError

TOKENS = {"password": "kss1:p", "user": "kss1:u"}


def test_without_templates_the_digest_is_what_it_always_was() -> None:
    # A SealedSecret without templates keeps its revision across the upgrade:
    # no new revision, no rollout of its workloads.
    assert tokens_digest(TOKENS) == tokens_digest(TOKENS, None) == tokens_digest(TOKENS, {})
    # The value the digest had before templates existed (pinned).
    assert tokens_digest(TOKENS) == (
        "sha256:290ba99c5943d1a9ce1e94bfe17b7c8ef16893350441358ae07cf27492014c6a"
    )


def test_a_changed_template_is_a_new_digest() -> None:
    first = tokens_digest(TOKENS, {"URL": "postgres://{{ .user }}@a"})
    assert first != tokens_digest(TOKENS)
    assert first != tokens_digest(TOKENS, {"URL": "postgres://{{ .user }}@b"})
    assert first != tokens_digest(TOKENS, {"URL": "postgres://{{ .user }}@a", "user": None})
    assert first == tokens_digest(TOKENS, {"URL": "postgres://{{ .user }}@a"})


def test_the_spec_parser_parses_templates() -> None:
    spec = parse_sealed_spec(
        {"encryptedData": TOKENS, "template": {"data": {"URL": "{{ .user }}", "user": None}}}
    )
    assert spec.template.data.references() == {"URL": frozenset({"user"})}
    assert spec.template.data.omitted == frozenset({"user"})
    with pytest.raises(TemplateError, match=r"spec.template.data.URL: at character 4"):
        parse_sealed_spec({"template": {"data": {"URL": "{{ if .user }}"}}})
