"""The ONNX backend end to end, against the runtimes a CPU user would run.

`benchmark.main` runs it. Imports nothing: the workers here (`_bare_loop`, `_genai_worker`,
`_optimum_worker`) run as `python -m benchmarks.onnx_backend.<worker>`, the optimum one in
an environment that has neither tokenwire nor anyio, and each one's memory is measured.
"""
