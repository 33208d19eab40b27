"""The leak scanner finds every form it claims to look for, and nothing else.

The cluster leak test passes when the scan finds nothing; this module is
what makes "nothing" mean something: each encoded form is planted in a fake
dump (an annotation, a label key, an event note, a log line, a base64'd
document) and must be found, at the right location, without the canary ever
appearing in what the scanner reports.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kstrata.cli.main import main
from kstrata.crypto import KeyRing, PublicKeyBundle, generate_keypair
from support.leaks import (
    REDACTED,
    Canary,
    CliTranscript,
    Hit,
    LogCapture,
    encoded_forms,
    object_texts,
    redact,
    report,
    scan,
)

CANARY = Canary.new("unit")
OTHER = Canary.new("other")


def produced_secret(data: dict[str, str], annotations: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "ns",
            "annotations": annotations,
            "ownerReferences": [
                {"kind": "SealedSecret", "name": "db", "controller": True, "uid": "u"}
            ],
        },
        "data": data,
    }


def test_canaries_are_unique_and_never_shown() -> None:
    assert Canary.new("x").value != Canary.new("x").value
    assert CANARY.text not in repr(CANARY)
    assert CANARY.text not in str([CANARY])


def test_the_forms_are_the_ones_promised() -> None:
    value = CANARY.value
    forms = encoded_forms(value)
    sha1, sha256 = hashlib.sha1(value).digest(), hashlib.sha256(value).digest()
    expected = {
        value.decode(),
        base64.b64encode(value).decode(),
        base64.b64encode(value).decode().rstrip("="),
        base64.urlsafe_b64encode(value).decode(),
        base64.urlsafe_b64encode(value).decode().rstrip("="),
        value.hex(),
        value.hex().upper(),
        sha1.hex(),
        sha1.hex().upper(),
        base64.b64encode(sha1).decode(),
        base64.urlsafe_b64encode(sha1).decode().rstrip("="),
        sha256.hex(),
        sha256.hex().upper(),
        base64.b64encode(sha256).decode(),
        base64.b64encode(sha256).decode().rstrip("="),
        base64.urlsafe_b64encode(sha256).decode(),
        base64.urlsafe_b64encode(sha256).decode().rstrip("="),
    }
    assert expected <= set(forms.values())
    assert all(forms.values()), "an empty form would match everything"


@pytest.mark.parametrize("form", sorted(encoded_forms(CANARY.value)))
def test_each_form_planted_in_an_annotation_is_found(form: str) -> None:
    planted = encoded_forms(CANARY.value)[form]
    obj = {
        "kind": "SealedSecret",
        "metadata": {"name": "db", "namespace": "ns", "annotations": {"note": f"x{planted}y"}},
        "status": {"conditions": [{"message": "clean"}]},
    }
    hits = scan(object_texts(obj), [CANARY, OTHER])
    assert Hit("SealedSecret ns/db metadata.annotations.note", "unit", form) in hits
    assert {h.canary for h in hits} == {"unit"}
    assert {h.location for h in hits} == {"SealedSecret ns/db metadata.annotations.note"}


@pytest.mark.parametrize("form", sorted(encoded_forms(CANARY.value)))
def test_each_form_is_found_in_logs_metrics_and_cli_output(form: str) -> None:
    planted = encoded_forms(CANARY.value)[form]
    capture = LogCapture()
    logger = logging.getLogger("test.leaks.planted")
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("patching with %r", {"v": planted})
        logger.info("clean line")
    finally:
        logger.removeHandler(capture)
    cli = CliTranscript({})
    cli.record("seal --from-literal", 1, "", f"error: {planted}\n")
    texts = {
        **capture.texts(),
        **cli.outputs,
        "/metrics": f'kstrata_x{{label="{planted}"}} 1\n',
    }
    locations = {h.location for h in scan(texts, [CANARY]) if h.form == form}
    assert locations == {
        "log #0 (test.leaks.planted)",
        "cli #0 seal --from-literal (exit 1) stderr",
        "/metrics",
    }


def test_tracebacks_and_extras_of_log_records_are_scanned() -> None:
    capture = LogCapture()
    logger = logging.getLogger("test.leaks.traceback")
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        try:
            raise ValueError(CANARY.text)
        except ValueError:
            logger.exception("failed")
        logger.info("with extras", extra={"k8s_skip": {"body": CANARY.value.hex()}})
    finally:
        logger.removeHandler(capture)
    hits = scan(capture.texts(), [CANARY])
    assert {(h.location, h.form) for h in hits} >= {
        ("log #0 (test.leaks.traceback)", "raw"),
        ("log #1 (test.leaks.traceback)", "hex"),
    }


def test_handlers_after_the_capture_see_redacted_records_only() -> None:
    seen: list[str] = []

    class Later(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(logging.Formatter().format(record))

    capture, later = LogCapture(redacting=[CANARY]), Later()
    logger = logging.getLogger("test.leaks.redacting")
    logger.addHandler(capture)
    logger.addHandler(later)
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning("value %s", CANARY.text)
        try:
            raise ValueError(base64.b64encode(CANARY.value).decode())
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(capture)
        logger.removeHandler(later)
    # The capture saw the truth (so the scan can find it)...
    assert {h.location for h in scan(capture.texts(), [CANARY])} == {
        "log #0 (test.leaks.redacting)",
        "log #1 (test.leaks.redacting)",
    }
    # ...what came after it saw the records redacted, traceback included.
    assert len(seen) == 2
    assert scan({str(i): text for i, text in enumerate(seen)}, [CANARY]) == []
    assert seen[0] == f"value {REDACTED}"
    assert "ValueError" in seen[1]
    assert REDACTED in seen[1]


@pytest.mark.parametrize("prefix", ["", "a", "ab"], ids=["offset-0", "offset-1", "offset-2"])
def test_a_canary_inside_a_base64_document_is_found_at_any_alignment(prefix: str) -> None:
    # kubectl's last-applied copy of a Secret, base64'd whole by some tool.
    document = json.dumps({"p": prefix, "stringData": {"password": CANARY.text}}).encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        texts = {"blob": encode(document).decode()}
        assert scan(texts, [CANARY]), f"missed with prefix {prefix!r} and {encode.__name__}"


@given(st.binary(min_size=2, max_size=40), st.binary(max_size=8), st.binary(max_size=8))
def test_any_value_base64d_inside_any_stream_is_found(
    value: bytes, before: bytes, after: bytes
) -> None:
    # From two bytes on, every alignment leaves at least one fixed character.
    canary = Canary("prop", value)
    offset = len(before) % 3
    for encode, name in ((base64.b64encode, "base64"), (base64.urlsafe_b64encode, "base64url")):
        stream = encode(before + value + after).decode()
        hits = scan({"s": stream}, [canary])
        assert Hit("s", "prop", f"{name} inside a stream (offset {offset})") in hits


def test_annotation_and_label_keys_are_scanned_and_locations_redacted() -> None:
    obj = {
        "kind": "ConfigMap",
        "metadata": {
            "name": "cm",
            "namespace": "ns",
            "labels": {CANARY.value.hex(): "x"},
            "annotations": {"kopf.zalando.org/last-handled-configuration": "{}"},
        },
    }
    hits = scan(object_texts(obj), [CANARY])
    assert [h.form for h in hits] == ["hex"]
    (hit,) = hits
    assert CANARY.value.hex() not in hit.location
    assert REDACTED in hit.location
    assert CANARY.text not in report(hits)
    assert all(form not in report(hits) for form in encoded_forms(CANARY.value).values())


def test_only_the_produced_secret_data_is_left_out() -> None:
    encoded = base64.b64encode(CANARY.value).decode()
    produced = produced_secret({"password": encoded}, {"note": "clean"})
    assert scan(object_texts(produced), [CANARY]) == []

    # The same Secret with the value in an annotation is a leak...
    leaky = produced_secret({"password": encoded}, {"note": encoded})
    assert {h.location for h in scan(object_texts(leaky), [CANARY])} == {
        "Secret ns/db metadata.annotations.note"
    }
    # ...and a Secret that no SealedSecret controls gets no exemption at all.
    unowned = {**produced, "metadata": {"name": "other", "namespace": "ns"}}
    assert {h.location for h in scan(object_texts(unowned), [CANARY])} == {
        "Secret ns/other data.password"
    }


def test_a_clean_dump_has_no_hit_and_redaction_is_total() -> None:
    texts = {
        "Event ns/e message": "unsealed 2 item(s) into Secret db at revision 1",
        "/metrics": 'kstrata_reconcile_total{kind="SealedSecret",result="ok"} 3.0',
        "hmac": "hmac-sha256:" + hashlib.sha256(b"key" + CANARY.value).hexdigest(),
    }
    assert scan(texts, [CANARY, OTHER]) == []
    assert report([]) == "no leak"
    mixed = f"a {CANARY.text} b {base64.b64encode(OTHER.value).decode()} c"
    assert redact(mixed, [CANARY, OTHER]) == f"a {REDACTED} b {REDACTED} c"


# --- the offline sealing and recovery commands, scanned (issue 15) ---------------------


def test_offline_multi_recipient_raw_and_recovery_flows_leak_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every output of the offline flows is scanned; only the requested unseal output holds it.

    The same scan the cluster test runs, over ``kstrata seal --cert a --cert b``,
    ``seal --raw`` (file and stdin), their error paths with the value in
    the wrong place, ``unseal`` without and with the explicit flag, and the
    files the commands wrote.
    """
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    pairs = [generate_keypair(created=datetime(2025, 6, 1, tzinfo=UTC)) for _ in range(2)]
    certs = []
    for index, pair in enumerate(pairs):
        cert = tmp_path / f"cert{index}.json"
        cert.write_text(PublicKeyBundle.of([pair]).serialize())
        certs += ["--cert", str(cert)]
    value = tmp_path / "value"
    value.write_bytes(CANARY.value)
    transcript = CliTranscript({})

    def cli(what: str, *argv: str, stdin: bytes | None = None) -> tuple[int, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out=out, err=err)
        stray = capsys.readouterr()
        transcript.record(what, code, out.getvalue() + stray.out, err.getvalue() + stray.err)
        return code, out.getvalue()

    where = ["-n", "payments", "--name", "db"]
    code, manifest = cli(
        "seal x2", "seal", *certs, *where, "--from-file", f"password={value}",
        "--from-literal", "user=app",
    )  # fmt: skip
    assert code == 0
    code, token = cli("seal --raw file", "seal", "--raw", *certs, *where, "--key", "t",
                      "--from-file", str(value))  # fmt: skip
    assert code == 0
    code, _ = cli("seal --raw stdin", "seal", "--raw", *certs[:2], *where, "--key", "t",
                  stdin=CANARY.value)  # fmt: skip
    assert code == 0
    for what, argv in {
        "raw with the value as a literal": ["--key", "t", "--from-literal", f"t={CANARY.text}"],
        "raw with the value as the key": ["--key", f"{CANARY.text}!"],
        "raw with the value as a path": ["--key", "t", "--from-file", CANARY.text],
        "raw with the value as the name": ["--key", "t", "--name", f"{CANARY.text}_"],
    }.items():
        code, _ = cli(what, "seal", "--raw", *certs, "-n", "payments", "--name", "db", *argv)
        assert code != 0, what
    sealed = tmp_path / "sealed.yaml"
    sealed.write_text(manifest)
    backup = tmp_path / "backup.yaml"
    data = {n: base64.b64encode(e).decode() for n, e in KeyRing(pairs[:1]).to_secret_data().items()}
    backup.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "data": data}
        )
    )
    code, _ = cli("unseal summary", "unseal", "--recovery-keys", str(backup), "-f", str(sealed))
    assert code == 0
    # A value typed as --env: a valid name the manifest does not declare, never echoed.
    cli("unseal, env given as the value", "unseal", "--recovery-keys", str(backup),
        "-f", str(sealed), "--env", CANARY.text)  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["unseal", "--recovery-keys", str(backup), "-f", str(sealed),
         "--i-know-this-prints-secrets"],
        out=out,
        err=err,
    )  # fmt: skip
    assert code == 0
    requested = out.getvalue()
    stray = capsys.readouterr()
    transcript.record("unseal --i-know-this-prints-secrets (stderr only)", code, stray.out,
                      err.getvalue() + stray.err)  # fmt: skip

    texts = {
        **transcript.outputs,
        "file sealed.yaml": sealed.read_text(),
        "the raw token": token,
    }
    assert len(transcript.outputs) == 2 * 10
    assert not scan(texts, [CANARY]), report(scan(texts, [CANARY]))
    # Positive control: the one output asked to hold values does hold it (as base64).
    assert {h.form for h in scan({"requested": requested}, [CANARY])} >= {"base64"}
