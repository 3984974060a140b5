"""``python -m twin``: run a cluster twin in the foreground until SIGINT or SIGTERM.

Once the cluster has settled it writes the kubeconfig and env files (when asked) and prints one line
starting with ``twin ready:`` that carries the URLs and file paths.

With ``--rbac FILE`` (roles and their bindings to one subject, e.g. ``deploy/rbac/clusterrole.yaml``) the
twin enforces that file for its RBAC token, and the kubeconfig and the env file's ``kubernetes_default``
carry that restricted identity; the admin's kubeconfig is written next to the kubeconfig as
``<kubeconfig>.admin`` (the ready line names it ``admin-kubeconfig=`` and the user ``rbac-user=``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from twin.config import PROFILES
from twin.scenario import Scenario, load_scenario


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m twin",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Once settled it prints one line: 'twin ready: cluster=... region=... kubernetes=URL "
        "kubernetes-tls=URL eks=URL [kubeconfig=PATH] [admin-kubeconfig=PATH] [env-file=PATH] "
        "[rbac-user=NAME]'. With --rbac, kubeconfig= and the env file carry the RBAC user's token, "
        "admin-kubeconfig= the admin's (for the twin's own setup and for checks).",
    )
    ap.add_argument(
        "--scenario",
        default="default",
        help="a built-in scenario name (default, large) or a scenario YAML file (default: default)",
    )
    ap.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the twin here")
    ap.add_argument("--env-file", type=Path, help="write the Airflow connections (KEY='VALUE' lines) here")
    ap.add_argument(
        "--rbac",
        type=Path,
        metavar="FILE",
        help="enforce this RBAC file (roles and their bindings to one subject) for the twin's RBAC token: "
        "the kubeconfig and the env file's kubernetes_default connection then carry that restricted "
        "identity, and the admin kubeconfig is written to <kubeconfig>.admin",
    )
    ap.add_argument(
        "--port", type=int, default=0, help="Kubernetes API over plain HTTP (default 0: a free one)"
    )
    ap.add_argument(
        "--tls-port",
        type=int,
        default=0,
        help="Kubernetes API over HTTPS, what the kubeconfig names (default 0: a free one)",
    )
    ap.add_argument("--eks-port", type=int, default=0, help="EKS API (moto) port (default 0: a free one)")
    ap.add_argument(
        "--timing",
        choices=sorted(PROFILES),
        default="default",
        help="the controllers' delays: default, fast (the end-to-end tests'), realistic (as on EKS: node boot "
        "75 s, pod start 6 s; see twin.config.Timing.realistic); the scenario's timing overrides it",
    )
    ap.add_argument("--timing-scale", type=float, default=1.0, help="multiply every controller delay by F")
    ap.add_argument("--nodes", type=int, default=1000, help="nodes of the generated 'large' scenario")
    ap.add_argument("--pods", type=int, default=20000, help="pods of the generated 'large' scenario")
    ap.add_argument(
        "--settle-timeout", type=float, default=600.0, help="seconds to wait for the cluster to settle"
    )
    return ap


def scenario_for(args: argparse.Namespace) -> Scenario:
    if args.scenario == "large":
        from twin.scenarios.generate import generate_scenario

        return generate_scenario(args.nodes, args.pods)
    return load_scenario(args.scenario)


def check_rbac_file(path: Path) -> str | None:
    """Why the RBAC file cannot be enforced, or None when it can."""
    import yaml

    from twin.rbac import load_policy

    try:
        load_policy(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as err:
        return f"--rbac {path}: {err}"
    return None


def admin_kubeconfig_path(kubeconfig: Path) -> Path:
    """Where the admin's kubeconfig goes when the kubeconfig carries the RBAC identity."""
    return kubeconfig.with_name(kubeconfig.name + ".admin")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from twin.cluster import Twin, TwinError

    try:
        scenario = scenario_for(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"twin: {err}", file=sys.stderr)
        return 2
    problem = check_rbac_file(args.rbac) if args.rbac else None
    if problem:
        print(f"twin: {problem}", file=sys.stderr)
        return 2
    timing = scenario.make_timing(PROFILES[args.timing]).scaled(args.timing_scale)
    twin = Twin(
        scenario,
        timing=timing,
        kube_port=args.port,
        eks_port=args.eks_port,
        tls_port=args.tls_port,
        settle_timeout=args.settle_timeout,
        rbac=args.rbac,
    )
    stop, ready = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if not ready.is_set():
            raise KeyboardInterrupt  # abandon a start still waiting for the cluster to settle

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if args.scenario == "large":  # settle by passes first: many times faster at this size
            twin.start(run_controllers=False)
            twin.settle_by_passes()
            twin.start_controllers()
        else:
            twin.start()
    except TwinError as err:
        twin.stop()
        print(f"twin: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        twin.stop()
        print("twin: interrupted while starting", file=sys.stderr)
        return 130
    ready.set()
    try:
        identity = twin.rbac_token or None  # the RBAC identity with --rbac, else the admin
        admin_kubeconfig = admin_kubeconfig_path(args.kubeconfig) if args.kubeconfig and identity else None
        if args.kubeconfig:
            twin.write_kubeconfig(args.kubeconfig, token=identity)
        if admin_kubeconfig:
            twin.write_kubeconfig(admin_kubeconfig)
        if args.env_file:
            twin.write_env_file(args.env_file, token=identity)
        files = "".join(
            f" {label}={path.resolve()}"
            for label, path in (
                ("kubeconfig", args.kubeconfig),
                ("admin-kubeconfig", admin_kubeconfig),
                ("env-file", args.env_file),
            )
            if path
        )
        user = f" rbac-user={twin.rbac.username}" if twin.rbac else ""
        print(
            f"twin ready: cluster={scenario.cluster.name} region={scenario.cluster.region} "
            f"kubernetes={twin.kube_url} kubernetes-tls={twin.kube_tls_url} eks={twin.eks_url}{files}{user}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        twin.stop()
    print("twin stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
