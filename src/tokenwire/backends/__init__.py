"""Built-in backends: `echo` (deterministic, for tests and demos) and `onnx` (the default)."""
