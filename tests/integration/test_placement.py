"""The placement service with the real operator: genuine kube-apiserver, real Prometheus, real fleet.

What an app notices:

- a server that saturates stops receiving new users as soon as the operator's status says so
  (within one status update), while its users keep their lines;
- a line Apple flags (the relay reports it) has its users moved at their next request;
- 64 concurrent requests never push a line past its budget, and never give a user two lines;
- a SIGKILL of the service, on SQLite and on PostgreSQL, loses no acknowledged placement;
- with Kubernetes credentials, an app's ServiceAccount bound by RBAC to ``linepools/placements``
  is let in, and an unbound one is refused (TokenReview, then SubjectAccessReview).
"""

import http.client
import pathlib
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.placement import PlacementProcess
from tests.integration.conftest import Sandbox, wait_for

pytestmark = pytest.mark.integration

TOKEN = "app-token"


def start_service(box: Sandbox, *, database: str | None = None, tokens: bool = True,
                  log: str = "serve.log") -> PlacementProcess:
    token_file = None
    if tokens:
        token_file = box.workdir / "tokens"
        token_file.write_text(TOKEN + "\n")
    service = PlacementProcess(
        kubeconfig=box.api.write_kubeconfig(box.workdir / "serve-kubeconfig"),
        database=database or f"sqlite:///{box.workdir}/placements.db", log_path=box.workdir / log,
        token_file=token_file, namespaces=[box.namespace])
    service.start()
    service.wait_ready()
    return service


def placements(box: Sandbox, pool: str) -> str:
    return f"/v1/namespaces/{box.namespace}/linepools/{pool}/placements"


def place(service: PlacementProcess, box: Sandbox, pool: str, user: str, token: str = TOKEN) -> tuple[int, Any]:
    status, _, body = service.request("POST", placements(box, pool), body={"user": user}, token=token)
    return status, body


def summary(service: PlacementProcess, box: Sandbox, pool: str) -> dict[str, Any]:
    status, _, body = service.request("GET", placements(box, pool) + ":summary", token=TOKEN)
    assert status == 200, body
    return dict(body)


def in_rotation(box: Sandbox, pool: str, lines: list[str]) -> bool:
    return sorted(box.status("linepools", pool).get("assignableLines") or []) == sorted(lines)


SAT = {"psat-0": ["+14155552000", "+14155552001"], "psat-1": ["+14155552010", "+14155552011"]}


def test_a_saturating_server_stops_receiving_new_users_within_one_status_update(sandbox: Sandbox) -> None:
    sandbox.pool("psat", scaling={"mode": "Off"})
    for name, lines in SAT.items():
        sandbox.server(name, "psat", lines)
    sandbox.start_operator()
    wait_for(lambda: in_rotation(sandbox, "psat", SAT["psat-0"] + SAT["psat-1"]), what="every line in rotation")
    service = start_service(sandbox)
    try:
        first = [place(service, sandbox, "psat", f"early-{n}") for n in range(4)]
        assert [status for status, _ in first] == [201] * 4
        assert {body["server"] for _, body in first} == {"psat-0", "psat-1"}

        sandbox.send("psat-0", 4000)  # 80% of 5,000: past stopAt
        wait_for(lambda: sandbox.status("messagingservers", "psat-0").get("assignable") is False,
                 what="psat-0 saturated in its status")
        # The service sees the update through its watch before the operator's next poll (1s).
        wait_for(lambda: not any(line["assignable"] for line in summary(service, sandbox, "psat")["lines"]
                                 if line["server"] == "psat-0"),
                 timeout=1.0, interval=0.05, what="the service to see psat-0 saturated")
        later = [place(service, sandbox, "psat", f"late-{n}") for n in range(6)]
        assert [status for status, _ in later] == [201] * 6
        assert {body["server"] for _, body in later} == {"psat-1"}
        # Saturation only keeps new users away: the early users of psat-0 keep their lines.
        for (_, before), n in zip(first, range(4), strict=True):
            status, again = place(service, sandbox, "psat", f"early-{n}")
            assert (status, again["line"], again["moved"]) == (200, before["line"], False)
    finally:
        service.stop()


FLAG = {"pflag-0": ["+14155552100", "+14155552101"], "pflag-1": ["+14155552110"]}


def test_a_flagged_lines_users_move_at_their_next_request(sandbox: Sandbox) -> None:
    sandbox.pool("pflag", scaling={"mode": "Off"})
    for name, lines in FLAG.items():
        sandbox.server(name, "pflag", lines)
    sandbox.start_operator()
    wait_for(lambda: in_rotation(sandbox, "pflag", [*FLAG["pflag-0"], *FLAG["pflag-1"]]), what="every line in rotation")
    service = start_service(sandbox)
    try:
        users = {f"f-{n}": place(service, sandbox, "pflag", f"f-{n}")[1] for n in range(6)}
        flagged = "+14155552100"
        on_flagged = [user for user, body in users.items() if body["line"] == flagged]
        assert len(on_flagged) == 2

        sandbox.fleet.set_line_state("pflag-0", flagged, "flagged")
        wait_for(lambda: next(line for line in sandbox.status("messagingservers", "pflag-0")["lines"]
                              if line["id"] == flagged)["state"] == "Flagged", what="the line Flagged in status")
        wait_for(lambda: any(line["state"] == "Flagged" for line in summary(service, sandbox, "pflag")["lines"]),
                 timeout=1.0, interval=0.05, what="the service to see the flag")
        for user in on_flagged:
            status, body = place(service, sandbox, "pflag", user)
            assert status == 200
            assert body["moved"] is True
            assert body["previousLine"] == flagged
            assert body["line"] != flagged
        for user, before in users.items():
            if user not in on_flagged:
                status, body = place(service, sandbox, "pflag", user)
                assert (status, body["line"], body["moved"]) == (200, before["line"], False)
        after = summary(service, sandbox, "pflag")
        assert next(line for line in after["lines"] if line["line"] == flagged)["users"] == 0
    finally:
        service.stop()


def test_budgets_hold_under_64_concurrent_requests(sandbox: Sandbox) -> None:
    sandbox.pool("pbudget", scaling={"mode": "Off"}, quotas={"newConversationsPerLinePerDay": 5})
    lines = {"pbudget-0": ["+14155552200", "+14155552201"], "pbudget-1": ["+14155552210", "+14155552211"]}
    for name, ids in lines.items():
        sandbox.server(name, "pbudget", ids)
    sandbox.start_operator()
    wait_for(lambda: in_rotation(sandbox, "pbudget", lines["pbudget-0"] + lines["pbudget-1"]), what="rotation")
    service = start_service(sandbox)
    try:
        users = [f"c-{n % 60}" for n in range(180)]  # each user three times, in flight together
        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = list(pool.map(lambda user: place(service, sandbox, "pbudget", user), users))
        lines_of: dict[str, set[str]] = defaultdict(set)
        for user, (status, body) in zip(users, answers, strict=True):
            assert status in {200, 201, 503}, body
            if status != 503:
                lines_of[user].add(body["line"])
            else:
                assert body["reason"] == "PoolFull"
        assert all(len(found) == 1 for found in lines_of.values())
        assert len(lines_of) == 20  # 4 lines x 5 new conversations a day
        assert sum(1 for status, _ in answers if status == 201) == 20
        totals = summary(service, sandbox, "pbudget")
        assert [line["newUsersToday"] for line in totals["lines"]] == [5, 5, 5, 5]
    finally:
        service.stop()


def _sigkill_loses_nothing(box: Sandbox, database: str, pool: str, lines: dict[str, list[str]]) -> None:
    box.pool(pool, scaling={"mode": "Off"}, quotas={"newConversationsPerLinePerDay": 40})
    for name, ids in lines.items():
        box.server(name, pool, ids)
    box.start_operator()
    everything = [line for ids in lines.values() for line in ids]
    wait_for(lambda: in_rotation(box, pool, everything), what="rotation")
    service = start_service(box, database=database, log="serve-killed.log")
    acknowledged: dict[str, str] = {}
    stop = threading.Event()

    def client(worker: int) -> None:
        n = 0
        while not stop.is_set():
            user = f"k-{worker}-{n}"
            n += 1
            try:
                status, body = place(service, box, pool, user)
            except (OSError, http.client.HTTPException):
                return  # the service is gone: this request was never acknowledged
            if status in {200, 201}:
                acknowledged[user] = body["line"]

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(acknowledged) >= 40, what="placements under way")
    service.kill()
    stop.set()
    for thread in threads:
        thread.join()

    again = start_service(box, database=database, log="serve-restarted.log")
    try:
        for user, line in acknowledged.items():
            status, _, body = again.request("GET", f"{placements(box, pool)}/{user}", token=TOKEN)
            assert (status, body["line"]) == (200, line), user
        totals = summary(again, box, pool)
        assert all(line["newUsersToday"] <= 40 for line in totals["lines"])
        assert totals["users"] >= len(acknowledged)
    finally:
        again.stop()


def test_sqlite_loses_no_acknowledged_placement_to_a_sigkill(sandbox: Sandbox) -> None:
    _sigkill_loses_nothing(sandbox, f"sqlite:///{sandbox.workdir}/killed.db", "pkill-sqlite",
                           {"pks-0": ["+14155552300", "+14155552301"], "pks-1": ["+14155552310"]})


def test_postgresql_loses_no_acknowledged_placement_to_a_sigkill(sandbox: Sandbox, postgres_url: str) -> None:
    _sigkill_loses_nothing(sandbox, postgres_url, "pkill-pg",
                           {"pkp-0": ["+14155552400", "+14155552401"], "pkp-1": ["+14155552410"]})


def test_kubernetes_credentials_a_bound_service_account_is_let_in_and_an_unbound_one_refused(
        sandbox: Sandbox, kube: KubeApiServer, tmp_path: pathlib.Path) -> None:
    ns = sandbox.namespace
    sandbox.pool("pauth", scaling={"mode": "Off"})
    sandbox.server("pauth-0", "pauth", ["+14155552500"])
    sandbox.start_operator()
    wait_for(lambda: in_rotation(sandbox, "pauth", ["+14155552500"]), what="rotation")
    for account in ("signup-app", "stranger"):
        kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": ns}})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "placements", "namespace": ns},
                "rules": [{"apiGroups": ["linepool.dev"], "resources": ["linepools/placements"],
                           "verbs": ["create", "get"]}]})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "signup-app-placements", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "placements"},
                "subjects": [{"kind": "ServiceAccount", "name": "signup-app", "namespace": ns}]})
    app = kube.service_account_token(ns, "signup-app")
    stranger = kube.service_account_token(ns, "stranger")
    service = start_service(sandbox, tokens=False)
    try:
        status, body = place(service, sandbox, "pauth", "u-1", token=app)
        assert status == 201, body
        status, _, found = service.request("GET", f"{placements(sandbox, 'pauth')}/u-1", token=app)
        assert (status, found["line"]) == (200, "+14155552500")
        # Bound for create and get only: delete is refused, with what to grant.
        status, _, refused = service.request("DELETE", f"{placements(sandbox, 'pauth')}/u-1", token=app)
        assert status == 403
        assert "linepools/placements" in refused["message"] and "delete" in refused["message"]
        status, body = place(service, sandbox, "pauth", "u-2", token=stranger)
        assert (status, body["reason"]) == (403, "Forbidden")
        assert f"system:serviceaccount:{ns}:stranger" in body["message"]
        status, body = place(service, sandbox, "pauth", "u-3", token="not-a-kubernetes-token")
        assert status == 401
        assert app not in service.log() and stranger not in service.log()
    finally:
        service.stop()
