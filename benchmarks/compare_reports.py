"""Compare the accuracy figures of the benchmark reports with those of an earlier commit.

Reads every ``docs/benchmarks_*.md`` report in the working tree and the same file at ``--ref``
(``git show REF:docs/...``), pairs the cells of their tables (same table position, same row
label, same column), and counts the numbers that agree. Timing columns and tables are
skipped: they measure the machine, not the method. Writes a Markdown summary.

    python benchmarks/compare_reports.py --ref 373d336 --out docs/benchmarks_reproduction.md

``--rerun DIR`` compares the reports found in ``DIR`` (rerun there by the same commands, e.g. a
subset of ``run_all.sh``) instead of ``docs/``, each against its namesake at ``--ref``; rows that a
partial rerun left out are not compared, and the summary says how many rows were.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
SKIP = ("time", "ms", "machine", "load")
SECONDS = re.compile(r"(^|\s)s(\s|\)|$)")  # a column in seconds ("estimate s", "SR s (bicubic s)")


def skipped(name: str) -> bool:
    """Whether a column or table measures the machine (a time) rather than the method."""
    return any(s in name.lower() for s in SKIP) or bool(SECONDS.search(name))


def tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(heading, header cells, body rows)`` of every Markdown table, in order."""
    out, heading, rows = [], "", []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if rows:
            header, body = rows[0], list(rows[2:])
            out.append((heading, header, body))
            rows = []
        if line.startswith("#"):
            heading = line.lstrip("# ").strip()
    return out


def row_key(row: list[str]) -> tuple[str, ...]:
    """The row's label: its first cell and any later cell without a number (method · kernel)."""
    return (row[0], *(c for c in row[1:] if not NUMBER.search(c)))


def numbers(cell: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(cell.replace("*", ""))]


def compare(old: str, new: str) -> tuple[int, int, float, list[str], int]:
    """(values compared, values equal, largest |difference|, notes on differing cells, reference rows not rerun)."""
    compared = equal = missing = 0
    worst = 0.0
    notes: list[str] = []
    for (_h_old, head_old, body_old), (h_new, head_new, body_new) in zip(tables(old), tables(new)):
        if skipped(h_new) or head_old[0] != head_new[0]:
            continue
        old_rows = {row_key(r): r for r in body_old}
        old_cols = {name: i for i, name in enumerate(head_old)}  # columns are paired by name, not position
        missing += len(set(old_rows) - {row_key(r) for r in body_new})
        for row in body_new:
            ref = old_rows.get(row_key(row))
            if ref is None:
                continue
            for col, b in enumerate(row[1:], start=1):
                name = head_new[col] if col < len(head_new) else ""
                if name not in old_cols or skipped(name):
                    continue
                a = ref[old_cols[name]]
                na, nb = numbers(a), numbers(b)
                if not na or len(na) != len(nb):
                    continue
                for x, y in zip(na, nb):
                    compared += 1
                    equal += x == y
                    if x != y:
                        worst = max(worst, abs(x - y))
                        if len(notes) < 8:
                            notes.append(f"{row[0]} · {name}: {a} → {b}")
    return compared, equal, worst, notes, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="git commit whose reports are the reference")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--rerun", type=Path, default=None,
                    help="folder of rerun reports to compare instead of docs/ (each with its namesake at --ref)")
    args = ap.parse_args(argv)
    source = args.rerun if args.rerun is not None else ROOT / "docs"
    lines = ["# Reproduction of the figures", "",
             f"Command: `python benchmarks/compare_reports.py {' '.join(argv or sys.argv[1:])}`", "",
             f"Every accuracy figure (kernel L1, PSNR, SSIM, K-COV... per image and in the means) of each report, "
             f"as rerun now, against the same report at commit `{args.ref}`; timings are left out.", "",
             "| report | values compared | identical | largest difference | reference rows not rerun |",
             "| --- | ---: | ---: | ---: | ---: |"]
    details: list[str] = []
    for path in sorted(source.glob("benchmarks_*.md")):
        if path.name == "benchmarks_reproduction.md":
            continue
        rel = f"docs/{path.name}"
        proc = subprocess.run(["git", "show", f"{args.ref}:{rel}"], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            lines.append(f"| {path.name} | new report | - | - | - |")
            continue
        n, same, worst, notes, missing = compare(proc.stdout, path.read_text())
        lines.append(f"| {path.name} | {n} | {same} | {worst:g} | {missing} |")
        if notes:
            details += [f"* {path.name}: " + "; ".join(notes)]
    if details:
        lines += ["", "Cells that differ (first few per report):", "", *details]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
