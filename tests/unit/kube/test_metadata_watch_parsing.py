"""The pure parts of kstrata.kube.metadata_watch: watch lines and their splitting."""

from __future__ import annotations

import json

import pytest

from kstrata.kube.metadata_watch import StreamError, parse_event, split_lines


def line(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_an_event_keeps_identity_and_version_only() -> None:
    event = parse_event(
        line(
            {
                "type": "MODIFIED",
                "object": {
                    "kind": "PartialObjectMetadata",
                    "metadata": {
                        "name": "db",
                        "namespace": "shop",
                        "uid": "u-1",
                        "resourceVersion": "42",
                        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x"},
                    },
                },
            }
        )
    )
    assert event is not None
    assert event.type == "MODIFIED"
    assert event.resource_version == "42"
    assert event.object is not None
    assert (event.object.namespace, event.object.name, event.object.uid) == ("shop", "db", "u-1")
    # Nothing else of the metadata survives parsing.
    assert set(vars(event.object)) == {"namespace", "name", "uid", "resource_version"}


def test_bookmarks_and_errors() -> None:
    bookmark = parse_event(
        line({"type": "BOOKMARK", "object": {"metadata": {"name": "", "resourceVersion": "7"}}})
    )
    assert bookmark is not None
    assert (bookmark.type, bookmark.object, bookmark.resource_version) == ("BOOKMARK", None, "7")
    gone = parse_event(line({"type": "ERROR", "object": {"kind": "Status", "code": 410}}))
    assert gone is not None
    assert (gone.type, gone.code) == ("ERROR", 410)


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", line({"object": {}}), line({"type": "ADDED", "object": {"metadata": {}}})],
)
def test_malformed_lines_are_skipped(raw: bytes) -> None:
    assert parse_event(raw) is None


def test_lines_are_split_across_chunks() -> None:
    chunks = [b'{"a":', b'1}\n{"b"', b":2}\n\n", b'{"c":3}']
    assert list(split_lines(iter(chunks))) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_a_line_over_the_limit_is_an_error() -> None:
    with pytest.raises(StreamError):
        list(split_lines(iter([b"x" * 10, b"y" * 10]), limit=15))
