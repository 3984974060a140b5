"""The DAG's trigger-time parameters as Airflow ``Param`` objects with JSON schemas.

The schema refuses a bad value when the run is triggered (the UI and REST API name the field);
``MigrationSpec.from_params`` repeats the checks at run time for what JSON schema cannot say.
"""

from __future__ import annotations

from typing import Any

from cilium_migration.spec import AUTOSCALER_MODES, ENI_DIFFERENCES, IN_PLACE, NODE_POOL
from cilium_migration.windows import MAX_MINUTES

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
REGION = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"

TIMEOUT_KEYS = ("nodegroup", "nodes_ready", "rollout", "mesh", "eviction", "approval", "poll_interval",
                "ping_tolerance")


def schemas() -> dict[str, dict[str, Any]]:
    """Field name -> (default, JSON schema, description). Plain data, testable without Airflow."""
    positive = {"type": "number", "exclusiveMinimum": 0}
    return {
        "cluster_name": {"default": "dc-migrate", "type": "string", "pattern": NAME,
                         "description": "EKS cluster name"},
        "region": {"default": "us-west-1", "type": "string", "pattern": REGION,
                   "description": "AWS region of the cluster"},
        "old_nodegroups": {"default": ["ng-1"], "type": "array", "minItems": 1, "uniqueItems": True,
                           "items": {"type": "string", "pattern": NAME},
                           "description": "node groups served by the AWS VPC CNI, to migrate away from"},
        "new_nodegroup": {"default": "ng-cilium", "type": "string", "pattern": NAME,
                          "description": "node group for Cilium (tainted node.cilium.io/agent-not-ready)"},
        "new_node_count": {"default": 3, "type": "integer", "minimum": 1,
                           "description": "nodes to start in the new node group"},
        "cilium_chart": {"default": "twin:cilium", "type": "string", "minLength": 1,
                         "description": "Cilium chart: local path, 'twin:cilium' (stand-in chart), oci:// or "
                                        "repo URL"},
        "cilium_version": {"default": None, "type": ["null", "string"],
                           "description": "chart version (repo/OCI charts)"},
        "cilium_values": {"default": {}, "type": "object",
                          "description": "Helm values merged over the runbook's values"},
        "egress_masquerade_interface": {"default": "eth0", "type": "string",
                                        "pattern": r"^[A-Za-z0-9_.+-]{1,15}$",
                                        "description": "egressMasqueradeInterfaces (ens5 on recent AMIs)"},
        "goldpinger_namespace": {"default": "default", "type": "string",
                                 "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                                 "description": "namespace of the goldpinger connectivity checker"},
        "deploy_goldpinger": {"default": True, "type": "boolean",
                              "description": "deploy goldpinger (false: it is already there)"},
        "restart_namespaces": {"default": ["kube-system"], "type": "array", "uniqueItems": True,
                               "items": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
                               "description": "namespaces whose workloads restart onto Cilium first, in this "
                                              "order (system add-ons such as CoreDNS); the rest follow "
                                              "alphabetically"},
        "eviction_batch_size": {"default": 5, "type": "integer", "minimum": 1,
                                "description": "pods evicted at a time during cutover"},
        "force_evictions": {"default": False, "type": "boolean",
                            "description": "delete pods a PodDisruptionBudget protects (never by default)"},
        "allow_network_policies": {"default": False, "type": "boolean",
                                   "description": "proceed although NetworkPolicies exist"},
        "accept_eni_differences": {"default": [], "type": "array", "uniqueItems": True,
                                   "items": {"type": "string", "enum": list(ENI_DIFFERENCES)},
                                   "description": "VPC CNI features Cilium's ENI mode will not reproduce, "
                                                  "accepted as they are: prefix_delegation, "
                                                  "custom_networking, security_groups_for_pods"},
        "check_operator_iam": {"default": True, "type": "boolean",
                               "description": "check in IAM that cilium-operator's role allows the EC2 "
                                              "actions of ENI mode (false: credentials the DAG cannot "
                                              "inspect, e.g. EKS Pod Identity)"},
        "autoscaler": {"default": "refuse", "type": "string", "enum": list(AUTOSCALER_MODES),
                       "description": "with Cluster Autoscaler or Karpenter running: refuse, or acknowledged "
                                      "(kept off the node groups in play for the window)"},
        "timeouts": {"default": {}, "type": "object",
                     "properties": {k: positive for k in TIMEOUT_KEYS}, "additionalProperties": False,
                     "description": "seconds per wait: " + ", ".join(TIMEOUT_KEYS)},
        "window_cron": {"default": "", "type": "string",
                        "description": "maintenance window: cron expression of its start, e.g. '0 2 * * SUN' "
                                       "(empty: no window, disruptive steps run at any time)"},
        "window_minutes": {"default": 120, "type": "integer", "minimum": 1, "maximum": MAX_MINUTES,
                           "description": "maintenance window: its length in minutes"},
        "window_timezone": {"default": "UTC", "type": "string", "minLength": 1,
                            "description": "maintenance window: IANA time zone of window_cron, e.g. "
                                           "'Europe/Paris'"},
        "dry_run": {"default": False, "type": "boolean",
                    "description": "server-side dry run of every write; EKS scaling only logged"},
        "aws_conn_id": {"default": "aws_default", "type": "string", "pattern": NAME,
                        "description": "Airflow connection for EKS"},
        "kubernetes_conn_id": {"default": "kubernetes_default", "type": "string", "pattern": NAME,
                               "description": "Airflow connection for the cluster's API server"},
    }


# params only one strategy reads
NODE_POOL_ONLY = ("new_nodegroup", "new_node_count")
IN_PLACE_ONLY = ("restart_namespaces",)


def strategy_schemas(strategy: str = NODE_POOL) -> dict[str, dict[str, Any]]:
    """The params of one strategy's DAG: its own, the shared ones, and ``strategy`` fixed to it."""
    left_out = IN_PLACE_ONLY if strategy == NODE_POOL else NODE_POOL_ONLY
    out = {name: schema for name, schema in schemas().items() if name not in left_out}
    if strategy == IN_PLACE:
        out["old_nodegroups"] = {**out["old_nodegroups"],
                                 "description": "node groups served by the AWS VPC CNI, migrated in place (every "
                                                "node replaced at the end)"}
    out["strategy"] = {"default": strategy, "type": "string", "enum": [strategy],
                       "description": "the runbook's strategy this DAG follows (fixed)"}
    return out


def dag_params(strategy: str = NODE_POOL) -> dict[str, Any]:
    """``{name: Param(default, type=..., ...)}`` for ``DAG(params=...)``."""
    from airflow.sdk import Param

    out: dict[str, Any] = {}
    for name, schema in strategy_schemas(strategy).items():
        schema = dict(schema)
        default = schema.pop("default")
        out[name] = Param(default, **schema)
    return out
