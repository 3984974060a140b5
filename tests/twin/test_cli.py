"""``python -m twin``: a foreground twin that writes its files, says it is ready, and stops on a signal.

Covers: the ready line carries the URLs (plain and TLS Kubernetes API, EKS) and the file paths;
``kubectl --kubeconfig FILE`` works against it; the env file holds both Airflow connections; the
generated ``large`` scenario has its node and pod counts; SIGTERM and SIGINT stop it with exit 0; an
unknown scenario exits 2 naming the built-in ones. With ``--rbac FILE`` the kubeconfig and the env file's
``kubernetes_default`` carry the restricted identity (kubectl is refused what the file does not grant),
the admin kubeconfig sits next to it as ``<kubeconfig>.admin``, the ready line names both and the user;
an unreadable RBAC file exits 2.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/bin/kubectl"
CLUSTERROLE = ROOT / "deploy" / "rbac" / "clusterrole.yaml"


def start_twin(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twin",
            "--kubeconfig",
            str(tmp_path / "kubeconfig"),
            "--env-file",
            str(tmp_path / "twin.env"),
            "--timing-scale",
            "0.1",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("twin ready:"):
            return proc, line
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"no ready line; stderr: {proc.communicate()[1][-2000:]}")


@pytest.mark.parametrize(
    "sig", [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGINT, id="sigint")]
)
def test_serves_until_signalled(tmp_path: Path, sig: signal.Signals) -> None:
    proc, ready = start_twin(tmp_path)
    try:
        urls = dict(re.findall(r"(kubernetes-tls|kubernetes|eks|kubeconfig|env-file)=(\S+)", ready))
        assert urls["kubernetes"].startswith("http://127.0.0.1:") and urls["eks"].startswith(
            "http://127.0.0.1:"
        )
        assert urls["kubernetes-tls"].startswith("https://127.0.0.1:")
        assert Path(urls["kubeconfig"]) == (tmp_path / "kubeconfig").resolve()
        if sig == signal.SIGTERM:
            out = subprocess.run(
                [KUBECTL, "--kubeconfig", urls["kubeconfig"], "get", "nodes", "-o", "name"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, out.stderr
            assert len(out.stdout.split()) == 3
            env = dict(line.split("=", 1) for line in (tmp_path / "twin.env").read_text().splitlines())
            aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"].strip("'"))
            assert aws["extra"]["endpoint_url"] == urls["eks"]
            k8s = json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"].strip("'"))
            assert k8s["extra"]["kube_config"]["clusters"][0]["cluster"]["server"] == urls["kubernetes-tls"]
    finally:
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "twin stopped" in stdout


def test_unknown_scenario_exits_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "twin", "--scenario", "no-such"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "built-in: " in out.stderr and "default" in out.stderr


def test_generated_scenario(tmp_path: Path) -> None:
    proc, ready = start_twin(tmp_path, "--scenario", "large", "--nodes", "6", "--pods", "60")
    try:
        kubeconfig = re.search(r"kubeconfig=(\S+)", ready).group(1)  # type: ignore[union-attr]
        out = subprocess.run(
            [KUBECTL, "--kubeconfig", kubeconfig, "get", "pods", "-A", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.split()) == 60
        nodes = subprocess.run(
            [KUBECTL, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert len(nodes.stdout.split()) == 6
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def kubectl(kubeconfig: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=30)


def token_of(kubeconfig: dict[str, Any]) -> str:
    return str(kubeconfig["users"][0]["user"]["token"])


def test_rbac_file_makes_the_written_identity_the_restricted_one(tmp_path: Path) -> None:
    proc, ready = start_twin(tmp_path, "--rbac", str(CLUSTERROLE))
    try:
        fields = dict(re.findall(r"([a-z-]+)=(\S+)", ready))
        assert fields["rbac-user"] == "cilium-migration"
        assert Path(fields["kubeconfig"]) == (tmp_path / "kubeconfig").resolve()
        assert Path(fields["admin-kubeconfig"]) == (tmp_path / "kubeconfig.admin").resolve()

        nodes = kubectl(fields["kubeconfig"], "get", "nodes", "-o", "name")
        assert nodes.returncode == 0, nodes.stderr
        assert len(nodes.stdout.split()) == 3
        secrets = kubectl(fields["kubeconfig"], "get", "secrets", "-n", "default")
        assert secrets.returncode != 0
        assert ('secrets is forbidden: User "cilium-migration" cannot list resource "secrets" in API group "" '
                'in the namespace "default"') in secrets.stderr
        admin = kubectl(fields["admin-kubeconfig"], "get", "secrets", "-n", "default")
        assert admin.returncode == 0, admin.stderr

        restricted = yaml.safe_load(Path(fields["kubeconfig"]).read_text())
        admin_config = yaml.safe_load(Path(fields["admin-kubeconfig"]).read_text())
        env = {k: v.strip("'") for k, v in (line.split("=", 1) for line in
                                            (tmp_path / "twin.env").read_text().splitlines())}
        connection = json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
        assert token_of(connection["extra"]["kube_config"]) == token_of(restricted) == env["TWIN_RBAC_TOKEN"]
        assert token_of(admin_config) == env["TWIN_TOKEN"] != env["TWIN_RBAC_TOKEN"]
        assert env["TWIN_RBAC_USER"] == "cilium-migration"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize("content", [
    pytest.param(None, id="missing"),
    pytest.param("kind: ClusterRoleBinding\nmetadata: {name: x}\nroleRef: {kind: ClusterRole, name: r}\n"
                 "subjects: [{kind: User, name: u}]\n", id="binds-an-undefined-role"),
    pytest.param("{{ not yaml", id="not-yaml"),
])
def test_an_unusable_rbac_file_exits_2(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "rbac.yaml"
    if content is not None:
        path.write_text(content)
    out = subprocess.run([sys.executable, "-m", "twin", "--rbac", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith(f"twin: --rbac {path}: ")
