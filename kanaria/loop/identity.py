"""What counts as the same artifact, and the server settings a version runs with.

A version name is a label a person chose; what runs is an artifact: the model file
(``uri``, checked against ``sha256``), the reference profile drift is measured
against, and the server settings the version was started with. If any of these
changes under the same version name, what runs must be replaced. Both actuators
compare this one digest: ``kanaria up`` records it with the process, the operator
annotates the version's Deployment with it.
"""

from __future__ import annotations

import hashlib
import json

from kanaria.api import LiveVersion, ModelDeploymentSpec, ServerSpec

ARTIFACT_ANNOTATION = "kanaria.io/artifact"
"""Where the operator records a version Deployment's artifact digest."""


def server_of(live: LiveVersion, spec: ModelDeploymentSpec) -> ServerSpec:
    """The server settings ``live`` runs with: pinned when it started (status), else the
    spec's (a status written before versions carried them)."""
    return live.server or spec.server


def artifact_of(live: LiveVersion, spec: ModelDeploymentSpec) -> str:
    """A short digest of everything that makes ``live`` what it is, beyond its name."""
    identity = {
        "uri": live.uri,
        "sha256": live.sha256,
        "referenceProfile": live.referenceProfile,
        "server": server_of(live, spec).model_dump(mode="json", exclude_none=True),
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
