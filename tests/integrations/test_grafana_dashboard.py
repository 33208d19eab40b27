"""monitoring/grafana/kstrata.json: well-formed, every query parsed by the real promtool,
only real metric names, and every metric kstrata exports on a panel.

No Grafana dashboard linter installs here (grafana/dashboard-linter is not
served by the Go module proxy), so the structure is checked by hand below and
the queries by Prometheus' own parser: each becomes a recording rule that
``promtool check rules`` must accept.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from support.integration_tools import FOREIGN_METRICS, MONITORING, exported_series

DASHBOARD = MONITORING / "grafana" / "kstrata.json"
#: Grafana's own variables, as a query sees them at run time.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "kstrata-operator"
    assert board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    for panel in panels():
        assert panel["title"]
        assert panel["description"], panel["title"]
        # The data source is chosen on the dashboard, never hard-wired.
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["legendFormat"], panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]


def test_no_two_panels_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_promtool_parses_every_query(promtool: Path, tmp_path: Path) -> None:
    rules = []
    for number, query in enumerate(queries()):
        expanded = query
        for variable, value in GRAFANA_VARIABLES.items():
            expanded = expanded.replace(variable, value)
        assert "$" not in expanded, query
        rules.append({"record": f"kstrata:dashboard_query:{number}", "expr": expanded})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_queries_name_only_real_metrics_and_show_every_one() -> None:
    exported = exported_series()
    used = {
        name
        for query in queries()
        for name in re.findall(r"\b(?:kstrata|apiserver)_[a-z_]+\b", query)
    }
    assert not used - exported - FOREIGN_METRICS, sorted(used - exported - FOREIGN_METRICS)
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exported}
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert not families - shown, f"exported but on no panel: {sorted(families - shown)}"


def test_the_dashboard_covers_reconciles_refusals_reloads_keys_and_the_webhook() -> None:
    titles = " / ".join(p["title"] for p in panels()).lower()
    for topic in ("reconciles", "latency", "not ready", "rollouts", "keys", "webhook"):
        assert topic in titles, topic
