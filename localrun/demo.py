"""`make demo`: the whole migration of the default twin cluster, driven through Airflow's REST API.

It starts the twin and a local Airflow, triggers the DAG, answers each approval from its evidence
(printing what it chose and why), prints task progress, and ends with the cluster's final state.
With ``--keep`` nothing is answered: approve in the UI (Required Actions), and stop with Ctrl-C.
``--timing realistic`` gives the twin EKS-like delays (``twin.config.PROFILES``); ``main(on_end=...)``
hands the finished run (twin, REST client, run id) to a caller before anything stops (``bench.run_ratio``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localrun.airflow import ROOT, USERNAME, LocalAirflow
from localrun.approvals import pick
from localrun.cluster_view import describe
from localrun.rest import AirflowRest, PendingApproval

if TYPE_CHECKING:
    from twin.cluster import Twin

CLUSTERROLE = ROOT / "deploy" / "rbac" / "clusterrole.yaml"

DAG_ID = "eks_cilium_migration"
DAG_IDS = {"node-pool": DAG_ID, "in-place": "eks_cilium_migration_in_place"}
NODE_POOL_ONLY = ("new_nodegroup", "new_node_count")  # params the in-place DAG does not have


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (the twin's --env-file format)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip("'")
    return env


@dataclass
class FinishedRun:
    """What ``main(on_end=...)`` is handed once the run has ended, while Airflow and the twin still run."""

    twin: Twin
    rest: AirflowRest
    dag_id: str
    run_id: str
    state: str


def main(argv: list[str] | None = None, *, on_end: Callable[[FinishedRun], None] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localrun.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="approve in the UI yourself; keep everything up")
    ap.add_argument("--strategy", choices=sorted(DAG_IDS), default="node-pool",
                    help="node-pool (new Cilium nodes, default) or in-place (Cilium beside aws-node on the same "
                         "nodes)")
    ap.add_argument("--reject", choices=["cutover", "decommission", "restarts", "removal"],
                    help="answer 'roll back' at this gate (node-pool: cutover, decommission; in-place: "
                         "restarts, removal)")
    ap.add_argument("--dry-run", action="store_true", help="trigger with dry_run=true")
    ap.add_argument("--timing-scale", type=float, default=0.3, help="twin delays multiplier (default 0.3)")
    ap.add_argument("--timing", choices=["default", "fast", "realistic"],
                    help="a twin timing profile (twin.config.PROFILES), instead of --timing-scale")
    ap.add_argument("--conf", default="{}", help="extra DAG params as JSON")
    ap.add_argument("--scenario", default="default",
                    help="a built-in scenario or a YAML file (e.g. one `python -m twin.capture` wrote: a "
                         "rehearsal); the DAG's node-group params are filled from it")
    ap.add_argument("--run-dir", type=Path, default=ROOT / "run",
                    help="kubeconfig, env file and Airflow home go here (default run/)")
    args = ap.parse_args(argv)

    from twin.cluster import Twin
    from twin.config import PROFILES, Timing
    from twin.rehearsal import RehearsalError, params_for
    from twin.scenario import load_scenario

    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario(args.scenario)
    try:
        fitting = params_for(scenario)
    except RehearsalError as err:
        print(f"error: {args.scenario}: {err}", file=sys.stderr)
        return 2
    timing = PROFILES[args.timing] if args.timing else Timing().scaled(args.timing_scale)
    boot = timing.node_provision_s + timing.pod_start_s + timing.agent_ready_s
    twin = Twin(scenario, timing=timing, rbac=CLUSTERROLE, settle_timeout=max(60.0, 60.0 + 2 * boot))
    print("== Starting the cluster twin (EKS API + Kubernetes API) ...", flush=True)
    twin.start()
    twin.write_kubeconfig(run_dir / "kubeconfig")  # the admin's, for you to look around with kubectl
    twin.write_env_file(run_dir / "twin.env", token=twin.rbac_token)  # the DAG runs as deploy/rbac/'s user
    print(f"   the DAG's Kubernetes connection is user {twin.rbac.username if twin.rbac else '?'}, "
          f"bound by {CLUSTERROLE.relative_to(ROOT)} (least privilege)", flush=True)
    eks = twin.boto3_client("eks")
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(twin.kube_client())
    cluster = scenario.cluster.name
    print(describe(core, eks, cluster), flush=True)
    print(f"   kubectl --kubeconfig {run_dir / 'kubeconfig'} get nodes", flush=True)

    airflow = LocalAirflow(home=run_dir / "airflow", extra_env=parse_env_file(run_dir / "twin.env"))
    print(f"== Starting Airflow (standalone) at {airflow.url} ...", flush=True)
    try:
        airflow.start()
        rest = AirflowRest(airflow.url, USERNAME, airflow.password)
        rest.login()
        dag_id = DAG_IDS[args.strategy]
        rest.wait_for_dag(dag_id)
        if args.strategy == "in-place":
            fitting = {k: v for k, v in fitting.items() if k not in NODE_POOL_ONLY}
        conf: dict[str, Any] = {**fitting, "dry_run": args.dry_run, **json.loads(args.conf)}
        run_id = rest.trigger(dag_id, conf)
        print(f"== Triggered {dag_id} run {run_id} with {json.dumps(conf)}", flush=True)
        t0 = time.monotonic()

        def progress(task_id: str, state: str | None) -> None:
            if state:
                print(f"   [{time.monotonic() - t0:6.1f}s] {task_id:<55} {state}", flush=True)

        announced: set[str] = set()

        def decide(approval: PendingApproval) -> str | None:
            if args.keep:
                if approval.task_id in announced:
                    return None
                announced.add(approval.task_id)  # once per gate, even across retries
                print(f"== Waiting for you: '{approval.subject}' in {airflow.url} (Browse > Required Actions), "
                      f"user {USERNAME} / {airflow.password}", flush=True)
                return None
            gate = approval.task_id.split(".")[0].removeprefix("approve_")
            decision = pick(approval, wanted="roll" if args.reject == gate else None)
            print(f"== Approval '{approval.subject}': choosing '{decision.option}' because {decision.reason}.",
                  flush=True)
            print("   " + approval.body.replace("\n", "\n   ")[:3000], flush=True)
            return decision.option

        state = rest.follow(dag_id, run_id, decide=decide, on_progress=progress, timeout=3600)
        print(f"== Run {run_id} ended: {state}", flush=True)
        if on_end is not None:
            on_end(FinishedRun(twin, rest, dag_id, run_id, state))
        print(describe(core, eks, cluster), flush=True)
        print(f"== See the run in the UI: {airflow.url}/dags/{dag_id}/runs/{run_id} "
              f"(user {USERNAME} / {airflow.password}); logs under {airflow.home}", flush=True)
        if args.keep:
            print("== Keeping Airflow and the twin up; Ctrl-C to stop.", flush=True)
            while True:
                time.sleep(3600)
        return 0 if state == "success" else 1
    except KeyboardInterrupt:
        return 130
    finally:
        airflow.stop()
        twin.stop()


if __name__ == "__main__":
    sys.exit(main())
