"""The ONNX benchmark's printed table, its docs block and its plots (matplotlib, bench-time only)."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.onnx_backend._results import GAP_TARGET_MS, SCALING_TARGET, OnnxResults


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _budget(ms: float) -> str:
    return "off (whole chunks)" if ms == 0 else f"{ms:g}"


def _single_rows(results: OnnxResults) -> list[str]:
    rows = [
        "| system | decode tok/s | end-to-end tok/s | TTFT ms | CPU ms per token | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in sorted(results.single, key=lambda s: -s.decode_tokens_per_second):
        rows.append(
            f"| {s.label} | {s.decode_tokens_per_second:.1f} | "
            f"{s.end_to_end_tokens_per_second:.1f} | {s.ttft_ms:.0f} | "
            f"{s.cpu_ms_per_token:.1f} | {s.peak_rss_mb:.0f} |"
        )
    return rows


def _comparison_rows(results: OnnxResults) -> list[str]:
    rows = [
        "| tokenwire int8 ÷ | ratio of medians | median of paired rounds | target | | "
        "CPU per token, theirs ÷ ours |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for c in results.comparisons:
        rows.append(
            f"| {c.label} | {c.ratio:.2f}× | {c.paired_ratio:.2f}× | ≥ {c.target:g}× | "
            f"{_verdict(c.met)} | {c.cpu_ratio:.2f}× |"
        )
    return rows


def _scaling_rows(results: OnnxResults) -> list[str]:
    rows = [
        "| streams | aggregate tok/s | per-stream decode tok/s | bare loop, same batch | "
        "tokenwire ÷ bare | server peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results.scaling:
        rows.append(
            f"| {s.streams} | {s.aggregate_tokens_per_second:.0f} | "
            f"{s.per_stream_decode_tokens_per_second:.1f} | {s.bare_batch_tokens_per_second:.0f} | "
            f"{s.aggregate_tokens_per_second / s.bare_batch_tokens_per_second:.2f}× | "
            f"{s.peak_rss_mb:.0f} |"
        )
    return rows


def _spin_rows(results: OnnxResults) -> list[str]:
    if not results.spin:
        return []
    rows = [
        "**ORT spin-waiting** (the same int8 model, `allow_spinning` on (the default) / off, "
        "interleaved):",
        "",
        "| streams | tok/s spinning | tok/s not spinning | gain | server CPU ms/token "
        "spinning | not spinning |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results.spin:
        rows.append(
            f"| {s.streams} | {s.spinning_tokens_per_second:.1f} | "
            f"{s.no_spin_tokens_per_second:.1f} | "
            f"{s.no_spin_tokens_per_second / s.spinning_tokens_per_second:.2f}× | "
            f"{s.spinning_cpu_ms_per_token:.1f} | {s.no_spin_cpu_ms_per_token:.1f} |"
        )
    return [*rows, ""]


def _ttft_rows(results: OnnxResults) -> list[str]:
    rows = ["| prompt | tokens | load | samples | p50 ms | p99 ms |", "|---|---:|---|---:|---:|---:|"]
    for t in results.ttft:
        load = "alone" if t.load_streams == 0 else f"{t.load_streams} streams decoding"
        rows.append(
            f"| {t.prompt} | {t.prompt_tokens} | {load} | {t.samples} | {t.p50_ms:.0f} | "
            f"{t.p99_ms:.0f} |"
        )
    return rows


def _gap_rows(results: OnnxResults) -> list[str]:
    rows = [
        "| prefill_budget_ms | long prompts | quiet max gap ms | busy p50 | busy p99 | "
        "busy max | long-prompt TTFT p50 ms | ≤ 100 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for g in results.gaps:
        served = g.prefill_budget_ms == results.environment.prefill_budget_ms
        chosen = " (served)" if served else ""
        rows.append(
            f"| {_budget(g.prefill_budget_ms)}{chosen} | {g.long_prompts} | "
            f"{g.quiet_max_ms:.0f} | {g.busy_p50_ms:.0f} | {g.busy_p99_ms:.0f} | "
            f"{g.busy_max_ms:.0f} | {g.long_ttft_p50_ms:.0f} | {_verdict(g.met)} |"
        )
    return rows


def _precision_rows(results: OnnxResults) -> list[str]:
    rows = [
        "| precision | top-1 agreement vs fp32 | mean KL | file MB | weights read per token MB | "
        "tokenwire decode tok/s | bare loop tok/s | bandwidth bound tok/s | tokenwire ÷ bound |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    bounds = {b.precision: b for b in results.bandwidth.rows}
    for p in results.precisions:
        bound = bounds[p.precision]
        agreement = f"{p.top1_agreement:.3f}" if p.top1_agreement is not None else "(reference)"
        kl = f"{p.mean_kl:.4f}" if p.mean_kl is not None else "—"
        rows.append(
            f"| {p.precision} | {agreement} | {kl} | {p.file_mb:.0f} | "
            f"{p.weight_mb_per_token:.0f} | {p.tokenwire_decode_tokens_per_second:.1f} | "
            f"{p.bare_decode_tokens_per_second:.1f} | {bound.bound_tokens_per_second:.0f} | "
            f"{bound.tokenwire_fraction:.0%} |"
        )
    return rows


def _headline(results: OnnxResults) -> list[str]:
    lines = []
    ratio = results.scaling_ratio()
    if ratio is not None:
        lines.append(
            f"- 8 streams ÷ 1 stream, aggregate: {ratio:.2f}× (target ≥ {SCALING_TARGET:g}×: "
            f"{_verdict(ratio >= SCALING_TARGET)})"
        )
    gap = results.chosen_gap()
    if gap is not None:
        lines.append(
            f"- largest inter-token gap of {gap.running_streams} running streams while "
            f"{gap.long_prompts} long prompts arrived, "
            f"`prefill_budget_ms={_budget(gap.prefill_budget_ms)}`: "
            f"{gap.busy_max_ms:.0f} ms (p99 {gap.busy_p99_ms:.0f} ms; target ≤ "
            f"{GAP_TARGET_MS:g} ms: {_verdict(gap.met)}); with no arrivals the largest was "
            f"{gap.quiet_max_ms:.0f} ms"
        )
    return lines


def table(results: OnnxResults) -> str:
    """The same tables as the docs block, as plain text for the terminal."""
    return markdown(results, [], None)


def markdown(results: OnnxResults, images: list[Path], docs_dir: Path | None) -> str:
    env, m, s = results.environment, results.machine, results.settings
    skipped = "; ".join(f"{k}: {v}" for k, v in env.skipped.items()) or "none"
    links = [f"![{i.stem}]({os.path.relpath(i, docs_dir)})" for i in images] if docs_dir else []
    return "\n".join(
        [
            f"Measured {m.date} on {m.cpu}, {m.cores} cores, Python {m.python}; "
            f"`intra_op_threads={env.intra_op_threads}` for every runtime, tokenwire "
            f"`max_batch={env.max_batch}`, `prefill_chunk={env.prefill_chunk}`, "
            f"`prefill_budget_ms={_budget(env.prefill_budget_ms)}`. Load average before "
            f"{env.load_before[0]:.1f} / after {env.load_after[0]:.1f} (1 min): a shared machine, "
            f"so compare ratios from one run only. Whole run {results.wall_seconds:.0f} s.",
            "",
            f"Command: `{results.command}` — {s.new_tokens} new tokens, greedy, prompt "
            f"“Write a detailed essay about the history of the Roman Empire.” "
            f"({env.prompt_tokens['decode']} tokens); "
            f"median of {s.rounds} interleaved rounds. Skipped: {skipped}.",
            "",
            "**Single stream** (decode tok/s = tokens after the first ÷ time from the first to "
            "the last; workers stamp tokens in-process, servers are read over SSE):",
            "",
            *_single_rows(results),
            "",
            *_comparison_rows(results),
            "",
            f"**Concurrent streams** (tokenwire int8, {s.new_tokens} tokens each, median of "
            f"{s.scaling_rounds} rounds):",
            "",
            *_scaling_rows(results),
            "",
            *_spin_rows(results),
            f"**Time to first token** (short: “Name the capital city of France.”; long: a "
            f"summarization request; one token asked for; {s.ttft_samples} samples each):",
            "",
            *_ttft_rows(results),
            "",
            f"**Inter-token gaps** of {s.gap_running} running streams: {s.gap_quiet:g} s quiet, "
            f"then {s.gap_busy:g} s of {env.prompt_tokens['long']}-token prompts sent back to "
            f"back, per `prefill_budget_ms` (chunks of at most {env.prefill_chunk} tokens):",
            "",
            *_gap_rows(results),
            "",
            f"**Precision and the memory-bandwidth bound** (read bandwidth "
            f"{results.bandwidth.read_gb_per_second:.1f} GB/s with numpy, {env.intra_op_threads} "
            "threads, best of before/after; bound = bandwidth ÷ weight bytes a batch-1 step "
            "reads; quality from each model's manifest):",
            "",
            *_precision_rows(results),
            "",
            *_headline(results),
            *(["", *links] if links else []),
        ]
    )


def plots(results: OnnxResults, img_dir: Path) -> list[Path]:
    """Three PNGs: single-stream speeds, scaling with streams, gaps around long prompts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    written = []

    rows = sorted(results.single, key=lambda s: s.decode_tokens_per_second)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    colors = ["#d62728" if r.system.startswith("tokenwire") else "#7f7f7f" for r in rows]
    ax.barh([r.label for r in rows], [r.decode_tokens_per_second for r in rows], color=colors)
    ax.set_xlabel("single-stream decode tokens/s (median)")
    ax.set_title("SmolLM2-135M, 128 tokens, greedy")
    fig.tight_layout()
    written.append(_save(fig, img_dir / "onnx-single-stream.png"))

    fig, ax = plt.subplots(figsize=(6, 3.6))
    streams = [s.streams for s in results.scaling]
    ax.plot(streams, [s.aggregate_tokens_per_second for s in results.scaling], "o-",
            color="#d62728", label="tokenwire aggregate")  # fmt: skip
    ax.plot(streams, [s.bare_batch_tokens_per_second for s in results.scaling], "s--",
            color="#7f7f7f", label="bare loop, one batch")  # fmt: skip
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("tokens/s")
    ax.set_xticks(streams)
    ax.set_ylim(bottom=0)
    memory = ax.twinx()
    memory.plot(streams, [s.peak_rss_mb for s in results.scaling], "^:", color="#1f77b4",
                label="server peak RSS")  # fmt: skip
    memory.set_ylabel("server RSS MB")
    memory.set_ylim(0, 1.6 * max(s.peak_rss_mb for s in results.scaling))
    handles = ax.get_legend_handles_labels()[0] + memory.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.set_title("int8, 128 tokens per stream")
    fig.tight_layout()
    written.append(_save(fig, img_dir / "onnx-concurrency.png"))

    gap = results.chosen_gap()
    if gap is not None and gap.timeline:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot([t for t, _ in gap.timeline], [g * 1e3 for _, g in gap.timeline], lw=0.8,
                color="#d62728", label="gap before each token")  # fmt: skip
        for i, sent in enumerate(gap.arrivals):
            ax.axvline(sent, color="#7f7f7f", lw=0.5, alpha=0.6,
                       label="long prompt sent" if i == 0 else None)  # fmt: skip
        ax.axhline(GAP_TARGET_MS, color="black", ls="--", lw=0.8, label="100 ms target")
        ax.set_xlabel("seconds (0 = first long prompt)")
        ax.set_ylabel("inter-token gap ms")
        ax.set_title(f"one of {gap.running_streams} running streams, "
                     f"prefill_budget_ms={_budget(gap.prefill_budget_ms)}")  # fmt: skip
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        written.append(_save(fig, img_dir / "onnx-gaps.png"))
    return written


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
