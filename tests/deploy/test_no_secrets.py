"""No shell anywhere in what runs inside Airflow: no command is ever built from user-supplied strings.

Covered, by reading the source of ``dags/`` and ``plugins/`` (AST, not grep, so comments and strings do
not count): no import of ``subprocess``, ``os.system``/``os.popen``/``os.exec*``/``os.spawn*``, ``pty`` or
``commands``; no ``shell=True`` keyword; no ``BashOperator``/``@task.bash``. The scanner itself is checked
on snippets that must be caught and ones that must not. (That no secret reaches a task log or an XCom is
checked on real runs in ``test_celery_run.py``.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "dags").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")])

SHELL_MODULES = frozenset({"subprocess", "pty", "commands", "asyncio.subprocess"})
OS_SHELL_CALLS = frozenset({"system", "popen", "execl", "execle", "execlp", "execlpe", "execv", "execve",
                            "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
                            "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp"})
ASYNC_SHELL_CALLS = frozenset({"create_subprocess_exec", "create_subprocess_shell"})
BASH_NAMES = frozenset({"BashOperator", "BashSensor", "bash"})


def shell_uses(source: str) -> Iterator[str]:
    """Each way ``source`` could run a shell or another program, as 'line N: what'."""
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in SHELL_MODULES or alias.name.endswith(".bash"):
                    yield f"line {line}: import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for alias in node.names:
                if module in SHELL_MODULES or module.endswith(".bash") or alias.name in SHELL_MODULES:
                    yield f"line {line}: from {module} import {alias.name}"
                elif module == "os" and alias.name in OS_SHELL_CALLS:
                    yield f"line {line}: from os import {alias.name}"
                elif alias.name in ASYNC_SHELL_CALLS or alias.name in BASH_NAMES - {"bash"}:
                    yield f"line {line}: from {module} import {alias.name}"
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if owner == "os" and node.attr in OS_SHELL_CALLS:
                yield f"line {line}: os.{node.attr}"
            elif node.attr in ASYNC_SHELL_CALLS:
                yield f"line {line}: {owner}.{node.attr}"
            elif owner == "task" and node.attr == "bash":
                yield f"line {line}: @task.bash"
            elif node.attr in BASH_NAMES - {"bash"}:
                yield f"line {line}: {node.attr}"
        elif isinstance(node, ast.Name) and node.id in BASH_NAMES - {"bash"}:
            yield f"line {line}: {node.id}"
        elif isinstance(node, ast.keyword) and node.arg == "shell":
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                yield f"line {line}: shell={ast.unparse(node.value)}"


def test_there_is_source_to_scan() -> None:
    names = {p.name for p in SOURCES}
    assert {"eks_cilium_migration.py", "operators.py", "cilium.py"} <= names


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(ROOT))) for p in SOURCES])
def test_no_shell_in_dags_and_plugins(path: Path) -> None:
    assert list(shell_uses(path.read_text())) == []


@pytest.mark.parametrize("snippet", [
    pytest.param("import subprocess", id="import-subprocess"),
    pytest.param("from subprocess import run", id="from-subprocess"),
    pytest.param("import os\nos.system('helm ' + name)", id="os-system"),
    pytest.param("import os\nos.popen(cmd)", id="os-popen"),
    pytest.param("from os import execvp", id="from-os-exec"),
    pytest.param("run(cmd, shell=True)", id="shell-true"),
    pytest.param("run(cmd, shell=flag)", id="shell-variable"),
    pytest.param("import asyncio\nasyncio.create_subprocess_shell(cmd)", id="asyncio-subprocess"),
    pytest.param("from airflow.providers.standard.operators.bash import BashOperator", id="bash-operator"),
    pytest.param("from airflow.sdk import task\n@task.bash\ndef f(): return 'ls'", id="task-bash"),
    pytest.param("import pty", id="pty"),
])
def test_the_scanner_catches(snippet: str) -> None:
    assert list(shell_uses(snippet))


@pytest.mark.parametrize("snippet", [
    pytest.param("# subprocess.run(cmd, shell=True)\nx = 'os.system'", id="comments-and-strings"),
    pytest.param("import os\nos.environ.get('HOME')\nos.path.join('a', 'b')", id="os-path-environ"),
    pytest.param("run(cmd, shell=False)", id="shell-false"),
])
def test_the_scanner_passes(snippet: str) -> None:
    assert list(shell_uses(snippet)) == []
