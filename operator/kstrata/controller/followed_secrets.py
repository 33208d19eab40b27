"""Secrets the operator follows but does not manage: seen as metadata, read only when they matter.

Why not kopf: kopf has one watch per resource, and kstrata's kopf watch on
Secrets carries a label selector (``runner.kopf_settings``): only Secrets
kstrata manages (produced by a SealedSecret, its sealing keys, its webhook
certificate) or that are labelled for adoption reach kopf, its handlers and
its per-object memory.  Three kinds of Secrets outside that selection still
matter, by name:

* a Secret a workload reloads on (``secret/NAME``, ``auto``, Reloader's
  annotations; ``controller.reloads``): when its data changes, its keyed
  fingerprint changes and the workload rolls;
* a Secret in the way of a SealedSecret (not ours, not labelled for
  adoption; ``controller.sealed_secrets``): once it is deleted or labelled,
  the SealedSecret is unsealed at once;
* the sealing-key Secret after it was deleted: restored without its labels,
  it would be outside kopf's selection, so it is labelled when it comes back.

All three are followed here through :class:`kstrata.kube.metadata_watch.MetadataWatch`
(name, uid and resourceVersion of every Secret; no data).  An event of a
Secret nobody follows is dropped after a dictionary lookup and is never
read.  When a followed Secret's resourceVersion moves, an *interest* that
needs its content gets it by one GET (one at a time per Secret, so an older
read never lands after a newer one); an interest that only needs to know
gets told.  The watch starts on first demand (the first followed or
blocking Secret, or the key Secret's deletion), so an operator that needs
none of these never lists Secrets at all; it runs until the operator stops.

Everything here runs on kopf's event loop, apart from the watch threads
(which hand their events over with ``call_soon_threadsafe``) and the GETs
(in threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import kopf

from kstrata.errors import KstrataError
from kstrata.kube.api import SECRETS, KubeApi
from kstrata.kube.connection import Cluster
from kstrata.kube.metadata_watch import MetadataWatch, ObjectVersion
from kstrata.payloads import Secret
from kstrata.settings import Settings

logger = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass(frozen=True)
class Interest:
    """One reason to follow Secrets by name.

    ``wants(namespace, name)``: whether it follows that Secret now;
    ``keys()``: every Secret it follows (read at each relist, to notice ones
    deleted while the watch was away); ``changed(namespace, name, body)``: the
    Secret changed or is gone (``body`` None), called on the event loop; with
    ``fetch`` the body is the Secret as read after the change, otherwise
    always None.  ``reading(namespace, name, True)``, for an interest with
    ``fetch``: a new version of that Secret is announced and its read starts;
    ``False``: that read is over, whatever its outcome (after ``changed``).
    """

    wants: Callable[[str, str], bool]
    keys: Callable[[], Iterable[Key]]
    changed: Callable[[str, str, Secret | None], None]
    fetch: bool = False
    reading: Callable[[str, str, bool], None] | None = None


class FollowedSecrets:
    """The metadata watch(es) of Secrets and the interests they serve."""

    def __init__(self, api: KubeApi, cluster: Cluster, namespaces: tuple[str, ...]) -> None:
        self._api = api
        self._cluster = cluster
        #: Empty: one cluster-wide watch; else one per namespace.
        self._namespaces = namespaces
        self._interests: list[Interest] = []
        #: (namespace, name) -> resourceVersion last handed on, for followed Secrets only.
        self._known: dict[Key, str] = {}
        self._fetching: set[Key] = set()
        self._refetch: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watches: list[MetadataWatch] = []
        self._demanded = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, interest: Interest) -> None:
        self._interests.append(interest)

    # --- starting and stopping -------------------------------------------

    def demand(self) -> None:
        """Something is followed now: make sure the watch runs (any thread)."""
        loop = self.loop
        if self._demanded or loop is None:
            self._demanded = True  # started as soon as the loop is known
            return
        self._demanded = True
        loop.call_soon_threadsafe(self._start)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        if self._demanded:
            self._start()

    def _start(self) -> None:
        if self._watches or self.loop is None:
            return
        for namespace in self._namespaces or (None,):
            watch = MetadataWatch(
                self._cluster,
                SECRETS,
                namespace=namespace,
                on_listed=self._from_thread(self._listed, namespace),
                on_changed=self._from_thread(self._changed),
            )
            self._watches.append(watch)
            watch.start()
            logger.info("following Secrets by metadata (%s)", watch.where)

    def _from_thread(self, handler: Callable[..., None], *bound: object) -> Callable[..., None]:
        def deliver(*args: object) -> None:
            loop = self.loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(handler, *(*bound, *args))

        return deliver

    async def close(self) -> None:
        watches, self._watches = self._watches, []
        self.loop = None
        for watch in watches:
            await asyncio.to_thread(watch.stop)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def watching(self) -> bool:
        return any(watch.running for watch in self._watches)

    # --- events (loop thread) ---------------------------------------------

    def _wanted_by(self, key: Key) -> list[Interest]:
        return [interest for interest in self._interests if interest.wants(*key)]

    def _listed(self, namespace: str | None, objects: dict[Key, ObjectVersion]) -> None:
        for key in [k for k in self._known if namespace is None or k[0] == namespace]:
            if key not in objects or not self._wanted_by(key):
                self._known.pop(key, None)
        for interest in self._interests:
            for key in list(interest.keys()):
                if namespace is not None and key[0] != namespace:
                    continue
                found = objects.get(key)
                if found is None:
                    # Gone while the watch was away (or never there): say so.
                    interest.changed(key[0], key[1], None)
                    continue
                self._seen(key, found, [interest])

    def _changed(self, type_: str, found: ObjectVersion) -> None:
        key = found.key
        interests = self._wanted_by(key)
        if not interests:
            self._known.pop(key, None)  # followed no more
            return
        if type_ == "DELETED":
            self._known.pop(key, None)
            for interest in interests:
                interest.changed(key[0], key[1], None)
            return
        self._seen(key, found, interests)

    def _seen(self, key: Key, found: ObjectVersion, interests: list[Interest]) -> None:
        if self._known.get(key) == found.resource_version:
            return  # a replay (relist) of a version already handed on
        self._known[key] = found.resource_version
        fetching = False
        for interest in interests:
            if interest.fetch:
                fetching = True
            else:
                interest.changed(key[0], key[1], None)
        if fetching:
            self._fetch(key)

    def _fetch(self, key: Key) -> None:
        self._tell_reading(key, True)
        if key in self._fetching:
            self._refetch.add(key)  # read again once the read in progress is back
            return
        self._fetching.add(key)
        assert self.loop is not None
        task = self.loop.create_task(self._read(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, key: Key) -> None:
        namespace, name = key
        try:
            while True:
                self._refetch.discard(key)
                try:
                    body = await asyncio.to_thread(self._api.get_or_none, SECRETS, namespace, name)
                except KstrataError as error:
                    # Read again at its next change or relist.
                    self._known.pop(key, None)
                    logger.warning("reading followed Secret %s/%s: %s", namespace, name, error)
                    return
                for interest in self._wanted_by(key):
                    if interest.fetch:
                        interest.changed(namespace, name, body)
                if key not in self._refetch:
                    return
        finally:
            self._fetching.discard(key)
            self._tell_reading(key, False)

    def _tell_reading(self, key: Key, reading: bool) -> None:
        # Every fetching interest, followed or not by now: an end is never lost.
        for interest in self._interests:
            if interest.fetch and interest.reading is not None:
                interest.reading(key[0], key[1], reading)


def register(
    registry: kopf.OperatorRegistry, api: KubeApi, cluster: Cluster, settings: Settings
) -> FollowedSecrets:
    """The followed-Secrets watch, started on demand once kopf runs, stopped with it."""
    followed = FollowedSecrets(api, cluster, settings.namespaces)

    @kopf.on.startup(id="followed_secrets", registry=registry)
    async def attach(**_: object) -> None:
        followed.attach(asyncio.get_running_loop())

    @kopf.on.cleanup(id="followed_secrets", registry=registry)
    async def stop(**_: object) -> None:
        await followed.close()

    return followed
