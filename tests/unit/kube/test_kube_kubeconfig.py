"""``kube.kubeconfig.context_names``: the one reading of a kubeconfig's contexts.

The login's unknown-context error, ``--context`` completion and the offline
``seal``'s unknown-context error all list contexts through it, so a
malformed entry is skipped the same way in all three.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kstrata.app.sealing_toolkit import kubeconfig_namespace
from kstrata.errors import UnknownContextError
from kstrata.kube.kubeconfig import context_names
from kstrata.kube.names import contexts

MALFORMED = """
current-context: main
contexts:
- name: main
  context: {cluster: c, namespace: apps}
- context: {cluster: nameless}
- name: 7
- just a string
- name: other
"""


def test_names_in_file_order_skipping_malformed_entries() -> None:
    document = {"contexts": [{"name": "b"}, {"context": {}}, "x", {"name": 3}, {"name": "a"}]}
    assert context_names(document) == ["b", "a"]
    assert context_names({"contexts": None}) == []
    assert context_names({"contexts": "main"}) == []
    assert context_names(None) == []
    assert context_names(["contexts"]) == []


def test_completion_and_the_offline_seal_list_the_same_contexts(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(MALFORMED)
    # Completion used to offer nothing at all once one entry had no name.
    assert contexts(kubeconfig) == ["main", "other"]
    assert kubeconfig_namespace(kubeconfig, None) == "apps"
    with pytest.raises(UnknownContextError) as error:
        kubeconfig_namespace(kubeconfig, "typo")
    assert "its contexts: main, other;" in str(error.value)
