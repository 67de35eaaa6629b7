"""`make bench`: every benchmark in turn, then one table of figures beside their baselines.

Each benchmark measures its own baseline in the same run (nginx and wrk for static
files, raw Celery no-op tasks, a raw apply_async loop, a raw requests loop, a raw
smtplib loop) and records each figure through bench/results.py; this prints them
together: value, baseline, ratio, target, and whether the target is met.
Run:  .venv/bin/python bench/run_all.py [--only feeds_serving,ingest_fanout] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["ingest_fanout", "feeds_latency", "feeds_serving", "webhooks_throughput", "webhooks_isolation",
              "newsletter_send", "durability", "memory", "sustained"]
# Arguments a benchmark gets here instead of its defaults, to keep `make bench` within its time:
# the sustained pipeline with its default 20,000 articles takes ten minutes or more; 5,000 take a few.
ARGUMENTS = {"sustained": ["--count", "5000"]}


def table(rows: list[dict]) -> str:
    lines = ["| figure | value | baseline (same run) | ratio | target | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        base = f"{r['baseline']}: {r['baseline_value']:,.1f} {r['unit']}" if r.get("baseline") else "-"
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.get("met")]
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"| {r['figure']}{note} | {r['value']:,.1f} {r['unit']} | {base} | {ratio} | {r.get('target') or '-'} | {met} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or BENCHMARKS
    results = Path(tempfile.mkstemp(prefix="syndicate-bench-", suffix=".jsonl")[1])
    env = {**os.environ, "SYNDICATE_BENCH_RESULTS": str(results)}
    failed = []
    started = time.monotonic()
    for n, name in enumerate(names, 1):
        print(f"== [{n}/{len(names)}] bench/{name}.py", flush=True)
        if subprocess.run([sys.executable, str(HERE / f"{name}.py"), *ARGUMENTS.get(name, [])], env=env).returncode != 0:
            failed.append(name)
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    results.unlink(missing_ok=True)
    header = (f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{time.strftime('%Y-%m-%d')}, {time.monotonic() - started:.0f} s")
    text = f"{header}\n\n{table(rows)}\n"
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
