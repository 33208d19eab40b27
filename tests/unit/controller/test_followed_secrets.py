"""controller.followed_secrets without a cluster: what is handed on, what is read, what not.

The watch threads and the API are replaced at their seams (the listing and
event callbacks, ``KubeApi.get_or_none``); the real watch is tested against
the API server in tests/cluster/test_kube_metadata_watch.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kstrata.controller.followed_secrets import FollowedSecrets, Interest
from kstrata.errors import TransientClusterError
from kstrata.kube.metadata_watch import ObjectVersion


class Api:
    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    def get_or_none(self, _resource: Any, namespace: str, name: str) -> dict[str, Any]:
        self.reads.append((namespace, name))
        return {"metadata": {"name": name, "namespace": namespace}, "data": {"v": "MQ=="}}


def version(name: str, rv: str, namespace: str = "ns") -> ObjectVersion:
    return ObjectVersion(namespace, name, f"uid-{name}", rv)


async def settled(followed: FollowedSecrets) -> None:
    """Until every read the events started has been handed on (no sleeping)."""
    while followed._tasks:
        await asyncio.gather(*list(followed._tasks))


def run(scenario: Any) -> None:
    asyncio.run(scenario())


def test_only_followed_secrets_are_read_and_only_when_their_version_moves() -> None:
    api = Api()
    followed = FollowedSecrets(api, None, ())  # type: ignore[arg-type]
    got: list[tuple[str, str, Any]] = []
    followed.add(
        Interest(
            wants=lambda ns, name: name == "creds",
            keys=lambda: [("ns", "creds")],
            changed=lambda ns, name, body: got.append((ns, name, body)),
            fetch=True,
        )
    )

    async def scenario() -> None:
        followed.loop = asyncio.get_running_loop()
        followed._listed(
            None, {("ns", "creds"): version("creds", "1"), ("ns", "other"): version("other", "1")}
        )
        await settled(followed)
        followed._changed("MODIFIED", version("other", "2"))  # nobody follows it
        followed._changed("MODIFIED", version("creds", "1"))  # a replay of the same version
        await settled(followed)
        assert api.reads == [("ns", "creds")]
        followed._changed("MODIFIED", version("creds", "2"))
        await settled(followed)
        assert api.reads == [("ns", "creds"), ("ns", "creds")]
        followed._changed("DELETED", version("creds", "3"))
        await followed.close()

    run(scenario)
    assert [body is None for *_, body in got] == [False, False, True]


def test_a_blocking_secret_missing_from_a_relisting_is_reported_gone() -> None:
    api = Api()
    followed = FollowedSecrets(api, None, ())  # type: ignore[arg-type]
    gone: list[tuple[str, str]] = []
    followed.add(
        Interest(
            wants=lambda ns, name: name == "legacy",
            keys=lambda: [("ns", "legacy")],
            changed=lambda ns, name, body: gone.append((ns, name)),
        )
    )

    async def scenario() -> None:
        followed.loop = asyncio.get_running_loop()
        followed._listed(None, {("ns", "unrelated"): version("unrelated", "5")})
        await followed.close()

    run(scenario)
    assert gone == [("ns", "legacy")]
    assert api.reads == []  # an interest without fetch is told, nothing is read


class FailingApi(Api):
    def get_or_none(self, _resource: Any, namespace: str, name: str) -> dict[str, Any]:
        self.reads.append((namespace, name))
        raise TransientClusterError("get secret: API server unavailable")


def told_of_reads(api: Api) -> list[tuple[str, Any]]:
    """What an interest with ``fetch`` and ``reading`` is told of one change of its Secret."""
    followed = FollowedSecrets(api, None, ())  # type: ignore[arg-type]
    told: list[tuple[str, Any]] = []
    followed.add(
        Interest(
            wants=lambda ns, name: name == "creds",
            keys=list,
            changed=lambda ns, name, body: told.append(("changed", body is not None)),
            fetch=True,
            reading=lambda ns, name, now: told.append(("reading", (ns, name, now))),
        )
    )

    async def scenario() -> None:
        followed.loop = asyncio.get_running_loop()
        followed._changed("MODIFIED", version("creds", "2"))
        await settled(followed)
        followed._changed("MODIFIED", version("other", "2"))  # nobody follows it
        await settled(followed)
        await followed.close()

    run(scenario)
    assert api.reads == [("ns", "creds")]
    return told


def test_a_read_is_announced_before_it_starts_and_its_end_told_whatever_its_outcome() -> None:
    """The reloads hold a change set while a Secret they follow is being read."""
    start, end = ("reading", ("ns", "creds", True)), ("reading", ("ns", "creds", False))
    assert told_of_reads(Api()) == [start, ("changed", True), end]
    assert told_of_reads(FailingApi()) == [start, end]  # the read failed: told all the same
