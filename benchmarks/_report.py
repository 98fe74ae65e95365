"""Shared by the benchmark scripts: machine description, JSON output, README tables."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1min": round(os.getloadavg()[0], 2)}  # these machines are shared


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write(name: str, data: dict[str, Any], table: str, readme: bool = True) -> None:
    """Write results/NAME.json and replace the NAME section of README.md with ``table``
    (``readme=False``: the JSON only; the table is printed either way)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    if not readme:
        print(table)
        return
    write_section(name, table)


def write_section(name: str, table: str) -> None:
    """Replace the NAME section of README.md with ``table`` (results/NAME.json untouched)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{start}\n{table}\n{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m: block, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"
    README.write_text(text)
    print(table)


# The README is a report: per benchmark one line of what is measured, one short table of
# the headline figures against their targets, a plot where there is one, and the machine.
# Every figure in it comes from results/NAME.json by the code below; detail stays there.


def now() -> str:
    """The "measured" field a script puts into its JSON."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text())
    return data


def met(ok: bool | None) -> str:
    """The met/missed cell (empty when nothing decides it)."""
    return "" if ok is None else ("met" if ok else "**missed**")


def measured_on(name: str, data: dict[str, Any]) -> str:
    """When the JSON says it was measured; else when git last committed it (said so)."""
    for key in ("measured", "started"):
        if isinstance(data.get(key), str):
            return f"measured {data[key]}"
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cd", "--date=format:%Y-%m-%d",
                              "--", f"results/{name}.json"], cwd=HERE, capture_output=True,
                             text=True, check=False).stdout.strip()
    except OSError:
        out = ""
    return f"results committed {out}" if out else "date not recorded"


def machine_line(name: str, data: dict[str, Any], m: dict[str, Any] | None = None) -> str:
    m = m if m is not None else data.get("machine", {})
    if isinstance(m, dict) and m.get("cpu"):
        load_ = m.get("load_average_1min")
        if load_ is None and isinstance(data.get("load_average"), list):
            load_ = data["load_average"][0]
        where = f"{m['cpu']}, {m.get('cores', '?')} cores"
        where += f", load {load_:.2f}" if isinstance(load_, (int, float)) else ""
    else:
        where = str(m or "machine not recorded")
    return (f"Machine: {where}; {measured_on(name, data)}; all figures: "
            f"[results/{name}.json](results/{name}.json)")


def section(name: str, data: dict[str, Any], what: str, table: str,
            plot: str | None = None, extra: list[str] | None = None) -> str:
    """One benchmark's README section: what, the table, the plot (if its file exists),
    any extra lines (each made from the JSON), the machine line."""
    parts = [what, "", table]
    if plot and (RESULTS / plot).exists():
        parts += ["", f"![{name}](results/{plot})"]
    for line in extra or []:
        parts += ["", line]
    parts += ["", machine_line(name, data)]
    return "\n".join(parts)


def table_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", action="store_true",
                        help="rebuild the README section from results/NAME.json; measure nothing")


def rebuild(name: str, summary: Callable[[dict[str, Any]], str]) -> None:
    """``--table``: the README section again from results/NAME.json alone."""
    write_section(name, summary(load(name)))
