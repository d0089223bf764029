"""The speed/accuracy frontier of one pass of bench/real_faces.py: Easy / Medium / Hard AP against
ms per photo, for every row of that pass (each size of ours, YuNet, the Ultra-Light detector, BlazeFace).

    python bench/frontier.py TABLE.json PREFIX     (TABLE.json: `bench/real_faces.py --json`)
    python bench/real_faces.py ... --frontier PREFIX   (the same, at the end of the pass)

Writes PREFIX.csv (one line per detector: detector, input, ms_per_photo (median whole call), easy,
medium, hard; sorted by ms) and PREFIX.png (three panels, AP against ms per photo on a log axis; our
files joined by a line, in order of time). The CSV is what `dvc plots show PREFIX.csv -x ms_per_photo
-y easy` reads.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

SUBSETS = ("easy", "medium", "hard")
CSV_FIELDS = ("detector", "input", "ms_per_photo", *SUBSETS)
OURS_PREFIX = "ours "  # bench/real_faces.py names our rows "ours <file name>"


def frontier_rows(summaries: list[dict]) -> list[dict]:
    """bench/real_faces.py JSON rows -> the CSV rows (CSV_FIELDS), fastest first."""
    missing = [f for f in ("detector", "input", "latency_ms", *SUBSETS) if any(f not in row for row in summaries)]
    if missing:
        raise ValueError(f"not a bench/real_faces.py table: rows lack {missing}")
    rows = [{"detector": row["detector"], "input": row["input"], "ms_per_photo": row["latency_ms"],
             **{subset: row[subset] for subset in SUBSETS}} for row in summaries]
    return sorted(rows, key=lambda row: row["ms_per_photo"])


def write_frontier(summaries: list[dict], prefix: Path) -> list[Path]:
    """Write PREFIX.csv and PREFIX.png from the rows of one pass; -> the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = frontier_rows(summaries)
    csv_path, png_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".png")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    figure, axes = plt.subplots(1, len(SUBSETS), figsize=(15, 5), sharex=True, sharey=True)
    ours = [row for row in rows if row["detector"].startswith(OURS_PREFIX)]
    others = [row for row in rows if row not in ours]
    times = [row["ms_per_photo"] for row in rows]
    for axis, subset in zip(axes, SUBSETS):
        if ours:
            axis.plot([r["ms_per_photo"] for r in ours], [r[subset] for r in ours], "-o", color="tab:blue",
                      label="ours, int8 (input size)")
            for row in ours:  # each point named by its input size: "640x480 uint8" -> "640x480"
                axis.annotate(row["input"].split()[0], (row["ms_per_photo"], row[subset]), fontsize=7,
                              textcoords="offset points", xytext=(3, 5))
        for row, marker, colour in zip(others, "sD^vP*X", ("tab:orange", "tab:green", "tab:red", "tab:purple",
                                                             "tab:brown", "tab:pink", "tab:olive")):
            axis.plot(row["ms_per_photo"], row[subset], marker, color=colour, markersize=8,
                      label=f"{row['detector']}, {row['input']}")
        axis.set_xscale("log")
        axis.set_xlim(min(times) / 1.5, max(times) * 1.5)
        axis.set_title(f"WIDER val {subset.capitalize()}")
        axis.set_xlabel("ms per photo (median whole call)")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("AP (official protocol)")
    axes[0].set_ylim(0, 1)
    axes[0].legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return [csv_path, png_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", type=Path, help="the JSON of `bench/real_faces.py --json`")
    parser.add_argument("prefix", type=Path, help="write PREFIX.csv and PREFIX.png")
    args = parser.parse_args(argv)
    try:
        summaries = json.loads(args.table.read_text(encoding="utf-8"))
        paths = write_frontier(summaries, args.prefix)
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        print(f"error: {args.table}: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
