"""``sealing_toolkit.check_binding``: the one check of what a SealedSecret's tokens bind to.

``seal``, ``import --sops`` and ``import sealedsecret --bitnami-keys`` all call
it before any key is used; each words the message its own way.
"""

from __future__ import annotations

import pytest

from kstrata.app.sealing_toolkit import check_binding
from kstrata.errors import InvalidInputError, UsageError


def test_valid_names_pass_and_cluster_scope_may_leave_the_namespace_out() -> None:
    check_binding("db", "apps", "strict", prefix="", no_namespace="unused")
    check_binding("db", None, "cluster", prefix="", no_namespace="unused")


@pytest.mark.parametrize(
    ("name", "namespace", "message"),
    [
        ("Bad_Name", "apps", "a.yaml: name must be an RFC 1123 subdomain"),
        ("db", "Bad_Namespace", "a.yaml: namespace must be an RFC 1123 label"),
    ],
)
def test_an_invalid_name_is_worded_by_the_caller_and_never_quoted(
    name: str, namespace: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as error:
        check_binding(
            name, namespace, "cluster", prefix="a.yaml: ", suffix=" (give -n)", no_namespace="x"
        )
    assert str(error.value).startswith(message)
    assert str(error.value).endswith(" (give -n)")
    assert "Bad_" not in str(error.value)


@pytest.mark.parametrize("scope", ["strict", "namespace"])
def test_every_scope_but_cluster_needs_a_namespace(scope: str) -> None:
    with pytest.raises(UsageError, match=r"^give -n NAMESPACE$"):
        check_binding("db", None, scope, prefix="", no_namespace="give -n NAMESPACE")
