"""The twin's controllers: what kube-scheduler, kube-controller-manager, the kubelets and Cilium do.

Each runs on ``twin.controllers.base.Controller``; ``core_controllers`` builds the ones every twin
runs (the node-group controller, which needs the EKS side, and the goldpinger model are separate).
"""

from __future__ import annotations

from twin.config import Timing
from twin.controllers.base import Controller, run_until
from twin.controllers.cilium_operator import CiliumOperator
from twin.controllers.daemonsets import DaemonSetController
from twin.controllers.deployments import DeploymentController
from twin.controllers.kubelet import Kubelet
from twin.controllers.nodelifecycle import NodeLifecycle
from twin.controllers.scheduler import Scheduler
from twin.faults import Faults
from twin.store import Store

__all__ = ["CiliumOperator", "Controller", "DaemonSetController", "DeploymentController", "Kubelet",
           "NodeLifecycle", "Scheduler", "core_controllers", "run_until"]


def core_controllers(store: Store, timing: Timing, faults: Faults) -> list[Controller]:
    """Scheduler, DaemonSets, Deployments/ReplicaSets, kubelets, node lifecycle, cilium-operator."""
    return [cls(store, timing, faults) for cls in (
        Scheduler, DaemonSetController, DeploymentController, Kubelet, NodeLifecycle, CiliumOperator)]
