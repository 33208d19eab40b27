"""The "Examples:" section of every command's ``--help``, kept in one place.

kubectl shows a few commented command lines under each command's help; people
copy them more than they read option lists.  Keeping them here, keyed by the
command path, rather than beside each parser, lets one unit test
(tests/unit/cli/test_cli_help_examples.py) walk the whole parser tree, fail
for a command without examples, and parse every example line with the real
parser, so an example that names a flag that no longer exists fails there
and not in a user's terminal.  Names and files come from ``examples/``.

:meth:`kstrata.cli.common.Parser.format_help` looks the section up by the
parser's ``prog``; this module is imported only when help is printed, so it
costs other invocations nothing.
"""

from __future__ import annotations

from typing import Final

#: One example: what it does (shown as a ``#`` comment), then the command line.
Example = tuple[str, str]

#: Command path (``prog`` without the leading ``kstrata``; "" is ``kstrata`` itself).
EXAMPLES: Final[dict[str, tuple[Example, ...]]] = {
    "": (
        (
            "Check profiles offline, as CI and pre-commit run it",
            "kstrata validate -f examples/config/",
        ),
        ("List profiles and sealed secrets with their status", "kstrata list -n shop"),
        ("Show the help of one command", "kstrata rollback --help"),
    ),
    "render": (
        (
            "Render payments for prod, its base profile from a second file",
            "kstrata render -f examples/config/payments.yaml "
            "-f examples/config/platform-defaults.yaml --env prod",
        ),
        (
            "The same rendering as JSON",
            "kstrata render -f examples/config/payments.yaml "
            "-f examples/config/platform-defaults.yaml --env prod -o json",
        ),
    ),
    "validate": (
        ("Validate every profile in a directory", "kstrata validate -f examples/config/"),
        (
            "Validate one environment only",
            "kstrata validate -f examples/config/payments.yaml "
            "-f examples/config/platform-defaults.yaml --env staging",
        ),
    ),
    "history": (
        ("The revisions of a ConfigProfile", "kstrata history payments -n shop"),
        (
            "The revisions of a SealedSecret, as JSON",
            "kstrata history kss/payments-db -n shop -o json",
        ),
    ),
    "diff": (
        ("What the last change did", "kstrata diff payments -n shop"),
        (
            "Revision 2 against revision 4",
            "kstrata diff payments -n shop --revision 2 --to-revision 4",
        ),
        (
            "What prod serves that staging does not",
            "kstrata diff payments -n shop --env staging --to-env prod",
        ),
        (
            "A file against the cluster, before kubectl apply",
            "kstrata diff -f examples/config/payments.yaml -n shop",
        ),
        (
            "Which items of a SealedSecret changed, as YAML",
            "kstrata diff kss/payments-db -n shop -o yaml",
        ),
    ),
    "rollback": (
        ("Back to the last good revision (stderr says which)", "kstrata rollback payments -n shop"),
        (
            "Back to revision 3, without waiting for the operator",
            "kstrata rollback payments -n shop --to-revision 3 --no-wait",
        ),
        ("See what would change, write nothing", "kstrata rollback payments -n shop --dry-run"),
        (
            "GitOps: print the restored manifest to commit instead",
            "kstrata rollback payments -n shop --to-revision 3 -o yaml > payments.yaml",
        ),
    ),
    "keys": (
        ("The published sealing keys", "kstrata keys list"),
        ("Add a new newest key", "kstrata keys rotate"),
    ),
    "keys list": (
        ("The published sealing keys", "kstrata keys list"),
        (
            "As JSON, from an operator in another namespace",
            "kstrata keys list --operator-namespace kstrata -o json",
        ),
    ),
    "keys export": (
        (
            "Save the public keys, to seal offline later",
            "kstrata keys export --out sealing-keys.json",
        ),
        (
            "Then, without the cluster",
            "kstrata seal --cert sealing-keys.json -n shop --name payments-db --from-file "
            "password=password.txt",
        ),
    ),
    "keys backup": (
        (
            "Save the private keys for break-glass recovery (keep the file offline)",
            "kstrata keys backup -o kstrata-keys-backup.yaml",
        ),
    ),
    "keys rotate": (
        ("Add a new newest key of the current suite", "kstrata keys rotate"),
        (
            "Add a post-quantum hybrid key, printed as YAML",
            "kstrata keys rotate --suite mlkem768-x25519 -o yaml",
        ),
    ),
    "migrate": (
        ("What moving from stakater/Reloader would change", "kstrata migrate reloader -n shop"),
    ),
    "migrate reloader": (
        ("What would change in one namespace (writes nothing)", "kstrata migrate reloader -n shop"),
        ("Every namespace, as YAML", "kstrata migrate reloader -A -o yaml"),
        (
            "Write the kstrata annotations, remove Reloader's",
            "kstrata migrate reloader -n shop --apply",
        ),
    ),
    "version": (
        ("The CLI's version", "kstrata version"),
        ("As JSON, for scripts", "kstrata version -o json"),
    ),
    "operator": (
        (
            "Run the operator in the foreground against the current context",
            "kstrata operator run --config-dir config --environment dev",
        ),
    ),
    "operator run": (
        (
            "Run the operator with the repository's dev settings",
            "kstrata operator run --config-dir config --environment dev",
        ),
        (
            "Watch one namespace only, without the webhook",
            "kstrata operator run -n shop --no-webhook --standalone",
        ),
    ),
    "operator settings": (
        (
            "The settings prod would run with",
            "kstrata operator settings --config-dir config --environment prod",
        ),
        (
            "As JSON, with a flag overriding the files",
            "kstrata operator settings --config-dir config --environment prod --log-level debug "
            "-o json",
        ),
    ),
    "list": (
        ("Profiles and sealed secrets in a namespace", "kstrata list -n shop"),
        ("Every namespace, with more columns", "kstrata list -A -o wide"),
        ("Those of one team, as TYPE/NAME lines", "kstrata list -n shop -l team=payments -o name"),
        ("As a Kubernetes List in YAML", "kstrata list -n shop -o yaml"),
    ),
    "get": (
        ("The configuration payments serves", "kstrata get payments -n shop"),
        ("One value, plain, for a script", "kstrata get payments -n shop --key database.pool"),
        (
            "What the spec merges to for prod, as JSON",
            "kstrata get cfp/payments -n shop --env prod --spec -o json",
        ),
    ),
    "set": (
        (
            "Set a value in prod's overlay; waits for the operator",
            "kstrata set payments -n shop --env prod replicas=8",
        ),
        (
            "Preview the profile, write nothing",
            "kstrata set payments -n shop --env prod log.level=debug --dry-run",
        ),
        (
            "Have the API server and the webhook judge it, write nothing",
            "kstrata set payments -n shop log.level=debug --dry-run=server -o json",
        ),
        (
            "Add a key the profile does not have yet",
            "kstrata set payments -n shop --create feature.newCheckout=true",
        ),
    ),
    "import": (
        (
            "A ConfigProfile reproducing an existing ConfigMap",
            "kstrata import configmap/orders-config -n shop --name orders",
        ),
        (
            "From files: a base and one file per environment",
            "kstrata import -f examples/migration/checkout/config.yaml "
            "--env staging=examples/migration/checkout/config.staging.yaml "
            "--env prod=examples/migration/checkout/config.prod.yaml --full --name checkout",
        ),
        ("The same manifest as JSON", "kstrata import configmap/orders-config -n shop -o json"),
        (
            "Bitnami SealedSecrets, opened with their controller's key backup, sealed for kstrata",
            "kstrata import sealedsecret --bitnami-keys bitnami-keys-backup.yaml -f bitnami/ "
            "--output-dir sealed/",
        ),
        (
            "A SOPS-encrypted Secret (decrypted by 'sops -d'), sealed offline",
            "kstrata import --sops -f payments-db.enc.yaml -n shop --name payments-db "
            "--cert sealing-keys.json",
        ),
    ),
    "seal": (
        (
            "Seal a password from a file with the cluster's public key",
            "kstrata seal -n shop --name payments-db --from-file password=password.txt > "
            "payments-db.yaml",
        ),
        (
            "Offline, with the bundle from 'kstrata keys export'",
            "kstrata seal --cert sealing-keys.json -n shop --name payments-db --from-file "
            "password=password.txt",
        ),
        (
            "A Secret manifest from kubectl, read on stdin",
            "kubectl create secret generic payments-db --from-file=password=password.txt "
            "--dry-run=client -o yaml | kstrata seal -n shop -f -",
        ),
        (
            "Every Secret manifest under a directory, in one run, one file each",
            "kstrata seal --cert sealing-keys.json -f secrets/ --output-dir sealed/",
        ),
        (
            "Add or replace one item in a committed file",
            "kstrata seal --merge-into payments-db.yaml --from-file api-token=token.txt",
        ),
        (
            "One bare token for spec.encryptedData.password, value on stdin",
            "kstrata seal --raw --key password -n shop --name payments-db < password.txt",
        ),
    ),
    "unseal": (
        (
            "Which items open with the backup (prints no value)",
            "kstrata unseal --recovery-keys kstrata-keys-backup.yaml -f payments-db.yaml",
        ),
        (
            "Break glass: the Secret manifest, values in clear",
            "kstrata unseal --recovery-keys kstrata-keys-backup.yaml -f payments-db.yaml "
            "--i-know-this-prints-secrets",
        ),
    ),
    "reseal": (
        (
            "After 'kstrata keys rotate': reseal a repository in place (only tokens change)",
            "kstrata reseal -f deploy/ --in-place",
        ),
        (
            "Move to a new cluster whose key id is in reseal_recipients",
            "kstrata reseal -f deploy/ --cert new-cluster-keys.json --output-dir moved/",
        ),
    ),
    "watch": (
        (
            "Sidecar: SIGHUP the application when config.yaml changes and validates",
            "kstrata watch /etc/app --file config.yaml --schema /etc/app-schema/schema.json "
            "--signal HUP --pidfile /run/app/app.pid",
        ),
        (
            "Ask the application over HTTP to reload",
            "kstrata watch /etc/app --http-post http://127.0.0.1:9090/-/reload",
        ),
        (
            "Run a command once, on the first change",
            "kstrata watch /etc/app --exec 'nginx -s reload' --once",
        ),
    ),
    "completion": (
        ("bash, this shell only", "source <(kstrata completion bash)"),
        (
            "bash, every new shell",
            "kstrata completion bash > ~/.local/share/bash-completion/completions/kstrata",
        ),
        ("zsh, this shell only (after compinit)", "source <(kstrata completion zsh)"),
        ("zsh, every new shell", 'kstrata completion zsh > "${fpath[1]}/_kstrata"'),
        ("fish", "kstrata completion fish > ~/.config/fish/completions/kstrata.fish"),
    ),
}


def command_path(prog: str) -> str:
    """``kstrata keys rotate`` -> ``keys rotate``; ``kstrata`` -> ``""``."""
    words = prog.split()
    return " ".join(words[1:])


def section(prog: str) -> str:
    """The help's "Examples:" section for the parser named ``prog``, or "" if none."""
    examples = EXAMPLES.get(command_path(prog))
    if not examples:
        return ""
    lines = ["", "Examples:"]
    for index, (what, command) in enumerate(examples):
        if index:
            lines.append("")
        lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines) + "\n"
