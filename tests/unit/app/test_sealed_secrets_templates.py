"""spec.template.data in the use cases: parsed with the spec, in the digest, offline validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kstrata.app.offline import validate_files
from kstrata.domain.sealed_spec import parse_sealed_spec, tokens_digest
from kstrata.domain.secret_template import check_sealed_spec
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


def test_offline_validate_checks_templates_per_environment(tmp_path: Path) -> None:
    manifest = tmp_path / "db.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kstrata.dev/v1alpha1",
                "kind": "SealedSecret",
                "metadata": {"name": "db"},
                "spec": {
                    "encryptedData": {"user": "kss1:u"},
                    "environments": {"prod": {"encryptedData": {"password": "kss1:p"}}},
                    "template": {"data": {"URL": "{{ .user }}:{{ .password }}"}},
                },
            }
        )
    )
    (problem,) = validate_files([manifest], None)
    assert problem.describe() == (
        f"{manifest}: SealedSecret db: spec.template.data.URL references item(s) password: "
        "no such item in this SealedSecret for environment dev (items: user)"
    )
    assert validate_files([manifest], "prod") == []


def test_check_sealed_spec_follows_a_pinned_environment() -> None:
    spec = {
        "encryptedData": {"user": "kss1:u"},
        "environment": "prod",
        "environments": {"prod": {"encryptedData": {"password": "kss1:p"}}},
        "template": {"data": {"URL": "{{ .user }}:{{ .password }}"}},
    }
    check_sealed_spec(spec, ["dev"])  # pinned to prod: dev never applies
    del spec["environment"]
    with pytest.raises(TemplateError, match="for environment dev"):
        check_sealed_spec(spec, ["dev"])
    check_sealed_spec({"encryptedData": {"a": "kss1:a"}}, ["dev"])  # no templates: nothing to check
