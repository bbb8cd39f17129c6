"""Device choice, provider fallback and the KV binding path, testable without a GPU."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tokenwire.backends.onnx.kv_cache import SharedKVCache, gather_rows
from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.backends.onnx.session import check_providers, resolve_device


def test_cpu_uses_only_the_cpu_provider() -> None:
    placement = resolve_device("cpu")
    assert placement.providers == ("CPUExecutionProvider",)
    assert placement.ort_device == "cpu"


def test_cuda_asks_for_the_cuda_provider_first_with_the_device_index() -> None:
    placement = resolve_device("CUDA:1")
    assert placement.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert (placement.ort_device, placement.device_id) == ("cuda", 1)


@pytest.mark.parametrize("device", ["tpu", "cuda:x", ""])
def test_unknown_devices_are_refused_with_the_choices(device: str) -> None:
    with pytest.raises(ValueError, match="cpu, cuda"):
        resolve_device(device)


def test_provider_fallback_is_detected_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenwire.onnx")
    cuda = resolve_device("cuda")
    assert check_providers(cuda, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert not caplog.records
    assert not check_providers(cuda, ["CPUExecutionProvider"])
    assert "CUDAExecutionProvider" in caplog.text and "fell back" in caplog.text


class RecordingBinding:
    def __init__(self) -> None:
        self.inputs: dict[str, tuple[Any, ...]] = {}
        self.outputs: dict[str, tuple[Any, ...]] = {}

    def bind_input(self, name: str, *args: Any) -> None:
        self.inputs[name] = args

    def bind_output(self, name: str, *args: Any) -> None:
        self.outputs[name] = args


CONTRACT = KVContract("shared", False, num_layers=2, num_kv_heads=3, head_size=4, max_context=16)


def test_kv_rows_bind_in_place_as_past_and_present_on_the_cache_device() -> None:
    cache = SharedKVCache(CONTRACT, max_batch=4, max_context=8)
    # The binding code takes its device from the cache: pretend the buffers live on a GPU.
    cache.device, cache.device_id = "cuda", 0
    binding = RecordingBinding()
    cache.bind(binding, 1, 2)  # type: ignore[arg-type]
    assert len(binding.inputs) == len(binding.outputs) == 4
    row_bytes = 3 * 8 * 4 * 4
    assert cache.row_bytes == row_bytes
    for (past, present), buffer in zip(cache.names, cache.buffers, strict=True):
        device, device_id, dtype, shape, pointer = binding.inputs[past]
        assert (device, device_id, dtype, shape) == ("cuda", 0, np.float32, [2, 3, 8, 4])
        assert pointer == buffer.data_ptr() + row_bytes
        assert binding.outputs[present] == binding.inputs[past]


def test_binding_rows_outside_the_cache_is_refused() -> None:
    cache = SharedKVCache(CONTRACT, max_batch=2, max_context=8)
    with pytest.raises(ValueError, match="outside"):
        cache.bind(RecordingBinding(), 1, 2)  # type: ignore[arg-type]


def test_concat_rows_gather_right_padded_with_a_mask() -> None:
    a = [np.ones((3, 2, 4), np.float32)]
    b = [np.full((3, 5, 4), 2, np.float32)]
    tensors, mask = gather_rows([a, b], np.float32)
    assert tensors[0].shape == (2, 3, 5, 4)
    assert mask.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert (tensors[0][0, :, 2:] == 0).all() and (tensors[0][1] == 2).all()


def test_tiny_models_build_quickly(tmp_path: Path) -> None:
    import time

    from tests.backends.onnx.tiny_models import write_model_dir

    start = time.perf_counter()
    write_model_dir(tmp_path / "m", "shared")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("spinning", [True, False])
def test_spin_waiting_is_on_unless_turned_off(tmp_path: Path, spinning: bool) -> None:
    from tests.backends.onnx.tiny_models import write_model_dir
    from tokenwire.backends.onnx.session import create_session

    directory = write_model_dir(tmp_path / "shared", "shared")
    session, _ = create_session(
        directory / "model.onnx", resolve_device("cpu"), allow_spinning=spinning
    )
    options = session.get_session_options()
    key = "session.intra_op.allow_spinning"
    if spinning:  # ORT's default, which spins: no entry
        with pytest.raises(RuntimeError, match=key):
            options.get_session_config_entry(key)
    else:
        assert options.get_session_config_entry(key) == "0"
