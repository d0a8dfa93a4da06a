"""On a kind cluster: the CRDs install, every example applies, and the operator (run from this
checkout against the cluster) reconciles the minimal example's pool."""

import os
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, env=env, timeout=600).stdout


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    name = f"linepool-{uuid.uuid4().hex[:6]}"
    path = tmp_path_factory.mktemp("kind") / "kubeconfig"
    run("kind", "create", "cluster", "--name", name, "--kubeconfig", str(path), "--wait", "120s")
    try:
        yield path
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", name], check=False, timeout=300)


def test_crds_and_examples_apply_and_the_operator_reconciles(kubeconfig: pathlib.Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    run("kubectl", "apply", "-f", str(ROOT / "crds"), env=env)
    run("kubectl", "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", env=env)
    run("kubectl", "create", "namespace", "messaging", env=env)
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        run("kubectl", "apply", "--dry-run=server", "-f", str(example), env=env)
    run("kubectl", "apply", "-f", str(ROOT / "examples" / "linepool-minimal.yaml"), env=env)
    operator = subprocess.Popen([sys.executable, "-m", "linepool", "run", "--standalone", "-n", "messaging"], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = run("kubectl", "get", "lp", "-n", "messaging", "-o",
                      "jsonpath={.items[0].status.conditions[?(@.type=='MetricsAvailable')].status}", env=env)
            if out:
                break
            time.sleep(2)
        else:
            pytest.fail("the operator never wrote the pool's status")
    finally:
        operator.terminate()
        operator.wait(30)
