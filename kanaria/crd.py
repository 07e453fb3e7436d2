"""The ModelDeployment CRD, generated from the pydantic models in :mod:`kanaria.api`.

The models are the single source of truth: this module turns their JSON Schema
into a *structural* OpenAPI v3 schema the Kubernetes API server accepts:

- ``$ref``/``$defs`` are inlined (the API server does not resolve references);
- ``Optional[X]`` (``anyOf [X, null]``) becomes ``X``: an absent field is the
  Kubernetes way to say "none", and nulls of non-nullable fields are pruned;
- ``additionalProperties: false`` is dropped (the API server prunes unknown
  fields instead), typed dicts keep ``additionalProperties: <schema>``, and
  free-form dicts become ``x-kubernetes-preserve-unknown-fields``;
- JSON Schema 2020 ``exclusiveMinimum: n`` becomes OpenAPI 3.0's
  ``minimum: n, exclusiveMinimum: true``;
- defaults are kept (object defaults become ``{}`` so nested defaults apply
  once, and ``None`` defaults are dropped); status gets no defaults;
- field docstrings become ``description`` (``kubectl explain``), and CEL rules
  declared on the models (``x-kubernetes-validations``) are carried over.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from kanaria.api import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)

CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_PATH = f"manifests/crds/{CRD_NAME}.yaml"
"""Where ``make crd`` writes the CRD, relative to the repository root."""

_DROP = {"title", "examples", "additionalProperties", "$defs", "const"}
PRINTER_COLUMNS = [
    {"name": "Stable", "type": "string", "jsonPath": ".status.stable.version"},
    {"name": "Candidate", "type": "string", "jsonPath": ".status.candidate.version"},
    {"name": "Strategy", "type": "string", "jsonPath": ".status.strategy"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Weight",
        "type": "integer",
        "jsonPath": ".status.weight",
        "description": "Percentage of traffic on the candidate",
    },
    {"name": "Step", "type": "integer", "jsonPath": ".status.currentStep"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class SchemaError(ValueError):
    """The models use a construct that has no structural-schema equivalent."""


class _Converter:
    def __init__(self, defs: dict[str, Any], with_defaults: bool) -> None:
        self.defs = defs
        self.with_defaults = with_defaults

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Inline ``$ref`` and unwrap ``anyOf [X, null]``, merging sibling keys."""
        node = dict(node)
        if "$ref" in node:
            target = self.defs[node.pop("$ref").rsplit("/", 1)[-1]]
            merged = dict(target)
            # The field's own keys (description, default) win over the type's.
            merged.update(node)
            return self.resolve(merged)
        for key in ("anyOf", "oneOf", "allOf"):
            if key in node:
                options = [o for o in node.pop(key) if o != {"type": "null"}]
                if len(options) != 1:
                    raise SchemaError(f"{key} with {len(options)} non-null options: {options}")
                inner = self.resolve(options[0])
                inner.update(node)
                return self.resolve(inner)
        return node

    def convert(self, raw: dict[str, Any]) -> dict[str, Any]:
        node = self.resolve(raw)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP or key == "default":
                continue
            if key == "properties":
                out["properties"] = {k: self.convert(v) for k, v in value.items()}
            elif key == "items":
                out["items"] = self.convert(value)
            elif key == "description":
                out["description"] = " ".join(str(value).split())
            elif key == "exclusiveMinimum":
                out["minimum"], out["exclusiveMinimum"] = value, True
            elif key == "exclusiveMaximum":
                out["maximum"], out["exclusiveMaximum"] = value, True
            else:
                out[key] = value
        if "const" in node:
            out["enum"] = [node["const"]]
        extra = node.get("additionalProperties")
        if node.get("type") == "object" and "properties" not in node:
            if isinstance(extra, dict):
                out["additionalProperties"] = self.convert(extra)
            else:
                out["x-kubernetes-preserve-unknown-fields"] = True
        if self.with_defaults and node.get("default") is not None:
            default = node["default"]
            out["default"] = {} if isinstance(default, dict) else default
        if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            raise SchemaError(f"schema node without a type: {raw}")
        if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
            out["type"] = "object"
        return out


def structural_schema(model: type[BaseModel], with_defaults: bool) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model."""
    raw = model.model_json_schema(mode="validation")
    return _Converter(raw.get("$defs", {}), with_defaults).convert(raw)


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict (apiextensions.k8s.io/v1)."""
    spec = structural_schema(ModelDeploymentSpec, with_defaults=True)
    status = structural_schema(ModelDeploymentStatus, with_defaults=False)
    schema = {
        "type": "object",
        "description": "A model served by Kanaria and rolled out progressively "
        "(shadow, canary, blue-green) with metric gates.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["kanaria"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML committed in manifests/crds (stable key order)."""
    header = (
        "# Generated by `kanaria crd` from kanaria/api.py; do not edit by hand.\n"
        "# Regenerate with `make crd`.\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=True, width=100)
