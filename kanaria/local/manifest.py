"""Read a ModelDeployment file for local use: validate it and pin down its local paths.

A file says ``uri: models/v2.onnx`` relative to where the file is, but ``kanaria
up`` runs its servers from wherever it was started, so relative paths are made
absolute against the file's folder before the spec is stored. Local files must
exist (a clear error now beats a crash-looping server later); http(s) URIs are
left to the model server's own loader.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kanaria.api import ManifestError, ModelDeployment, load_model_deployment

REMOTE_SCHEMES = ("http", "https", "s3")


def _resolve(uri: str, base: Path, field: str, problems: list[str]) -> str:
    parsed = urlparse(uri)
    if parsed.scheme in REMOTE_SCHEMES:
        return uri
    if parsed.scheme == "file":
        path = Path(parsed.path)
    elif parsed.scheme == "":
        path = Path(uri).expanduser()
        if not path.is_absolute():
            path = (base / path).resolve()
    else:
        problems.append(
            f"{field}: unsupported URI scheme {parsed.scheme!r} (use a local path, file://, "
            "http://, https:// or s3://)"
        )
        return uri
    if not path.is_file():
        problems.append(f"{field}: {path} does not exist or is not a file")
    return str(path)


def load(path: str | Path) -> tuple[ModelDeployment, dict[str, Any]]:
    """Validated model and its JSON document with local paths made absolute.

    Raises :class:`kanaria.api.ManifestError` listing every problem by field.
    """
    md = load_model_deployment(path)
    base = Path(path).resolve().parent
    document = md.model_dump(mode="json", exclude_none=True, exclude={"status"})
    model = document["spec"]["model"]
    problems: list[str] = []
    model["uri"] = _resolve(model["uri"], base, "spec.model.uri", problems)
    if "referenceProfile" in model:
        model["referenceProfile"] = _resolve(
            model["referenceProfile"], base, "spec.model.referenceProfile", problems
        )
    auth = document["spec"].get("router", {}).get("auth")
    if auth is not None and "tokensFile" in auth:
        tokens = Path(auth["tokensFile"]).expanduser()
        tokens = tokens if tokens.is_absolute() else (base / tokens).resolve()
        if not tokens.is_file():
            problems.append(f"spec.router.auth.tokensFile: {tokens} is not a file")
        auth["tokensFile"] = str(tokens)
    if problems:
        raise ManifestError(str(path), problems)
    return ModelDeployment.model_validate(document), document


def digest(document: dict[str, Any]) -> str:
    """Stable hash of a spec document: equal specs, equal digests (re-apply is a no-op)."""
    return hashlib.sha256(
        json.dumps(document.get("spec", {}), sort_keys=True).encode()
    ).hexdigest()[:16]
