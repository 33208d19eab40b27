"""kstrata: per-environment configuration and sealed secrets for Kubernetes.

The package is layered (see docs/architecture.md): pure domain and crypto code
at the bottom, one module that talks to the Kubernetes API above them, and the
kopf handlers and the CLI as thin shells on top.  Importing the package itself
must stay cheap: the offline CLI commands start in well under 200 ms.
"""

__version__ = "0.1.0"
