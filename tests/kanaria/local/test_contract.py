"""The loop's contract scenarios (tests/support/contract.py) through ``kanaria up``.

The same scenarios run through the operator on the real node
(tests/kanaria_operator/test_node_product.py): one behaviour, both actuators.
Real processes: ``kanaria up`` with its embedded metric source, model servers, the
router, and a steady client counting every answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kanaria.local.traffic import TrafficGenerator
from tests.kanaria.local.harness import NAME, WIDTH, Up, mlp_models
from tests.support import contract

pytestmark = pytest.mark.slow

WAIT_S = 120.0


class LocalTarget:
    """``kanaria up`` as a :class:`tests.support.contract.Target`."""

    def __init__(self, up: Up, models: dict[str, Path], client: TrafficGenerator) -> None:
        self.up = up
        self.models = models
        self.client = client

    def source(self, version: str) -> dict[str, str]:
        return {"version": version, "uri": str(self.models[version])}

    def document(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "kanaria.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME},
            "spec": spec,
        }

    def apply(self, spec: dict[str, Any]) -> None:
        self.up.apply(self.document(spec))

    def wait(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        return self.up.wait(what, check, WAIT_S)

    def instances(self, version: str) -> set[str]:
        state = json.loads(self.up.dir.state_file.read_text())
        record = (state.get("versions") or {}).get(version) or {}
        process = record.get("process")
        return {str(process["pid"])} if process else set()

    def failures(self) -> int:
        return self.client.stats.not_injected_failures()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    workdir = tmp_path_factory.mktemp("contract")
    models = mlp_models(workdir / "models", ("v1", "v2", "v3"))
    up = Up(workdir, "off")
    client = TrafficGenerator(up.url, NAME, WIDTH, rate=20, workers=4)
    local = LocalTarget(up, models, client)
    try:
        up.start(local.document(contract.spec(local, "v1", contract.CANARY)))
        client.start()
        yield local
    finally:
        client.stop()
        up.stop()


def test_promoted_then_the_old_version_stopped(target: LocalTarget) -> None:
    contract.promoted_then_old_version_stopped(target, "v1", "v2")


def test_a_faulty_candidate_leaves_the_stable_running(target: LocalTarget) -> None:
    contract.faulty_candidate_leaves_the_stable_running(target, "v2", "v3")


def test_new_server_settings_replace_the_stable(target: LocalTarget) -> None:
    contract.new_server_settings_replace_the_stable(target, "v2")
