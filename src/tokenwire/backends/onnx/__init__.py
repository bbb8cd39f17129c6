"""The ONNX Runtime backend: prepared models served by our own continuous-batching loop."""

from tokenwire.backends.onnx.backend import OnnxBackend
from tokenwire.backends.onnx.scheduler import BackendStats

__all__ = ["BackendStats", "OnnxBackend"]
