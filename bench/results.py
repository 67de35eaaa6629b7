"""One line per figure, in the same shape from every benchmark, for `make bench`'s table.

``record()`` prints the figure beside its baseline measured in the same run, the
ratio and the target, and, when ``SYNDICATE_BENCH_RESULTS`` names a file, appends
the same as one JSON line there (bench/run_all.py reads them into one table).
Higher is better unless ``lower_is_better`` (latencies), where the target is a
ceiling on the value itself and the ratio is baseline/value.
"""

from __future__ import annotations

import json
import os


def record(figure: str, value: float, unit: str, baseline: str | None = None, baseline_value: float | None = None,
           target: str = "", met: bool | None = None, note: str = "") -> dict:
    ratio = (value / baseline_value) if baseline_value else None
    row = {"figure": figure, "value": value, "unit": unit, "baseline": baseline, "baseline_value": baseline_value,
           "ratio": ratio, "target": target, "met": met, "note": note}
    shown = f"{value:,.1f} {unit}"
    if baseline:
        shown += f"  vs {baseline} {baseline_value:,.1f} {unit}  = {ratio:.2f}x"
    if target:
        shown += f"  target {target}: {'met' if met else 'NOT MET'}"
    print(f"RESULT {figure}: {shown}" + (f"  ({note})" if note else ""), flush=True)
    path = os.environ.get("SYNDICATE_BENCH_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
    return row
