"""docs/metrics.md lists every metric of signer/metrics.py with its type and labels, and no
metric that does not exist; the README links it."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

import signer.metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
_ROW = re.compile(r"^\| `([a-z_]+)` \| (counter|gauge|histogram) \| ([^|]+) \| .+ \|$", re.M)


def _exported() -> dict[str, tuple[str, str]]:
    """Exposed name (a counter's with ``_total``) → (type, labels as the table writes them)."""
    found: dict[str, tuple[str, str]] = {}
    for metric in vars(signer.metrics).values():
        if isinstance(metric, MetricWrapperBase):
            kind = str(metric._type)
            name = metric._name + ("_total" if kind == "counter" else "")
            labels = ", ".join(f"`{label}`" for label in metric._labelnames) or "—"
            found[name] = (kind, labels)
    return found


def test_the_table_is_every_metric_with_its_type_and_labels() -> None:
    documented = {name: (kind, labels.strip()) for name, kind, labels in _ROW.findall(DOC)}
    exported = _exported()
    assert len(exported) > 20  # the module was read
    assert documented == exported


def test_the_readme_links_the_reference() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/metrics.md)" in readme
