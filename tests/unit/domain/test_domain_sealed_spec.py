"""A SealedSecret's spec (``kstrata.domain.sealed_spec``): shape, environments, digest."""

from __future__ import annotations

import pytest

from kstrata.crypto import Scope
from kstrata.domain.sealed_spec import (
    SCOPE_NAMES,
    check_secret_type,
    checked_tokens,
    effective_tokens,
    parse_sealed_spec,
    tokens_digest,
)
from kstrata.errors import InvalidInputError, TemplateError
from kstrata.wellknown import FORBIDDEN_SECRET_TYPE_REASON


def test_the_scope_names_are_the_ones_crypto_binds() -> None:
    # The domain spells the scopes as names (it may not import crypto); the
    # reconcile turns one into kstrata.crypto.Scope, which must accept them all.
    assert sorted(SCOPE_NAMES) == sorted(scope.value for scope in Scope)
    for name in ("strict", "namespace", "cluster"):
        assert Scope(parse_sealed_spec({"scope": name}).scope).value == name


def test_environment_items_replace_base_items() -> None:
    spec = parse_sealed_spec(
        {
            "encryptedData": {"user": "kss1:u", "password": "kss1:base"},
            "environments": {"prod": {"encryptedData": {"password": "kss1:prod"}}},
        }
    )
    assert spec.scope == "strict"
    assert effective_tokens(spec, "prod") == {"password": "kss1:prod", "user": "kss1:u"}
    assert effective_tokens(spec, "dev") == {"password": "kss1:base", "user": "kss1:u"}


def test_spec_shapes_are_checked_without_quoting_values() -> None:
    with pytest.raises(InvalidInputError, match=r"spec\.scope"):
        parse_sealed_spec({"scope": "galaxy"})
    with pytest.raises(InvalidInputError, match=r"spec\.encryptedData"):
        parse_sealed_spec({"encryptedData": {"a": 1}})
    with pytest.raises(InvalidInputError, match=r"spec\.environments"):
        parse_sealed_spec({"environments": {"Not_A_Label": {}}})
    with pytest.raises(InvalidInputError, match="immutable"):
        parse_sealed_spec({"template": {"immutable": "yes"}})
    template = parse_sealed_spec({"template": {"type": "kubernetes.io/tls"}}).template
    assert (template.type, template.immutable) == ("kubernetes.io/tls", False)


def test_the_digest_follows_the_token_set() -> None:
    base = tokens_digest({"a": "kss1:x", "b": "kss1:y"})
    assert base == tokens_digest({"b": "kss1:y", "a": "kss1:x"})
    assert base != tokens_digest({"a": "kss1:x", "b": "kss1:z"})
    assert base != tokens_digest({"a": "kss1:x"})


def test_credential_secret_types_are_refused() -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_secret_type("kubernetes.io/service-account-token", where="spec.template.type")
    assert caught.value.reason == FORBIDDEN_SECRET_TYPE_REASON
    check_secret_type("kubernetes.io/tls", where="spec.template.type")


def test_a_template_naming_a_missing_item_is_refused_before_any_key_work() -> None:
    spec = parse_sealed_spec(
        {"encryptedData": {"user": "kss1:u"}, "template": {"data": {"URL": "{{ .password }}"}}}
    )
    with pytest.raises(TemplateError, match="password"):
        checked_tokens(spec, "dev")
