"""``kanaria profile``: build a model's reference input profile for drift detection.

    kanaria profile --model fraud.onnx --data sample.npy -o fraud.profile.json

``--data`` is a ``.npy`` array (rows first) for a single-input model, an ``.npz``
archive with one array per input name, or a ``.csv`` of numbers (one row per
example, an optional header line) for a single input of shape [-1, features].
The data is checked against the model's signature, so a profile cannot silently
describe a different model. Serve with ``kanaria serve-model --reference PROFILE``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PROG = "kanaria profile"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="ONNX model (path, file:// or http(s)://)")
    parser.add_argument(
        "--data", required=True, type=Path, help="reference sample: .npy, .npz or .csv"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="profile to write (default: MODEL.profile.json)"
    )
    parser.add_argument("--input", help="input the .npy/.csv data is for (default: the only one)")
    parser.add_argument("--bins", type=int, default=10, help="quantile bins per feature (2-100)")


def _read_data(path: Path) -> dict[str, Any] | Any:
    import numpy as np  # noqa: PLC0415

    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:  # numpy's message for a non-.npy file talks about pickles
            raise ValueError(f"{path} is not a numeric .npy array file") from exc
    if suffix == ".csv":
        with path.open(encoding="utf-8") as fh:
            first = fh.readline()
        try:
            [float(v) for v in first.strip().split(",") if v.strip()]
            skip = 0
        except ValueError:
            skip = 1  # a header line
        return np.atleast_2d(np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64))
    raise ValueError(f"unsupported data file {path.name}: use .npy, .npz or .csv")


def build(model_uri: str, data_path: Path, input_name: str | None, bins: int) -> dict[str, Any]:
    """Load the model and the sample, check one against the other, and build the profile."""
    import numpy as np  # noqa: PLC0415

    from kanaria_server.model import LoadedModel, read_model_bytes  # noqa: PLC0415
    from kanaria_server.profile import build_profile  # noqa: PLC0415

    model = LoadedModel(read_model_bytes(model_uri, None, 300.0), 1, model_uri)
    numeric = [t for t in model.signature.inputs if t.datatype != "BYTES"]
    data = _read_data(data_path)
    if not isinstance(data, dict):
        if input_name is None:
            if len(numeric) != 1:
                names = ", ".join(t.name for t in numeric)
                raise ValueError(f"the model has several numeric inputs ({names}): pass --input")
            input_name = numeric[0].name
        data = {input_name: data}
    arrays: dict[str, Any] = {}
    for name, values in data.items():
        spec = model.signature.input(name)
        if spec is None or spec.datatype == "BYTES":
            names = ", ".join(t.name for t in numeric)
            raise ValueError(f"{name!r} is not a numeric input of the model ({names})")
        arr = np.asarray(values)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"data for {name!r} is not numeric ({arr.dtype})")
        fixed = spec.shape[1:]
        if all(d >= 0 for d in fixed) and arr.ndim >= 1:
            width = int(np.prod(fixed)) if fixed else 1
            if int(np.prod(arr.shape[1:])) != width:
                raise ValueError(
                    f"data for {name!r} has rows of shape {list(arr.shape[1:])}, the model "
                    f"expects {list(fixed)}"
                )
        arrays[name] = arr
    return build_profile(arrays, bins)


def run(args: argparse.Namespace) -> int:
    from kanaria_server.errors import ModelLoadError  # noqa: PLC0415
    from kanaria_server.profile import save_profile  # noqa: PLC0415

    if not 2 <= args.bins <= 100:
        print(f"{PROG}: --bins must be between 2 and 100", file=sys.stderr)
        return 2
    output = args.output or Path(str(args.model).removeprefix("file://") + ".profile.json")
    if "://" in str(args.model) and args.output is None:
        print(f"{PROG}: -o is required for a remote model", file=sys.stderr)
        return 2
    try:
        doc = build(args.model, args.data, args.input, args.bins)
    except ModelLoadError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"{PROG}: data file not found: {exc.filename}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        save_profile(doc, output)
    except OSError as exc:
        print(f"{PROG}: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return 2
    summary = ", ".join(
        f"{n} ({e['rows']} rows, {e['features']} {'pooled' if e['pooled'] else 'features'})"
        for n, e in doc["inputs"].items()
    )
    print(f"wrote {output}: {summary}")
    return 0
