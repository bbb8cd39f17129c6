"""Constrained decoding: what a JSON Schema constraint costs the ONNX backend."""
