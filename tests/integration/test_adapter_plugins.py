"""Messaging adapters installed by other distributions, found through real entry points.

A tiny distribution (a module and its ``.dist-info``) is written to a temporary directory and
put on the import path, as ``pip install`` would: the operator finds it with no configuration
but ``--messaging-adapter NAME``.
"""

import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from linepool.adapters.messaging import (
    ENTRY_POINT_GROUP,
    HttpMessagingAdapter,
    MessagingError,
    OutgoingMessage,
    adapter_names,
    load_adapter,
    send_guarded,
)
from linepool.logic.keepalive import Delivery
from linepool.sandbox.fleet import RelayStub

pytestmark = pytest.mark.integration

MODULE = "linepool_test_adapter"

PLUGIN_SOURCE = '''
"""Adapters of a third-party distribution, for the operator's entry point tests."""


class RecordingAdapter:
    """Takes the operator's session and posts a provider-specific body through it."""

    def __init__(self, *, session=None):
        self.session = session
        self.sent = []

    async def send(self, *, endpoint, token, message):
        self.sent.append(message)
        async with self.session.post(endpoint.rstrip("/") + "/v1/messages",
                                     json={"provider": "recording", "to": message.recipient,
                                           "idempotencyKey": message.idempotency_key},
                                     headers={"Authorization": "Bearer " + token}) as response:
            response.raise_for_status()


class SessionlessAdapter:
    """Takes no arguments at all."""

    def __init__(self):
        self.sent = []

    async def send(self, *, endpoint, token, message):
        self.sent.append(message)


class NoSend:
    """Installed under the group by mistake: it cannot send anything."""

    def __init__(self, *, session=None):
        self.session = session

    def deliver(self, message):
        pass
'''

ENTRY_POINTS = f"""\
[{ENTRY_POINT_GROUP}]
recording = {MODULE}:RecordingAdapter
sessionless = {MODULE}:SessionlessAdapter
nosend = {MODULE}:NoSend
"""


def message(key: str = "plug-1") -> OutgoingMessage:
    return OutgoingMessage(sender="+15550001111", recipient="+15550002222", text="Hi! Just saying hello",
                           idempotency_key=key)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    root = tmp_path_factory.mktemp("site-packages")
    (root / f"{MODULE}.py").write_text(textwrap.dedent(PLUGIN_SOURCE).lstrip(), encoding="utf-8")
    dist_info = root / f"{MODULE}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {MODULE}\nVersion: 0.1\n", encoding="utf-8")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    yield root
    sys.modules.pop(MODULE, None)


@pytest.fixture
def installed(plugin_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """The distribution on sys.path, for this test only."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    return plugin_dir


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def test_only_the_builtin_adapter_without_plugins() -> None:
    assert "http" in adapter_names()
    assert "recording" not in adapter_names()


@pytest.mark.usefixtures("installed")
def test_installed_adapters_are_listed() -> None:
    names = adapter_names()
    assert {"http", "recording", "sessionless", "nosend"} <= set(names)
    assert names == sorted(names) and names.count("http") == 1


@pytest.mark.usefixtures("installed")
async def test_the_builtin_adapter_is_the_default_name(session: aiohttp.ClientSession) -> None:
    assert isinstance(load_adapter("http", session=session), HttpMessagingAdapter)


@pytest.mark.usefixtures("installed")
async def test_a_plugin_gets_the_operators_session_and_sends_through_it(session: aiohttp.ClientSession) -> None:
    adapter = load_adapter("recording", session=session)
    assert type(adapter).__module__ == MODULE and type(adapter).__name__ == "RecordingAdapter"
    assert adapter.session is session  # type: ignore[attr-defined]
    with RelayStub(token="plug-token") as relay:
        await send_guarded(adapter, endpoint=relay.url, token="plug-token", message=message(), limit=5)
        assert relay.messages == [{"provider": "recording", "to": "+15550002222", "idempotencyKey": "plug-1"}]
    assert adapter.sent == [message()]  # type: ignore[attr-defined]


@pytest.mark.usefixtures("installed")
async def test_a_plugin_failure_is_a_retryable_messaging_error(session: aiohttp.ClientSession) -> None:
    adapter = load_adapter("recording", session=session)
    with RelayStub(token="plug-token") as relay, pytest.raises(MessagingError) as caught:
        await send_guarded(adapter, endpoint=relay.url, token="wrong-plug-token", message=message(), limit=5)
    assert caught.value.delivery is Delivery.RETRYABLE
    assert "ClientResponseError" in str(caught.value) and "wrong-plug-token" not in str(caught.value)


@pytest.mark.usefixtures("installed")
async def test_a_plugin_without_a_session_argument_is_built_without_one(session: aiohttp.ClientSession) -> None:
    adapter = load_adapter("sessionless", session=session)
    await adapter.send(endpoint="http://unused", token="t", message=message())
    assert adapter.sent == [message()]  # type: ignore[attr-defined]


@pytest.mark.usefixtures("installed")
async def test_an_unknown_name_lists_the_installed_adapters(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="no messaging adapter named 'nope'") as caught:
        load_adapter("nope", session=session)
    for name in ("http", "recording", "sessionless"):
        assert name in str(caught.value)


@pytest.mark.usefixtures("installed")
async def test_an_entry_point_without_send_is_refused(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match=r"'nosend' \(linepool_test_adapter:NoSend\) has no async send\(\)"):
        load_adapter("nosend", session=session)


# --- the real command line ---------------------------------------------------------------------


def linepool_run(*args: str, pythonpath: pathlib.Path | None,
                 tmp_path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    # No cluster anywhere: a kubeconfig pointing at a closed port, and no in-cluster service account.
    env["KUBECONFIG"] = str(tmp_path / "missing-kubeconfig")
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run([sys.executable, "-m", "linepool", "run", "--standalone", *args], capture_output=True,
                          text=True, timeout=30, check=False, env=env)


def test_the_cli_refuses_an_unknown_adapter_before_touching_a_cluster(plugin_dir: pathlib.Path,
                                                                      tmp_path: pathlib.Path) -> None:
    result = linepool_run("--messaging-adapter", "nope", pythonpath=plugin_dir, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--messaging-adapter" in result.stderr and "'nope'" in result.stderr
    assert "installed: http, nosend, recording, sessionless" in result.stderr
    # It stopped at the check: kopf never started, so it never looked for a cluster.
    assert "kubeconfig" not in result.stderr.lower() and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_the_cli_without_plugins_lists_only_http(tmp_path: pathlib.Path) -> None:
    result = linepool_run("--messaging-adapter", "recording", pythonpath=None, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "installed: http" in result.stderr and "recording'" in result.stderr
    assert "sessionless" not in result.stderr


def test_the_cli_refuses_an_adapter_without_send_at_start_up(plugin_dir: pathlib.Path,
                                                             tmp_path: pathlib.Path) -> None:
    result = linepool_run("--messaging-adapter", "nosend", pythonpath=plugin_dir, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--messaging-adapter" in result.stderr and "has no send() method" in result.stderr
    assert "Traceback" not in result.stderr
