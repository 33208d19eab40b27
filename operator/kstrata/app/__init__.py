"""Use cases: what the operator and the CLI do, built from the layers below.

Reconciling a profile, unsealing into a Secret, writing history, rolling
back: each use case combines ``kstrata.kube`` (the cluster) with the pure
``kstrata.domain`` and ``kstrata.crypto``.  Neither kopf nor argparse
appears here, so the same code serves the handlers and the CLI.
"""
