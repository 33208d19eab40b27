"""The kopf side of kstrata: handlers as thin adapters, and the operator runner.

Only this package imports kopf.  Handlers translate kopf's calling convention
into calls of ``kstrata.app`` use cases and map ``kstrata.errors`` to
``kopf.PermanentError`` / ``kopf.TemporaryError``; they hold no logic of
their own.
"""
