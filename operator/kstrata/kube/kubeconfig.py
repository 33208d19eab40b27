"""What a kubeconfig document says about its contexts, read one way everywhere.

Three places read kubeconfigs, each for its own reason and cost: the login
(:mod:`kstrata.kube.connection`), shell completion (:mod:`kstrata.kube.names`,
which must answer within ~200 ms of a TAB and so imports no transport), and
the offline ``seal``/``import`` commands (the context's namespace, with
neither the client nor the transport).  They load the YAML their own way (the
login is strict, completion never complains), then ask this module which contexts it
defines: a pure function of the loaded document, standard library only, so
importing it costs nothing on any of those paths.
"""

from __future__ import annotations

from typing import Any

__all__ = ["context_names"]


def context_names(document: Any) -> list[str]:
    """The names of a kubeconfig's contexts, in file order; entries without one are skipped."""
    if not isinstance(document, dict):
        return []
    entries = document.get("contexts")
    return [
        entry["name"]
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("name"), str)
    ]
