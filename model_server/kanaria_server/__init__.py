"""Kanaria's model server: one ONNX model version over the Open Inference Protocol (V2).

Entry points: ``kanaria serve-model`` (:mod:`kanaria_server.cli`),
``python -m kanaria_server``, and :func:`kanaria_server.app.create_app` for embedding.
"""
