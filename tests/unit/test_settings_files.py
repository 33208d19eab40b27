"""The operator's settings files (config/) and their loader, ``kstrata.settings.load_settings``."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from kstrata.domain.documents import load_yaml
from kstrata.domain.jsonvalue import JSONValue
from kstrata.domain.schema import check_schema
from kstrata.errors import SettingsError
from kstrata.settings import (
    BASE_FILE,
    SCHEMA_FILE,
    Settings,
    available_environments,
    field_kind,
    file_fields,
    load_settings,
    settings_document,
    settings_from_document,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SHIPPED_ENVIRONMENTS = ["dev", "prod", "staging"]
#: A value no message may echo.
CANARY = "canary-value-7f3a"


def raw(name: str) -> dict[str, Any]:
    document = load_yaml((CONFIG_DIR / name).read_bytes(), source=name)
    assert isinstance(document, dict)
    return document


def as_field_value(name: str, value: Any) -> Any:
    """What a file value becomes in ``Settings`` (lists are tuples, numbers floats)."""
    kind = field_kind(name)
    if kind == "strings":
        return tuple(value)
    if kind == "number":
        return float(value)
    if kind == "optional-string":
        return value or None
    return value


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped settings directory."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped files ---------------------------------------------------


def test_the_shipped_environments_are_found() -> None:
    assert available_environments(CONFIG_DIR) == SHIPPED_ENVIRONMENTS


@pytest.mark.parametrize("environment", SHIPPED_ENVIRONMENTS)
def test_every_shipped_environment_loads_and_validates(environment: str) -> None:
    settings = load_settings(CONFIG_DIR, environment)
    assert isinstance(settings, Settings)
    assert settings.extra == {}


def test_base_yaml_lists_every_setting_with_the_dataclass_default() -> None:
    base = raw(BASE_FILE)
    assert list(base) == list(file_fields()), "base.yaml: same settings, same order"
    defaults = Settings()
    for name, value in base.items():
        expected = getattr(defaults, name)
        got = tuple(value) if isinstance(value, list) else value
        assert got == expected, f"base.yaml {name} differs from Settings.{name}"
        assert type(got) is type(expected), f"base.yaml {name}: write it as the same type"


def test_base_yaml_alone_is_the_dataclass_defaults(config_copy: Path) -> None:
    write(config_copy, "empty.yaml", "")
    assert load_settings(config_copy, "empty") == Settings()


def test_the_schema_covers_exactly_the_settings_and_describes_each() -> None:
    schema = raw(SCHEMA_FILE)
    check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(file_fields())
    for name, rule in schema["properties"].items():
        assert rule.get("description"), f"config.schema.yaml: {name} has no description"


def test_every_settings_field_is_readable_from_a_file() -> None:
    for name in file_fields():
        field_kind(name)  # raises KeyError for an annotation the loader cannot read
    assert {f.name for f in fields(Settings)} - set(file_fields()) == {"extra"}


@pytest.mark.parametrize("environment", SHIPPED_ENVIRONMENTS)
def test_each_overlay_changes_what_it_lists_and_nothing_else(environment: str) -> None:
    base = raw(BASE_FILE)
    overlay = raw(f"{environment}.yaml")
    settings = load_settings(CONFIG_DIR, environment)
    assert overlay, f"{environment}.yaml is empty"
    for name in file_fields():
        source = overlay if name in overlay else base
        assert getattr(settings, name) == as_field_value(name, source[name]), name


def test_the_overlays_say_what_their_environments_need() -> None:
    dev, staging, prod = (load_settings(CONFIG_DIR, env) for env in ("dev", "staging", "prod"))
    assert (dev.log_level, dev.log_format) == ("debug", "text")
    assert (staging.log_level, staging.log_format) == ("info", "json")
    assert (prod.log_level, prod.log_format) == ("info", "json")
    assert dev.retry_backoff < Settings().retry_backoff < prod.retry_backoff
    assert dev.blocked_retry_seconds < prod.blocked_retry_seconds
    assert [s.default_environment for s in (dev, staging, prod)] == ["dev", "staging", "prod"]
    assert [s.standalone for s in (dev, staging, prod)] == [True, False, False]
    assert staging.key_rotation_days > 0
    assert prod.key_rotation_days > 0


def test_printed_settings_load_back_to_the_same_settings(config_copy: Path) -> None:
    prod = load_settings(CONFIG_DIR, "prod")
    write(config_copy, BASE_FILE, yaml.safe_dump(settings_document(prod), sort_keys=False))
    write(config_copy, "empty.yaml", "")
    assert load_settings(config_copy, "empty") == prod


# --- merge semantics (RFC 7386, as for ConfigProfile) ---------------------


def test_null_in_an_overlay_falls_back_to_base_and_empty_string_switches_off(
    config_copy: Path,
) -> None:
    write(config_copy, "qa.yaml", 'metrics_address: null\nwebhook_address: ""\n')
    settings = load_settings(config_copy, "qa")
    assert settings.metrics_address == Settings().metrics_address
    assert settings.webhook_address is None


def test_lists_replace_rather_than_merge(config_copy: Path) -> None:
    write(config_copy, BASE_FILE, "namespaces: [a, b]\n")
    write(config_copy, "qa.yaml", "namespaces: [c]\n")
    assert load_settings(config_copy, "qa").namespaces == ("c",)


def test_settings_missing_from_both_files_keep_the_dataclass_defaults(config_copy: Path) -> None:
    write(config_copy, BASE_FILE, "log_level: warning\n")
    write(config_copy, "qa.yaml", "retry_backoff: 3\n")
    assert load_settings(config_copy, "qa") == Settings(log_level="warning", retry_backoff=3.0)


_VALID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "namespaces": st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), unique=True),
    "operator_namespace": st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
    "default_environment": st.sampled_from(["dev", "qa", "prod-eu"]),
    "retry_backoff": st.floats(min_value=0.1, max_value=3600),
    "metrics_address": st.sampled_from(["", "127.0.0.1:0", "[::]:9090", ":65535"]),
    "liveness_endpoint": st.sampled_from(["", "http://127.0.0.1:8080/healthz"]),
    "standalone": st.booleans(),
    "peering_name": st.sampled_from(["kstrata", "a.b-c"]),
    "webhook_address": st.sampled_from(["", "0.0.0.0:9443"]),
    "webhook_url": st.sampled_from(["", "https://10.0.0.1:9443"]),
    "webhook_service": st.sampled_from(["hook", "kstrata-webhook"]),
    "webhook_configuration": st.sampled_from(["", "kstrata.dev", "x"]),
    "webhook_cert_dir": st.sampled_from(["", "/etc/tls", "certs"]),
    "log_level": st.sampled_from(["debug", "info", "warning"]),
    "log_format": st.sampled_from(["text", "json"]),
    "sealing_suite": st.sampled_from(["x25519", "mlkem768-x25519"]),
    "key_rotation_days": st.integers(min_value=0, max_value=3650),
    "key_rotation_check_seconds": st.floats(min_value=1, max_value=86400),
    "blocked_retry_seconds": st.integers(min_value=1, max_value=86400),
    "reload_coalesce_seconds": st.floats(min_value=0, max_value=2),
    "reload_quiet_seconds": st.floats(min_value=0, max_value=5),
    "reloader_compatible": st.booleans(),
    "reseal_address": st.sampled_from(["", "0.0.0.0:9444"]),
    "reseal_recipients": st.lists(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), unique=True),
}


def test_the_property_test_knows_every_setting() -> None:
    assert set(_VALID_VALUES) == set(file_fields())


@hypothesis_settings(max_examples=60, deadline=None)
@given(overlay=st.fixed_dictionaries({}, optional=_VALID_VALUES))
def test_an_overlay_wins_over_base_setting_by_setting(overlay: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "config"
        shutil.copytree(CONFIG_DIR, directory)
        write(directory, "qa.yaml", yaml.safe_dump(overlay))
        settings = load_settings(directory, "qa")
    # base.yaml holds the dataclass defaults (tested above), so the overlay alone decides.
    expected = Settings().with_overrides(
        **{name: as_field_value(name, value) for name, value in overlay.items()}
    )
    assert settings == expected


# --- errors: they name the file, the path and the rule, never a value -----


def assert_no_value(message: str) -> None:
    assert CANARY not in message


def test_a_wrong_type_names_the_file_the_path_and_the_rule(config_copy: Path) -> None:
    overlay = write(config_copy, "prod.yaml", f"retry_backoff: {CANARY}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config_copy, "prod")
    message = str(caught.value)
    assert str(overlay) in message
    assert "$.retry_backoff: must be of type number (rule 'type')" in message
    assert_no_value(message)


def test_an_unknown_setting_is_refused_by_name(config_copy: Path) -> None:
    overlay = write(config_copy, "prod.yaml", f"colour: {CANARY}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config_copy, "prod")
    message = str(caught.value)
    assert message.startswith(f"{overlay}: invalid settings: ")
    assert "$.colour: property is not allowed (rule 'additionalProperties')" in message
    assert_no_value(message)


def test_a_nested_violation_names_the_index(config_copy: Path) -> None:
    write(config_copy, "prod.yaml", f"namespaces: [ok, {CANARY.upper()}]\n")
    with pytest.raises(SettingsError, match=r"\$\.namespaces\[1\]: must match the pattern"):
        load_settings(config_copy, "prod")


def test_out_of_range_and_enum_violations_are_all_reported(config_copy: Path) -> None:
    write(config_copy, "prod.yaml", "reload_coalesce_seconds: 5\nlog_level: trace\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config_copy, "prod")
    message = str(caught.value)
    assert "$.reload_coalesce_seconds: must be <= 2 (rule 'maximum')" in message
    assert '$.log_level: must be one of: "debug", "info", "warning" (rule \'enum\')' in message


def test_a_violation_in_base_yaml_names_base_yaml(config_copy: Path) -> None:
    base = write(config_copy, BASE_FILE, f"log_format: {CANARY}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config_copy, "dev")
    message = str(caught.value)
    assert message.startswith(f"{base}: invalid settings: $.log_format: must be one of")
    assert_no_value(message)


def test_a_yaml_syntax_error_names_the_file_and_line(config_copy: Path) -> None:
    overlay = write(config_copy, "staging.yaml", f"log_level: info\nretry_backoff: [{CANARY},\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config_copy, "staging")
    message = str(caught.value)
    assert f"{overlay}:3:" in message
    assert_no_value(message)


def test_duplicate_keys_are_refused(config_copy: Path) -> None:
    overlay = write(config_copy, "staging.yaml", "log_level: info\nlog_level: debug\n")
    with pytest.raises(SettingsError, match="duplicate key") as caught:
        load_settings(config_copy, "staging")
    assert str(overlay) in str(caught.value)


def test_an_overlay_that_is_not_a_mapping_is_refused(config_copy: Path) -> None:
    overlay = write(config_copy, "staging.yaml", "- log_level\n")
    with pytest.raises(SettingsError, match="must be a mapping") as caught:
        load_settings(config_copy, "staging")
    assert str(overlay) in str(caught.value)


def test_an_unknown_environment_lists_the_available_ones(config_copy: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(config_copy, "qa")
    assert str(caught.value) == (
        f"settings directory {config_copy}: no overlay for environment 'qa'; "
        "available: dev, prod, staging"
    )


@pytest.mark.parametrize("name", ["../config/prod", "base", "config.schema", "Prod", ""])
def test_names_that_are_not_environments_are_refused(config_copy: Path, name: str) -> None:
    with pytest.raises(SettingsError, match="available: dev, prod, staging"):
        load_settings(config_copy, name)


def test_an_invalid_environment_name_is_not_echoed(config_copy: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(config_copy, f"../{CANARY}")
    assert "(invalid name)" in str(caught.value)
    assert_no_value(str(caught.value))


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SettingsError, match=f"settings directory {missing}: not found"):
        load_settings(missing, "dev")


@pytest.mark.parametrize("name", [BASE_FILE, SCHEMA_FILE])
def test_a_missing_base_or_schema_file_is_named(config_copy: Path, name: str) -> None:
    (config_copy / name).unlink()
    with pytest.raises(SettingsError, match=f"{config_copy / name}: cannot be read"):
        load_settings(config_copy, "dev")


def test_a_broken_schema_is_named(config_copy: Path) -> None:
    schema = write(config_copy, SCHEMA_FILE, "type: object\nproperties: {a: {type: 7}}\n")
    with pytest.raises(SettingsError, match="not a usable settings schema") as caught:
        load_settings(config_copy, "dev")
    assert str(caught.value).startswith(str(schema))


def test_a_schema_with_a_remote_reference_is_refused(config_copy: Path) -> None:
    write(config_copy, SCHEMA_FILE, "$ref: https://example.com/schema.json\n")
    with pytest.raises(SettingsError, match="only local references"):
        load_settings(config_copy, "dev")


# --- building Settings from a document -----------------------------------


def test_a_looser_schema_cannot_smuggle_in_a_wrong_type() -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_document({"standalone": CANARY}, source="x.yaml")
    assert str(caught.value) == "x.yaml: $.standalone: wrong type for this setting (boolean)"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("namespaces", "a"),
        ("namespaces", [1]),
        ("retry_backoff", True),
        ("retry_backoff", "1"),
        ("log_level", 3),
        ("metrics_address", 9090),
    ],
)
def test_each_kind_checks_its_type(name: str, value: JSONValue) -> None:
    with pytest.raises(SettingsError, match=rf"\$\.{name}: wrong type"):
        settings_from_document({name: value}, source="x.yaml")


def test_settings_a_newer_schema_knows_go_to_extra() -> None:
    settings = settings_from_document({"log_level": "debug", "future": 1}, source="x.yaml")
    assert settings.log_level == "debug"
    assert settings.extra == {"future": 1}
    assert settings_document(settings)["future"] == 1
