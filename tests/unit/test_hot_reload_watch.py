"""kstrata.watch: follow the kubelet's ..data swap; hand over only complete, valid, new configs.

Two styles of test: most step a Watcher by hand with :meth:`Watcher.poll` and a
fake clock, which makes "it did NOT fire" a deterministic statement rather
than a hope about timing; the threaded ones run the real polling thread and
wait for progress (the ``polls`` counter, the callback) with deadlines.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from kstrata import watch as watch_module
from kstrata.errors import (
    DocumentError,
    InvalidInputError,
    InvalidSchemaError,
    KstrataError,
    SchemaViolationError,
    UsageError,
)
from kstrata.watch import Watcher, parse_auto, parse_env, parse_properties, watch
from support.kubelet_volume import KubeletVolume
from support.waiting import wait_for

CANARY = "CANARY-7f3a9c"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["port"],
    "properties": {"port": {"type": "integer"}, "name": {"type": "string"}},
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """Collects callbacks and reported errors (from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configs: list[Any] = []
        self._errors: list[KstrataError] = []

    def callback(self, config: Any) -> None:
        with self._lock:
            self._configs.append(config)

    def on_error(self, error: KstrataError) -> None:
        with self._lock:
            self._errors.append(error)

    @property
    def configs(self) -> list[Any]:
        with self._lock:
            return list(self._configs)

    @property
    def errors(self) -> list[KstrataError]:
        with self._lock:
            return list(self._errors)


@pytest.fixture
def volume(tmp_path: Path) -> KubeletVolume:
    vol = KubeletVolume(tmp_path / "config")
    vol.project({"config.yaml": "port: 1\nname: first\n"})
    return vol


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def stepped(path: Path, rec: Recorder, clock: FakeClock, **options: Any) -> Watcher:
    options.setdefault("debounce", 0.5)
    watcher = Watcher(path, rec.callback, on_error=rec.on_error, clock=clock, **options)
    watcher.load()
    return watcher


def polled(watcher: Watcher, more: int) -> Callable[[], bool]:
    """A probe for `more` further looks by the watcher, counted from now."""
    target = watcher.polls + more
    return lambda: watcher.polls >= target


def delivered(rec: Recorder, count: int) -> bool:
    return len(rec.configs) == count


def settle(watcher: Watcher, clock: FakeClock) -> bool:
    """Poll past the debounce: True if a config was adopted on the way."""
    adopted = watcher.poll()
    clock.advance(10)
    return watcher.poll() or adopted


# --- following the kubelet's swap ------------------------------------------


def test_start_loads_without_calling_back_then_a_swap_calls_back_after_the_debounce(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    watcher = stepped(volume.root / "config.yaml", rec, clock)
    assert watcher.current == {"port": 1, "name": "first"}
    assert watcher.generation == 1
    assert rec.configs == []

    volume.project({"config.yaml": "port: 2\nname: second\n"})
    assert not watcher.poll(), "a change waits out the debounce"
    clock.advance(0.4)
    assert not watcher.poll()
    clock.advance(0.2)
    assert watcher.poll()
    assert rec.configs == [{"port": 2, "name": "second"}]
    assert watcher.current == {"port": 2, "name": "second"}
    assert watcher.generation == 2
    assert rec.errors == []


def test_a_half_written_file_is_never_read_only_the_swap_counts(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    full = "".join(f"key{i}: value{i}\n" for i in range(200)) + "port: 3\n"
    watcher = stepped(volume.root / "config.yaml", rec, clock)

    # The kubelet is part-way through writing the new timestamped directory.
    staged = volume.stage({})
    with open(staged / "config.yaml", "w") as handle:
        handle.write(full[: len(full) // 2])
        handle.flush()
        for _ in range(5):
            clock.advance(1.0)
            assert not watcher.poll()
        handle.write(full[len(full) // 2 :])
    # Complete now, but still not linked: nothing may happen yet.
    clock.advance(1.0)
    assert not watcher.poll()
    assert rec.configs == []
    assert watcher.current == {"port": 1, "name": "first"}

    volume.swap(staged)
    assert settle(watcher, clock)
    assert len(rec.configs) == 1
    assert rec.configs[0]["port"] == 3
    assert len(rec.configs[0]) == 201, "the whole file, never a prefix"
    assert rec.errors == []


def test_partial_writes_race_a_running_watcher_and_it_only_ever_sees_whole_files(
    tmp_path: Path, rec: Recorder
) -> None:
    volume = KubeletVolume(tmp_path / "config")
    volume.project({"config.yaml": "round: 0\npadding: []\ntail: end\n"})
    rounds = 4
    with Watcher(
        volume.root / "config.yaml",
        rec.callback,
        on_error=rec.on_error,
        debounce=0.02,
        poll_interval=0.005,
    ) as watcher:
        for number in range(1, rounds + 1):
            padding = "".join(f"  - item {i}\n" for i in range(500))
            text = f"round: {number}\npadding:\n{padding}tail: end\n"
            staged = volume.stage({})
            with open(staged / "config.yaml", "w") as handle:
                handle.write(text[: len(text) // 3])
                handle.flush()
                # The watcher gets many looks at the half-written directory.
                wait_for(polled(watcher, 10), timeout=5, what="polls")
                handle.write(text[len(text) // 3 :])
            assert len(rec.configs) == number - 1, "nothing may fire before the swap"
            volume.swap(staged)
            wait_for(partial(delivered, rec, number), timeout=5, what=f"round {number}")
    assert [config["round"] for config in rec.configs] == list(range(1, rounds + 1))
    assert all(config["tail"] == "end" and len(config["padding"]) == 500 for config in rec.configs)
    assert rec.errors == []


def test_a_read_that_races_the_next_swap_is_retried_not_reported(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = stepped(volume.root / "config.yaml", rec, clock)
    volume.project({"config.yaml": "port: 2\n"})
    real_read = watch_module._read_regular
    raced: list[str] = []

    def read_while_the_kubelet_swaps_again(path: str, source: str) -> bytes:
        if not raced:
            # Between our look at ..data and our read, the next version lands
            # and the kubelet deletes the directory we were about to read.
            raced.append(path)
            volume.project({"config.yaml": "port: 3\n"})
        return real_read(path, source)

    monkeypatch.setattr(watch_module, "_read_regular", read_while_the_kubelet_swaps_again)
    assert not settle(watcher, clock)
    assert raced
    assert rec.errors == [], "a vanished old directory is not an error"
    assert settle(watcher, clock)
    assert rec.configs == [{"port": 3}]


# --- bad versions keep the previous config -------------------------------------


def test_invalid_yaml_is_reported_without_values_and_the_previous_config_stays(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    watcher = stepped(volume.root / "config.yaml", rec, clock)
    volume.project({"config.yaml": f"password: {CANARY}\n  broken: [\n"})
    assert not settle(watcher, clock)
    assert rec.configs == []
    assert watcher.current == {"port": 1, "name": "first"}
    [error] = rec.errors
    assert isinstance(error, DocumentError)
    assert str(volume.root / "config.yaml") in str(error)
    assert CANARY not in str(error)
    assert watcher.last_error is error

    # Reported once per version, not once per poll.
    for _ in range(5):
        clock.advance(1)
        watcher.poll()
    assert len(rec.errors) == 1

    volume.project({"config.yaml": "port: 4\n"})
    assert settle(watcher, clock)
    assert rec.configs == [{"port": 4}]
    assert watcher.last_error is None


def test_a_schema_violation_is_reported_by_path_and_rule_never_by_value(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    watcher = stepped(volume.root / "config.yaml", rec, clock, validate=SCHEMA)
    volume.project({"config.yaml": f"port: {CANARY}\n"})
    assert not settle(watcher, clock)
    assert rec.configs == []
    assert watcher.current == {"port": 1, "name": "first"}
    [error] = rec.errors
    assert isinstance(error, SchemaViolationError)
    assert [v.path for v in error.violations] == ["$.port"]
    assert str(error).startswith(str(volume.root / "config.yaml") + ": ")
    assert "$.port: must be of type integer" in str(error)
    assert CANARY not in str(error)


def test_the_default_error_report_is_a_log_line_without_values(
    volume: KubeletVolume, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Any] = []
    watcher = Watcher(volume.root / "config.yaml", calls.append, validate=SCHEMA, clock=clock)
    watcher.load()
    volume.project({"config.yaml": f"port: {CANARY}\n"})
    with caplog.at_level(logging.WARNING, logger="kstrata.watch"):
        assert not settle(watcher, clock)
    assert calls == []
    assert "schema validation failed" in caplog.text
    assert "keeping the previous configuration" in caplog.text
    assert CANARY not in caplog.text


@pytest.mark.parametrize("how", ["raises", "returns False"])
def test_a_rejecting_validator_keeps_the_previous_config_and_its_text_stays_out(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock, how: str
) -> None:
    def validator(config: Any) -> bool:
        if config.get("port") == 666:
            if how == "raises":
                raise ValueError(f"port {CANARY} is cursed")
            return False
        return True

    watcher = stepped(volume.root / "config.yaml", rec, clock, validate=validator)
    volume.project({"config.yaml": "port: 666\n"})
    assert not settle(watcher, clock)
    [error] = rec.errors
    assert isinstance(error, InvalidInputError)
    assert CANARY not in str(error)
    expected = "the validator raised ValueError" if how == "raises" else "rejected by the validator"
    assert str(error) == f"{volume.root / 'config.yaml'}: {expected}"
    assert rec.configs == []
    assert watcher.current == {"port": 1, "name": "first"}


def test_a_custom_parser_that_fails_is_reported_by_type_only(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    def parse(data: bytes, source: str) -> Any:
        if b"bad" in data:
            raise RuntimeError(f"cannot parse {data!r} {CANARY}")
        return data.decode()

    watcher = stepped(volume.root / "config.yaml", rec, clock, parse=parse)
    volume.project({"config.yaml": f"bad {CANARY}"})
    assert not settle(watcher, clock)
    [error] = rec.errors
    assert str(error) == f"{volume.root / 'config.yaml'}: the parser raised RuntimeError"
    assert watcher.current == "port: 1\nname: first\n"


def test_a_key_that_disappears_is_reported_and_the_previous_config_stays(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    watcher = stepped(volume.root / "config.yaml", rec, clock)
    volume.project({"other.yaml": "x: 1\n"})
    assert not settle(watcher, clock)
    [error] = rec.errors
    assert str(error) == f"{volume.root / 'config.yaml'}: does not exist"
    assert watcher.current == {"port": 1, "name": "first"}


def test_an_invalid_start_up_version_leaves_current_empty_until_a_valid_one(
    tmp_path: Path, rec: Recorder, clock: FakeClock
) -> None:
    volume = KubeletVolume(tmp_path / "config")
    volume.project({"config.yaml": f"port: {CANARY}\n"})
    watcher = stepped(volume.root / "config.yaml", rec, clock, validate=SCHEMA)
    assert watcher.current is None
    assert watcher.generation == 0
    assert len(rec.errors) == 1
    assert CANARY not in str(rec.errors[0])
    volume.project({"config.yaml": "port: 8080\n"})
    assert settle(watcher, clock)
    assert rec.configs == [{"port": 8080}]


def test_an_exception_in_the_callback_is_reported_and_the_watcher_carries_on(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    delivered: list[Any] = []

    def callback(config: Any) -> None:
        delivered.append(config)
        if len(delivered) == 1:
            raise KeyError(CANARY)

    watcher = Watcher(
        volume.root / "config.yaml", callback, on_error=rec.on_error, clock=clock, debounce=0
    )
    watcher.load()
    volume.project({"config.yaml": "port: 2\n"})
    assert watcher.poll()
    [error] = rec.errors
    assert str(error) == f"{volume.root / 'config.yaml'}: the reload callback raised KeyError"
    assert watcher.current == {"port": 2}, "the config was valid; only applying it failed"
    volume.project({"config.yaml": "port: 3\n"})
    assert watcher.poll()
    assert delivered == [{"port": 2}, {"port": 3}]


# --- only real changes, once per burst ------------------------------------------


def test_a_burst_of_swaps_yields_one_callback_with_the_last_content(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    watcher = stepped(volume.root / "config.yaml", rec, clock)
    for port in range(2, 7):
        volume.project({"config.yaml": f"port: {port}\n"})
        assert not watcher.poll()
        clock.advance(0.3)  # less than the debounce: each swap restarts it
    assert not watcher.poll()
    clock.advance(0.5)
    assert watcher.poll()
    assert rec.configs == [{"port": 6}]


def test_a_burst_of_swaps_with_the_real_thread(volume: KubeletVolume, rec: Recorder) -> None:
    with Watcher(
        volume.root / "config.yaml",
        rec.callback,
        on_error=rec.on_error,
        debounce=0.5,
        poll_interval=0.005,
    ) as watcher:
        for port in range(2, 6):
            volume.project({"config.yaml": f"port: {port}\n"})
            # Make sure the watcher has seen this intermediate version.
            wait_for(polled(watcher, 2), timeout=5, interval=0.005)
        # The first callback must already be the last version: an intermediate
        # one would have come first.  (No swaps follow, so no later one can.)
        wait_for(lambda: rec.configs, timeout=5, what="the reload")
    assert rec.configs == [{"port": 5}]


def test_no_callback_when_the_content_did_not_change(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    watcher = stepped(volume.root / "config.yaml", rec, clock)
    volume.project({"config.yaml": "port: 1\nname: first\n"})  # the same bytes
    assert not settle(watcher, clock)
    volume.project({"config.yaml": "# reformatted\nname:   first\nport: 1\n"})  # same meaning
    assert not settle(watcher, clock)
    assert rec.configs == []
    assert watcher.generation == 1
    # 1 and true are equal in Python but not in the config: that is a change.
    volume.project({"config.yaml": "port: 1\nname: first\ndebug: 1\n"})
    assert settle(watcher, clock)
    volume.project({"config.yaml": "port: 1\nname: first\ndebug: true\n"})
    assert settle(watcher, clock)
    assert [config["debug"] for config in rec.configs] == [1, True]
    assert rec.errors == []


def test_reverting_to_the_current_bytes_after_a_bad_version_is_quiet(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    watcher = stepped(volume.root / "config.yaml", rec, clock)
    volume.project({"config.yaml": "port: [\n"})
    settle(watcher, clock)
    assert watcher.last_error is not None
    volume.project({"config.yaml": "port: 1\nname: first\n"})
    assert not settle(watcher, clock)
    assert rec.configs == []
    assert watcher.last_error is None


# --- shapes of watching -----------------------------------------------------------


def test_watching_the_directory_hands_over_every_key_parsed(
    tmp_path: Path, rec: Recorder, clock: FakeClock
) -> None:
    volume = KubeletVolume(tmp_path / "config")
    volume.project({"config.yaml": "port: 1\n", "app.env": "MODE=a\n", "motd": "hello\n"})
    watcher = stepped(volume.root, rec, clock)
    assert watcher.current == {
        "config.yaml": {"port": 1},
        "app.env": {"MODE": "a"},
        "motd": "hello\n",
    }
    volume.project({"config.yaml": "port: 1\n", "app.env": "MODE=b\n", "motd": "hello\n"})
    assert settle(watcher, clock)
    assert rec.configs == [
        {"config.yaml": {"port": 1}, "app.env": {"MODE": "b"}, "motd": "hello\n"}
    ]


def test_a_plain_file_without_data_link_is_followed_by_its_stat(
    tmp_path: Path, rec: Recorder, clock: FakeClock
) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"port": 1}')
    watcher = stepped(path, rec, clock)
    assert watcher.current == {"port": 1}
    # The safe way to update a plain file: write a temporary one, rename it over.
    tmp = tmp_path / ".settings.json.tmp"
    tmp.write_text('{"port": 2}')
    os.replace(tmp, path)
    assert settle(watcher, clock)
    assert rec.configs == [{"port": 2}]
    path.touch()  # a new mtime, the same content
    assert not settle(watcher, clock)
    path.write_text('{"port": 3}')  # in place
    assert settle(watcher, clock)
    assert rec.configs == [{"port": 2}, {"port": 3}]


def test_a_plain_directory_ignores_dot_files(
    tmp_path: Path, rec: Recorder, clock: FakeClock
) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    watcher = stepped(tmp_path, rec, clock)
    assert watcher.current == {"a.yaml": {"a": 1}}
    (tmp_path / ".a.yaml.swp").write_text("editor junk")
    assert not settle(watcher, clock)
    (tmp_path / "b.yaml").write_text("b: 2\n")
    assert settle(watcher, clock)
    assert rec.configs == [{"a.yaml": {"a": 1}, "b.yaml": {"b": 2}}]


def test_initial_true_calls_back_for_the_start_up_version(
    volume: KubeletVolume, rec: Recorder, clock: FakeClock
) -> None:
    stepped(volume.root / "config.yaml", rec, clock, initial=True)
    assert rec.configs == [{"port": 1, "name": "first"}]


def test_blocking_watch_returns_when_stop_is_set(volume: KubeletVolume) -> None:
    stop = threading.Event()
    seen: list[Any] = []

    def callback(config: Any) -> None:
        seen.append(config)
        if len(seen) == 2:
            stop.set()

    thread = threading.Thread(
        target=watch,
        args=(volume.root / "config.yaml", callback),
        kwargs={"debounce": 0.02, "poll_interval": 0.01, "stop": stop, "initial": True},
        daemon=True,
    )
    thread.start()
    # initial=True: the first call says the start-up version is loaded.
    wait_for(lambda: seen, timeout=5, what="the start-up version")
    volume.project({"config.yaml": "port: 9\n"})
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert seen == [{"port": 1, "name": "first"}, {"port": 9}]


def test_start_sets_current_before_returning_and_stop_ends_the_thread(
    volume: KubeletVolume,
) -> None:
    watcher = Watcher(volume.root / "config.yaml", lambda _c: None, poll_interval=0.01)
    watcher.start()
    try:
        assert watcher.current == {"port": 1, "name": "first"}
        with pytest.raises(UsageError, match="already been started"):
            watcher.start()
    finally:
        watcher.stop()
    assert watcher._thread is not None
    assert not watcher._thread.is_alive()


# --- arguments ----------------------------------------------------------------------


def test_a_broken_schema_is_refused_at_construction(volume: KubeletVolume) -> None:
    with pytest.raises(InvalidSchemaError):
        Watcher(volume.root / "config.yaml", print, validate={"type": "no-such-type"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"parse": "toml"}, "unknown parser 'toml'"),
        ({"debounce": -1}, "debounce"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"validate": 42}, "validate must be"),
    ],
)
def test_bad_arguments_are_usage_errors(
    volume: KubeletVolume, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        Watcher(volume.root / "config.yaml", print, **options)


# --- the small parsers --------------------------------------------------------------


def test_env_files() -> None:
    text = (
        b"# comment\n\nexport A=1\nB = two words # trailing comment\n"
        b'C=\'literal # not a comment \\n\'\nD="line\\nbreak \\"q\\""\nE=\n'
    )
    assert parse_env(text) == {
        "A": "1",
        "B": "two words",
        "C": "literal # not a comment \\n",
        "D": 'line\nbreak "q"',
        "E": "",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{CANARY}\n", r"f\.env:1: expected KEY=VALUE"),
        (f"A=1\nA={CANARY}\n", r"f\.env:2: duplicate key 'A'"),
        (f"A='{CANARY}\n", r"f\.env:1: unterminated quoted value for key 'A'"),
    ],
)
def test_env_errors_name_lines_not_values(text: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as caught:
        parse_env(text.encode(), "f.env")
    assert CANARY not in str(caught.value)


def test_properties_files() -> None:
    text = (
        b"# comment\n! also a comment\na=1\nb : 2\nc 3\n"
        b"long = first \\\n       second\n"
        b"escaped\\ key = tab\\there \\u00e9\n"
        b"empty=\n"
    )
    assert parse_properties(text) == {
        "a": "1",
        "b": "2",
        "c": "3",
        "long": "first second",
        "escaped key": "tab\there \u00e9",
        "empty": "",
    }


def test_properties_errors_name_lines_not_values() -> None:
    with pytest.raises(DocumentError, match=r"p\.properties:2: malformed") as caught:
        parse_properties(f"a=1\nb={CANARY}\\u12\n".encode(), "p.properties")
    assert CANARY not in str(caught.value)


def test_auto_parsing_goes_by_extension() -> None:
    assert parse_auto(b"a: 1\n", "/x/c.yml") == {"a": 1}
    assert parse_auto(b'{"a": 1}', "/x/c.json") == {"a": 1}
    assert parse_auto(b"A=1\n", "/x/.env") == {"A": "1"}
    assert parse_auto(b"a=1\n", "/x/app.properties") == {"a": "1"}
    assert parse_auto(b"a: 1\n", "/x/nginx.conf") == "a: 1\n"
    assert parse_auto(b"\x30\x82\xff", "/x/keystore.p12") == b"\x30\x82\xff"
    with pytest.raises(DocumentError, match=r"^/x/blob: not valid UTF-8") as caught:
        watch_module.PARSERS["text"](b"\xff\xfe" + CANARY.encode(), "/x/blob")
    assert CANARY not in str(caught.value)
