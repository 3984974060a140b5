"""``make bench``: every figure on one line with its goal and PASS or MISS.

    .venv/bin/python -m bench                     # all figures (a few minutes)
    .venv/bin/python -m bench --only requests     # some: parse, requests, mesh, capture, ratio (comma-separated)

- ``parse``: the DAG file's parse time, median of 5 fresh interpreters (``bench.parse_time``).
- ``requests``: API requests per check at 10, 100 and 1,000 nodes (``bench.requests_per_check``).
- ``mesh``: mesh verdict time and peak memory at 200 and 1,000 goldpinger pods (``bench.mesh_verdict``).
- ``capture``: ``twin.capture`` of a 1,000-node twin, time and requests (``bench.capture_scale``).
- ``ratio``: run wall time against the twin's critical path, worker-slot seconds (``bench.run_ratio``,
  when present; it prints its own lines).

Progress goes to stderr, figures to stdout. The exit status is 1 when any figure misses its goal.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("parse", "requests", "mesh", "capture", "ratio")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"machine: {os.cpu_count()} CPUs ({model}), {memory:.0f} GB RAM, Python {platform.python_version()}"


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse() -> bool:
    from bench import parse_time

    progress("parse time: 5 fresh interpreters ...")
    text, ok = parse_time.line(parse_time.measure(5))
    print(text, flush=True)
    return ok


def requests(sizes: list[int]) -> bool:
    from bench import requests_per_check

    lines, ok = requests_per_check.report(requests_per_check.measure(sizes, log=progress))
    print("\n".join(lines), flush=True)
    return ok


def mesh(pods: list[int]) -> bool:
    from bench import mesh_verdict

    ok = True
    for n in pods:
        lines, passed = mesh_verdict.lines(n, mesh_verdict.measure(n, 3, log=progress))
        print("\n".join(lines), flush=True)
        ok = ok and passed
    return ok


def capture() -> bool:
    from bench import capture_scale

    progress("capture: building a 1,000-node twin ...")
    return capture_scale.main([]) == 0


def ratio() -> bool:
    """``bench.run_ratio.main`` when that module exists (it prints its own lines)."""
    if importlib.util.find_spec("bench.run_ratio") is None:
        print("run ratio: bench/run_ratio.py not present  SKIPPED", flush=True)
        return True
    run_main: Callable[..., int] = importlib.import_module("bench.run_ratio").main
    return (run_main([]) if inspect.signature(run_main).parameters else run_main()) == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--only", default=",".join(FIGURES), help=f"figures, comma-separated: {', '.join(FIGURES)}")
    ap.add_argument("--sizes", default="10,100,1000", help="node counts for the requests figure")
    ap.add_argument("--pods", default="200,1000", help="goldpinger pod counts for the mesh figure")
    args = ap.parse_args(argv)
    chosen = [f.strip() for f in args.only.split(",") if f.strip()]
    if unknown := sorted(set(chosen) - set(FIGURES)):
        ap.error(f"unknown figure(s): {', '.join(unknown)} (known: {', '.join(FIGURES)})")
    for path in (str(ROOT), str(ROOT / "plugins")):
        if path not in sys.path:
            sys.path.insert(0, path)
    print(machine(), flush=True)
    run = {"parse": parse, "requests": lambda: requests([int(s) for s in args.sizes.split(",")]),
           "mesh": lambda: mesh([int(p) for p in args.pods.split(",")]), "capture": capture, "ratio": ratio}
    results = [run[name]() for name in FIGURES if name in chosen]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
