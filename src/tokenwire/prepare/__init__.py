"""`tokenwire prepare`: turn a GGUF file or Hugging Face dir into a servable ONNX model dir."""

from tokenwire.prepare.errors import MissingExtraError, PrepareError, QualityGateError
from tokenwire.prepare.workflow import PrepareOptions, PrepareResult, prepare_model

__all__ = [
    "MissingExtraError",
    "PrepareError",
    "PrepareOptions",
    "PrepareResult",
    "QualityGateError",
    "prepare_model",
]
