"""Baseline for the model-server benchmark: a plain FastAPI endpoint calling ``session.run``.

This is what one writes without thinking about throughput: parse the V2 JSON
body with the framework, run onnxruntime on the event loop for each request,
return a JSON response. It shares nothing with ``kanaria_server``, so the
benchmark's ratio shows what Kanaria's batching and lean HTTP path buy.

    python -m bench.plain_server --model m.onnx --port 8000
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_app(model_path: str, intra_op_threads: int = 1) -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        feeds = {
            t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
            for t in body["inputs"]
            if t["name"] in inputs
        }
        results = session.run(None, feeds)
        outputs = [
            {"name": o.name, "datatype": "FP32", "shape": list(r.shape), "data": r.ravel().tolist()}
            for o, r in zip(session.get_outputs(), results, strict=True)
        ]
        return JSONResponse({"model_name": name, "outputs": outputs})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--intra-op-threads", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model, args.intra_op_threads),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
