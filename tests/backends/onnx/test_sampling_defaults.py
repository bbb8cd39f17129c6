"""Sampling defaults: recorded in the manifest, resolved request → server → model → neutral."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.backends.onnx._helpers import collect, running
from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.backends.onnx.manifest import MANIFEST_NAME, ModelManifest, SamplingDefaults
from tokenwire.backends.onnx.sampling import SamplingParams
from tokenwire.requests import GenerationRequest

MODEL_DEFAULTS = SamplingDefaults(temperature=0.2, top_p=0.9, source="a model card")
PROMPT = "Once upon a time there was a tiny robot"


def with_defaults(directory: Path, defaults: SamplingDefaults | None) -> Path:
    manifest = ModelManifest.read(directory)
    replace(manifest, sampling_defaults=defaults).write(directory)
    return directory


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("tiny") / "shared", "shared")


@pytest.fixture
def recommending(tiny: Path, tmp_path: Path) -> Path:
    """The tiny model, its manifest recommending temperature 0.2 and top_p 0.9."""
    directory = tmp_path / "model"
    directory.mkdir()
    for item in tiny.iterdir():
        (directory / item.name).symlink_to(item)
    (directory / MANIFEST_NAME).unlink()
    (directory / MANIFEST_NAME).write_text((tiny / MANIFEST_NAME).read_text())
    return with_defaults(directory, MODEL_DEFAULTS)


def ask(**fields: float | int) -> GenerationRequest:
    return GenerationRequest(model="tiny", prompt=PROMPT, max_tokens=12, **fields)  # type: ignore[arg-type]


def test_the_manifest_round_trips_its_sampling_defaults(recommending: Path) -> None:
    manifest = ModelManifest.read(recommending)
    assert manifest.sampling_defaults == MODEL_DEFAULTS
    assert ModelManifest.from_dict(json.loads(manifest.to_json())) == manifest


def test_a_manifest_written_before_sampling_defaults_reads_as_none(tiny: Path) -> None:
    data = json.loads((tiny / MANIFEST_NAME).read_text())
    data.pop("sampling_defaults", None)
    manifest = ModelManifest.from_dict(data)
    assert manifest.sampling_defaults is None
    assert OnnxBackend(tiny).sampling_params(ask()) == SamplingParams(1.0, 1.0, 0)


def test_a_request_without_sampling_fields_gets_the_models_defaults(recommending: Path) -> None:
    backend = OnnxBackend(recommending)
    assert backend.sampling_params(ask()) == SamplingParams(0.2, 0.9, 0)
    assert backend.sampling_params(ask(top_k=5)) == SamplingParams(0.2, 0.9, 5)


def test_an_explicit_value_is_kept_even_when_it_is_the_neutral_one(recommending: Path) -> None:
    backend = OnnxBackend(recommending)
    assert backend.sampling_params(ask(temperature=1.0)) == SamplingParams(1.0, 0.9, 0)
    assert backend.sampling_params(ask(temperature=0.7, top_p=1.0)) == SamplingParams(0.7, 1.0, 0)


def test_the_servers_defaults_win_over_the_models_but_not_over_the_request(
    recommending: Path,
) -> None:
    backend = OnnxBackend(recommending, default_temperature=0.5, default_top_k=40)
    assert backend.sampling_params(ask()) == SamplingParams(0.5, 0.9, 40)
    assert backend.sampling_params(ask(temperature=1.3)) == SamplingParams(1.3, 0.9, 40)


def test_bad_defaults_fail_at_startup_naming_where_they_came_from(recommending: Path) -> None:
    with pytest.raises(ValueError, match="default_top_p"):
        OnnxBackend(recommending, default_top_p=1.5)
    with_defaults(recommending, SamplingDefaults(temperature=-1.0))
    with pytest.raises(ValueError, match=r"manifest\.json: temperature"):
        OnnxBackend(recommending)


@pytest.mark.anyio
async def test_a_greedy_model_default_makes_unseeded_requests_repeat(recommending: Path) -> None:
    with_defaults(recommending, SamplingDefaults(temperature=0.0, source="test"))
    async with running(recommending) as backend:
        first = await collect(backend, ask(seed=1))
        second = await collect(backend, ask(seed=2))
        sampled = await collect(backend, ask(seed=1, temperature=1.0))
        sampled_again = await collect(backend, ask(seed=2, temperature=1.0))
    assert first.ids == second.ids
    assert sampled.ids != sampled_again.ids
