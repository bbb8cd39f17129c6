"""Speculative decoding: prompt lookup against plain decoding on the ONNX backend."""
