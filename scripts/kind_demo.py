"""Demo models for `make kind-up`: two ONNX versions and a sample that points at them.

A sample's `spec.model.uri` must be a file the cluster can download; the kind
path has no model registry, so kind-up.sh generates two small classifiers here
(v1 and v2: different seeds, so a rollout between them shows real differences),
serves them from inside the cluster, and applies the sample rewritten to v1 at
that address. Rolling out v2 is then one `kubectl patch`: the script prints the
sample's name and that patch, and kind-up.sh shows the command.

    python scripts/kind_demo.py --models-dir DIR --sample manifests/samples/canary.yaml \
        --url-base http://kanaria-demo-models.ml.svc:8000 --out DIR/sample.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

VERSIONS = ("v1", "v2")
LAYERS = (8, 32, 3)
"""8 features, one hidden layer, 3 classes: a few kB each, well under a ConfigMap's 1 MiB."""


def make_models(directory: Path) -> dict[str, Path]:
    """Write one model per version into ``directory``."""
    from kanaria.modelgen import mlp_classifier  # noqa: PLC0415 (needs onnx: only here)

    directory.mkdir(parents=True, exist_ok=True)
    return {
        version: mlp_classifier(directory / f"{version}.onnx", layers=LAYERS, seed=seed)
        for seed, version in enumerate(VERSIONS)
    }


def model_ref(version: str, url_base: str, model: Path) -> dict[str, str]:
    """spec.model for ``version`` served at ``url_base``, with its checksum."""
    return {
        "version": version,
        "uri": f"{url_base.rstrip('/')}/{model.name}",
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
    }


def rewrite_sample(sample: dict[str, Any], model: dict[str, str]) -> dict[str, Any]:
    """The sample with its spec.model replaced (everything else kept)."""
    if sample.get("kind") != "ModelDeployment" or not isinstance(sample.get("spec"), dict):
        raise ValueError("the sample must be one ModelDeployment with a spec")
    return {**sample, "spec": {**sample["spec"], "model": model}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--sample", type=Path, required=True)
    parser.add_argument("--url-base", required=True, help="where the cluster reaches the models")
    parser.add_argument("--out", type=Path, required=True, help="rewritten sample to write")
    args = parser.parse_args(argv)
    try:
        docs = [d for d in yaml.safe_load_all(args.sample.read_text(encoding="utf-8")) if d]
        if len(docs) != 1:
            raise ValueError(f"expected one document, found {len(docs)}")
        models = make_models(args.models_dir)
        refs = {v: model_ref(v, args.url_base, path) for v, path in models.items()}
        sample = rewrite_sample(docs[0], refs[VERSIONS[0]])
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"kind_demo: {args.sample}: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(yaml.safe_dump(sample, sort_keys=False), encoding="utf-8")
    # line 1: the ModelDeployment's name; line 2: the merge patch that rolls out v2
    print(sample["metadata"]["name"])
    print(json.dumps({"spec": {"model": refs[VERSIONS[1]]}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
