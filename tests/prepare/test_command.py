from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tokenwire.cli import main, make_parser
from tokenwire.prepare import PrepareOptions, PrepareResult
from tokenwire.prepare import command as command_module
from tokenwire.prepare.command import add_prepare_command


def test_prepare_registers_on_any_subparsers_object() -> None:
    parser = argparse.ArgumentParser()
    add_prepare_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["prepare"])
    assert (args.source, args.output, args.precision, args.exporter) == (
        None,
        None,
        "int8",
        "builder",
    )
    assert not args.force and not args.rebuild and args.name is None


def test_cli_passes_every_option_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    seen: list[PrepareOptions] = []

    def fake_prepare(options: PrepareOptions) -> PrepareResult:
        seen.append(options)
        return PrepareResult(directory=tmp_path / "done", manifest=None, built=True)  # type: ignore[arg-type]

    monkeypatch.setattr(command_module, "prepare_model", fake_prepare)
    status = main([
        "prepare", "model.gguf", "--output", str(tmp_path / "o"), "--precision", "int4",
        "--exporter", "optimum", "--force", "--rebuild", "--name", "mine",
    ])  # fmt: skip
    assert status == 0
    assert seen == [PrepareOptions(
        source="model.gguf", output=tmp_path / "o", precision="int4", exporter="optimum",
        force=True, rebuild=True, name="mine",
    )]  # fmt: skip
    assert capsys.readouterr().out.strip() == str(tmp_path / "done")


def test_cli_reports_a_bad_source_with_exit_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["prepare", str(tmp_path / "nothing-here")])
    assert status == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_rejects_unknown_precision() -> None:
    with pytest.raises(SystemExit):
        make_parser().parse_args(["prepare", "--precision", "int3"])


def test_cli_and_prepare_modules_never_import_torch_or_transformers() -> None:
    code = (
        "import sys\n"
        "import tokenwire.cli, tokenwire.prepare, tokenwire.prepare.command\n"
        "import tokenwire.prepare.exporters, tokenwire.prepare.gguf_to_hf\n"
        "tokenwire.cli.make_parser().parse_args(['prepare'])\n"
        "heavy = {'torch', 'transformers', 'onnxruntime_genai', 'gguf', 'optimum'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
