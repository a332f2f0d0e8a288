"""The Grafana dashboard for sagas, shipped with the package (``grafana_dashboard.json``).

It uses Ray's Prometheus datasource variable (``${datasource}``) and Ray's ``SessionName``
label, so it drops into Ray's Grafana provisioning next to Ray's own dashboards: Ray's
Grafana loads every JSON file of ``<session>/metrics/grafana/dashboards``. Ray-free.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

DASHBOARD_FILE = Path(__file__).with_name("grafana_dashboard.json")
INSTALLED_NAME = "saga_actors_grafana_dashboard.json"
# where Ray provisions Grafana's dashboards, under a session's folder
PROVISIONING_SUBDIR = Path("metrics") / "grafana" / "dashboards"


def load_dashboard() -> dict[str, Any]:
    """The dashboard as JSON data."""
    return json.loads(DASHBOARD_FILE.read_text())


def queries(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every panel query: ``(panel title, PromQL with Grafana's variables)``."""
    dashboard = dashboard or load_dashboard()
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", ())]


def install(folder: str | Path, *, create: bool = False) -> Path:
    """Copy the dashboard into ``folder`` (``create``: made first, parents too, as
    ``mkdir -p`` would; else it must exist); returns the file written."""
    folder = Path(folder)
    if create and not folder.exists():
        folder.mkdir(parents=True)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    target = folder / INSTALLED_NAME
    shutil.copyfile(DASHBOARD_FILE, target)
    return target
