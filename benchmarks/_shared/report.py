"""Where results go: the machine description, JSON, and a generated block of a docs page."""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Machine:
    """What ran the benchmark; results from different machines are not comparable."""

    cpu: str
    cores: int
    python: str
    platform: str
    date: str

    @classmethod
    def current(cls) -> Machine:
        return cls(
            _cpu_model(),
            os.cpu_count() or 0,
            platform.python_version(),
            platform.platform(),
            datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


def update_docs(path: Path, section: str, content: str) -> None:
    """Replace the generated block of `section` in `path`, leaving everything else alone.

    The block sits between `<!-- {section}:start -->` and `<!-- {section}:end -->`; if the
    markers are missing it is appended, so hand-written prose around it survives reruns.
    """
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    block = f"{start}\n{content}\n{end}"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)
