"""The DAG file's parse time: ``dags/eks_cilium_migration.py`` executed as Airflow's DAG processor
imports it, in fresh interpreters (median of ``--runs``).

Each run is a new interpreter with ``plugins/`` on ``sys.path`` (as Airflow puts it) and a throw-away
``AIRFLOW_HOME``; it imports ``airflow`` first (the DAG processor has it loaded before it parses a file),
then times the file's import as a module (what the DagBag does): everything the file imports (the Task
SDK, the providers, ``cilium_migration``) is inside the figure.

    .venv/bin/python -m bench.parse_time [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "dags" / "eks_cilium_migration.py"
GOAL_S = 0.5

PROBE = """
import importlib.util, sys, time
import airflow
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("unusual_prefix_eks_cilium_migration", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
from airflow.sdk import DAG
assert any(isinstance(v, DAG) for v in vars(module).values()), "no DAG in the file"
print(elapsed)
"""


def parse_once(home: str) -> float:
    env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", PROBE, str(DAG_FILE)], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(runs: int = 5) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as home:
        parse_once(home)  # the first run writes airflow.cfg and compiles bytecode: not counted
        return [parse_once(home) for _ in range(runs)]


def line(times: list[float]) -> tuple[str, bool]:
    median = statistics.median(times)
    ok = median <= GOAL_S
    return (f"DAG parse time (dags/{DAG_FILE.name}): {median:.3f} s median of {len(times)} fresh interpreters "
            f"(min {min(times):.3f}, max {max(times):.3f}; airflow imported first)  goal: <= {GOAL_S:g} s  "
            f"{'PASS' if ok else 'MISS'}"), ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    text, ok = line(measure(args.runs))
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
