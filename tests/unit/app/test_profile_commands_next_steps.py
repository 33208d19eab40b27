"""Errors that name the next step (issue 19): no CRDs yet, a webhook nobody serves.

The API is a small stand-in (the cluster behaviour is tests/cluster/
test_cli_day_one.py and test_webhook_lifecycle.py): here, what cannot be
arranged on the shared test cluster, a cluster without kstrata's CRDs, and
the exact wording of the stale-webhook hint for each answer of the API.
"""

from __future__ import annotations

from typing import Any

import pytest

from kstrata.app.command_toolkit import explain_refused_write
from kstrata.app.profile_commands import list_profiles
from kstrata.errors import ForbiddenError, NotFoundError, TransientClusterError
from kstrata.kube.api import KubeClient, P, Resource, as_payload
from support.fake_api import FakeApi


class ListingApi(FakeApi):
    """``list`` answers from a table by plural; a missing plural is a 404, as without a CRD."""

    def __init__(self, listings: dict[str, Any]) -> None:
        super().__init__()
        self.listings = listings

    def list(
        self,
        resource: Resource[P],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[P]:
        assert label_selector is None  # these tests list without -l
        found = self.listings.get(resource.plural)
        if found is None:
            raise NotFoundError(f"list {resource.plural}: not found")
        if isinstance(found, Exception):
            raise found
        return [as_payload(resource, obj) for obj in found]


def api(**listings: Any) -> KubeClient:
    return ListingApi(listings)


def test_list_before_the_crds_exist_says_to_install_them() -> None:
    with pytest.raises(NotFoundError) as error:
        list_profiles(api(), "shop")
    assert str(error.value) == (
        "the ConfigProfile resource type is not installed on this cluster (no CRD "
        "configprofiles.kstrata.dev): install kstrata first, for example kubectl apply -k crds/"
    )
    with pytest.raises(NotFoundError, match=r"no CRD sealedsecrets\.kstrata\.dev"):
        list_profiles(api(configprofiles=[]), "shop", sealed_secrets=True)
    assert (
        list_profiles(api(configprofiles=[], sealedsecrets=[]), "shop", sealed_secrets=True) == []
    )


def test_list_shows_config_profiles_to_who_may_not_list_sealed_secrets() -> None:
    profile = {"metadata": {"namespace": "shop", "name": "payments"}}
    forbidden = ForbiddenError("list sealedsecrets: forbidden")
    rows = list_profiles(
        api(configprofiles=[profile], sealedsecrets=forbidden), "shop", sealed_secrets=True
    )
    assert [(row.kind, row.name) for row in rows] == [("ConfigProfile", "payments")]
    with pytest.raises(ForbiddenError):
        list_profiles(api(configprofiles=forbidden), "shop", sealed_secrets=True)


def webhook(name: str, groups: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "webhooks": [{"name": "w", "rules": [{"apiGroups": groups, "resources": ["*"]}]}],
    }


FAILED = TransientClusterError(
    "update ConfigProfile shop/payments: the API server failed the request: Internal error "
    'occurred: failed calling webhook "configprofiles.kstrata.dev": connection refused',
    reason="InternalError",
)


def test_a_failed_write_names_the_kstrata_webhook_and_how_to_remove_it() -> None:
    configurations = [
        webhook("cert-manager", ["cert-manager.io"]),
        webhook("kstrata-dev", ["kstrata.dev"]),
    ]
    explained = explain_refused_write(api(validatingwebhookconfigurations=configurations), FAILED)
    assert str(explained) == (
        f"{FAILED}\nThe API server calls the admission webhook in ValidatingWebhookConfiguration "
        "kstrata-dev for every write to kstrata resources. If no kstrata operator serves it any "
        "more (a foreground operator that stopped without removing it), remove it: kubectl "
        "delete validatingwebhookconfiguration kstrata-dev; otherwise start the operator again "
        "(kstrata operator run, or check its pods)"
    )
    assert explained.reason == "InternalError"


def test_without_a_kstrata_webhook_or_the_right_to_list_the_error_stays_as_it_is() -> None:
    unrelated = api(validatingwebhookconfigurations=[webhook("other", ["apps"])])
    assert explain_refused_write(unrelated, FAILED) is FAILED
    forbidden = api(validatingwebhookconfigurations=ForbiddenError("list: forbidden"))
    assert explain_refused_write(forbidden, FAILED) is FAILED
    # Not the API server's Status (a timeout, a refused connection): nothing to add.
    down = TransientClusterError("update ConfigProfile shop/payments: cannot reach the API server")
    listed = api(validatingwebhookconfigurations=[webhook("kstrata-dev", ["kstrata.dev"])])
    assert explain_refused_write(listed, down) is down
