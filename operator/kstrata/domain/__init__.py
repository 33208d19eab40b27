"""The pure configuration domain: everything about a ConfigProfile but I/O.

Safe document loading (``documents``), the JSON value model and paths
(``jsonvalue``), RFC 7386 merging (``merge``), environment selection
(``environments``), ``spec.extends`` resolution (``extends``), JSON Schema
checks (``schema``), rendering (``render``) and the typed spec with its use
cases (``profile``).

Nothing here talks to the cluster, the network or the file system, and
nothing imports kopf or the Kubernetes client: callers pass data and lookup
callables in.  Import the submodules you need; this package module imports
none of them, so importing it costs nothing (the offline CLI starts in well
under 200 ms, and jsonschema is only imported when a schema is compiled).
"""
