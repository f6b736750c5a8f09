"""deploy/grafana/shipyard.json: a Grafana dashboard whose every query is valid PromQL
(checked by `promtool check rules`, each query as a recording rule) over metrics Shipyard
exports (the names of docs/metrics.md's table), covering what the issue lists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "shipyard.json"
_METRIC = re.compile(r"\bshipyard_[a-z_]+\b")


def _queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    out += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return out


def _documented() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(shipyard_[a-z_]+)` \|", text, re.MULTILINE))


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: ./run test installs it (Debian package prometheus)"
    rules = [
        {"record": f"shipyard:dashboard_query_{i}", "expr": q.replace("$__rate_interval", "5m")}
        for i, q in enumerate(_queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_it_reads_the_documented_metrics_and_covers_the_issue() -> None:
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for q in _queries() for m in _METRIC.findall(q)}
    documented = _documented()
    assert len(documented) > 15
    assert used <= documented, used - documented
    dash = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("requests", "error", "p50", "p99", "in flight", "query", "cache hit",
                  "job", "queue depth", "queue lag", "webhook", "cpu", "memory",
                  "file descriptors", "disk"):  # fmt: skip
        assert topic in titles, topic
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
