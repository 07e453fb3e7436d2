"""A real Prometheus for ``kanaria up``: binary lookup, scrape config, targets file.

Locally the scrape interval is short (0.5 s) so gates over a few-second analysis
interval have several samples to compute rates from. Targets change as versions
start and stop, so they live in a ``file_sd`` targets file that is rewritten
atomically; Prometheus notices it without a reload.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from kanaria.durations import format_duration
from kanaria.local.statedir import atomic_write_text

SCRAPE_INTERVAL_S = 0.5
"""Seconds between scrapes of the local processes."""
TARGETS_FILE = "targets.json"


class PrometheusNotFoundError(Exception):
    """``--prometheus`` named a binary that does not exist."""


def find_binary(choice: str) -> str | None:
    """Resolve ``--prometheus``: ``auto`` (PATH, else None), ``off`` (None) or a path."""
    if choice == "off":
        return None
    if choice == "auto":
        return shutil.which("prometheus") or (
            "/usr/sbin/prometheus" if Path("/usr/sbin/prometheus").exists() else None
        )
    path = Path(choice)
    if not path.is_file():
        found = shutil.which(choice)
        if found is None:
            raise PrometheusNotFoundError(
                f"--prometheus {choice}: no such binary (use 'auto', 'off' or a path to "
                "the prometheus executable)"
            )
        return found
    return str(path)


def scrape_config(targets_file: Path, interval_s: float = SCRAPE_INTERVAL_S) -> str:
    """The Prometheus configuration document for the local processes.

    The targets file is named by its absolute path: Prometheus resolves a relative
    ``file_sd`` path against the configuration file's folder, so a relative one
    (from a relative ``--state-dir``) would name a file that never exists.
    """
    targets_file = targets_file.absolute()
    seconds = format_duration(interval_s)
    config = {
        "global": {"scrape_interval": seconds, "evaluation_interval": seconds},
        "scrape_configs": [
            {
                "job_name": "kanaria-local",
                "scrape_interval": seconds,
                "scrape_timeout": seconds,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": seconds}],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_targets(targets_file: Path, targets: dict[str, int]) -> None:
    """Rewrite the file_sd targets: ``{component-name: port}`` on 127.0.0.1."""
    groups = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"component": name}}
        for name, port in sorted(targets.items())
    ]
    atomic_write_text(targets_file, json.dumps(groups, indent=1) + "\n")


def argv(binary: str, data_dir: Path, port: int) -> list[str]:
    """Command line of a Prometheus that keeps its data in ``data_dir`` (absolute paths)."""
    data_dir = data_dir.absolute()
    return [
        binary,
        f"--config.file={data_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={data_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]


def prepare(data_dir: Path) -> Path:
    """Write the config next to the data dir; returns the (absolute) targets file path."""
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    targets = data_dir / TARGETS_FILE
    if not targets.exists():
        write_targets(targets, {})
    atomic_write_text(data_dir / "prometheus.yml", scrape_config(targets))
    return targets
