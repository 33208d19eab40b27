"""The one place kstrata talks to the Kubernetes API.

Everything above this package (the use cases in ``kstrata.app``, the kopf
handlers, the CLI) goes through it; nothing below it (domain, crypto) knows a
cluster exists.  Errors from the ``kubernetes`` client are translated here into
``kstrata.errors`` so callers never inspect HTTP status codes or error text.
"""
