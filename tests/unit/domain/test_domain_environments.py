"""Environment selection precedence and environment names."""

from __future__ import annotations

import pytest

from kstrata.domain.environments import (
    EnvironmentChoice,
    is_environment_name,
    select_environment,
)
from kstrata.errors import InvalidInputError
from kstrata.wellknown import ENVIRONMENT_LABEL


def test_spec_environment_wins() -> None:
    choice = select_environment("staging", {ENVIRONMENT_LABEL: "prod"}, "dev")
    assert choice == EnvironmentChoice("staging", "spec")


def test_namespace_label_beats_the_default() -> None:
    assert select_environment(None, {ENVIRONMENT_LABEL: "prod", "other": "x"}, "dev") == (
        EnvironmentChoice("prod", "namespace-label")
    )


@pytest.mark.parametrize("labels", [None, {}, {"other": "prod"}, {ENVIRONMENT_LABEL: ""}])
def test_default_when_nothing_else_decides(labels: dict[str, str] | None) -> None:
    assert select_environment(None, labels, "dev") == EnvironmentChoice("dev", "default")


@pytest.mark.parametrize(
    ("spec_env", "labels", "default", "where"),
    [
        ("Prod", None, "dev", "spec.environment"),
        (None, {ENVIRONMENT_LABEL: "PROD_1"}, "dev", f"namespace label {ENVIRONMENT_LABEL}"),
        (None, None, "-dev", "default environment"),
    ],
)
def test_the_winning_source_must_be_valid(
    spec_env: str | None, labels: dict[str, str] | None, default: str, where: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        select_environment(spec_env, labels, default)
    message = str(caught.value)
    assert message.startswith(f"{where}: not a valid environment name")
    assert "PROD_1" not in message


def test_a_broken_label_does_not_fall_through_to_the_default() -> None:
    with pytest.raises(InvalidInputError):
        select_environment(None, {ENVIRONMENT_LABEL: "not valid"}, "dev")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("prod", True),
        ("eu-west-1", True),
        ("a", True),
        ("0", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("", False),
        ("Prod", False),
        ("-prod", False),
        ("prod-", False),
        ("pro_d", False),
        ("pro.d", False),
        ("prod\n", False),
        (None, False),
        (1, False),
    ],
)
def test_environment_names_are_dns_labels(name: object, valid: bool) -> None:
    assert is_environment_name(name) is valid
