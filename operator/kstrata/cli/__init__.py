"""The ``kstrata`` command line: a thin shell over the library.

Each subcommand parses its arguments, calls one library function and prints
the result.  ``main(argv)`` returns the exit code instead of exiting, so it
is testable in-process.  Exceptions become messages and exit codes in exactly
one place, ``kstrata.cli.main``.

Offline commands (``render``, ``validate``, ``seal --cert``) must not import
kopf or the Kubernetes client: imports of those happen inside the commands
that need a cluster.
"""
