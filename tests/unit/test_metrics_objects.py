"""kstrata_objects: Ready state by kind and reason, counted at scrape, never a name or value."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from kstrata.metrics import ObjectStates


def body(
    name: str, *, generation: int, observed: int | None, ready: str | None, reason: str = ""
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": reason}]
    return {
        "metadata": {"namespace": "ns", "name": name, "generation": generation},
        "status": status,
    }


def test_states_from_the_ready_condition_and_the_generations() -> None:
    state = ObjectStates.state_of
    assert state(body("a", generation=2, observed=2, ready="True", reason="Rendered")) == (
        "true",
        "Rendered",
    )
    assert state(body("a", generation=2, observed=2, ready="False", reason="SchemaViolation")) == (
        "false",
        "SchemaViolation",
    )
    assert state(body("a", generation=3, observed=2, ready="True", reason="Rendered")) == (
        "unknown",
        "Stale",
    )
    assert state(body("a", generation=1, observed=None, ready=None)) == ("unknown", "Pending")


def test_counted_per_state_and_forgotten_on_delete() -> None:
    objects = ObjectStates()
    registry = CollectorRegistry()
    registry.register(objects)
    objects.observe(
        "ConfigProfile",
        body("secret-name-1", generation=1, observed=1, ready="True", reason="Rendered"),
    )
    objects.observe(
        "ConfigProfile", body("b", generation=1, observed=1, ready="True", reason="Rendered")
    )
    objects.observe(
        "SealedSecret",
        body("c", generation=1, observed=1, ready="False", reason="DecryptionFailed"),
    )
    # A later event for the same object replaces its state.
    objects.observe(
        "ConfigProfile", body("b", generation=2, observed=1, ready="True", reason="Rendered")
    )
    text = generate_latest(registry).decode()
    assert 'kstrata_objects{kind="ConfigProfile",ready="true",reason="Rendered"} 1.0' in text
    assert 'kstrata_objects{kind="ConfigProfile",ready="unknown",reason="Stale"} 1.0' in text
    assert (
        'kstrata_objects{kind="SealedSecret",ready="false",reason="DecryptionFailed"} 1.0' in text
    )
    assert "secret-name-1" not in text
    objects.forget("SealedSecret", "ns", "c")
    assert 'kind="SealedSecret"' not in generate_latest(registry).decode()
