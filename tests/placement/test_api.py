"""The placement API as an app sees it: real ``linepool serve``, real HTTP, pools on a genuine kube-apiserver.

Each test writes the pool's status as the operator would and checks answers an app relies on:
status codes, the answer's fields, deep links, the short link and its QR code, the vCard,
stickiness and moves, 503s with Retry-After, every bad-input case, and the OpenAPI document.
"""

import itertools
import json
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import vobject

from linepool.sandbox.placement import PlacementProcess
from linepool.sandbox.postgres import PostgresServer
from tests.placement.conftest import TOKEN, Pools, ServiceFactory, fresh_user

pytestmark = pytest.mark.integration

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def base(pools: Pools, pool: str = "p") -> str:
    return f"/v1/namespaces/{pools.namespace}/linepools/{pool}"


def place(service: PlacementProcess, pools: Pools, user: str, *, pool: str = "p",
          **extra: Any) -> tuple[int, dict[str, str], Any]:
    return service.request("POST", f"{base(pools, pool)}/placements", body={"user": user, **extra}, token=TOKEN)


@pytest.fixture
def two_servers(pools: Pools, start_service: ServiceFactory) -> PlacementProcess:
    pools.pool("p", contactCard={"name": "Acme Support, Inc.", "organization": "Acme",
                                 "photoURL": "https://acme.example/logo.png", "note": "Text us any time"},
               placement={"firstMessage": "Hi Acme!"})
    pools.server("s1", pool="p", lines=["+15550000001", "+15550000002"])
    pools.server("s2", pool="p", lines=["+15550000011", "support@acme.example"])
    return start_service(namespaces=[pools.namespace])


def test_new_users_are_spread_round_robin_across_servers_and_known_users_keep_their_line(
        two_servers: PlacementProcess, pools: Pools) -> None:
    answers = [place(two_servers, pools, f"rr-{n}") for n in range(4)]
    assert [status for status, _, _ in answers] == [201] * 4
    lines = [body["line"] for _, _, body in answers]
    assert lines == ["+15550000001", "+15550000011", "+15550000002", "support@acme.example"]
    servers = [body["server"] for _, _, body in answers]
    assert all(a != b for a, b in itertools.pairwise(servers)), servers
    status, _, again = place(two_servers, pools, "rr-1")
    assert status == 200
    assert again["line"] == "+15550000011"
    assert again["moved"] is False
    assert again["link"] == answers[1][2]["link"]


def test_an_answer_carries_deep_links_a_short_link_with_its_qr_code_and_the_contact_card(
        two_servers: PlacementProcess, pools: Pools) -> None:
    status, _, body = place(two_servers, pools, "links-1", firstMessage="Hey, it's Ana & Bo")
    assert status == 201
    line = body["line"]
    encoded = urllib.parse.quote("Hey, it's Ana & Bo", safe="")
    assert body["deepLinks"] == {"ios": f"sms:{line}&body={encoded}", "android": f"sms:{line}?body={encoded}"}
    assert set(body) >= {"user", "line", "server", "placedAt", "moved", "deepLinks", "link", "contactCard"}
    assert "previousLine" not in body
    link = body["link"].removeprefix(two_servers.url)
    assert link.startswith("/l/")

    status, headers, _ = two_servers.request("GET", link, headers={"User-Agent": IPHONE})
    assert (status, headers["location"]) == (302, body["deepLinks"]["ios"])
    status, headers, _ = two_servers.request("GET", link, headers={"User-Agent": ANDROID})
    assert (status, headers["location"]) == (302, body["deepLinks"]["android"])
    status, headers, page = two_servers.request("GET", link, headers={"User-Agent": DESKTOP})
    assert status == 200
    assert "qr.svg" in page
    status, headers, svg = two_servers.request("GET", link + "/qr.svg")
    assert status == 200
    assert headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg).tag.endswith("svg")

    status, headers, card = two_servers.request("GET", body["contactCard"].removeprefix(two_servers.url))
    assert status == 200
    assert headers["content-type"].startswith("text/vcard")
    parsed = vobject.readOne(card)
    assert parsed.version.value == "3.0"
    assert parsed.fn.value == "Acme Support, Inc."
    assert parsed.org.value == ["Acme"]
    assert parsed.note.value == "Text us any time"
    assert parsed.tel.value == line


def test_the_pools_default_opener_and_an_email_lines_vcard(two_servers: PlacementProcess, pools: Pools) -> None:
    bodies = [place(two_servers, pools, f"opener-{n}")[2] for n in range(4)]
    assert all(b["deepLinks"]["ios"].endswith("&body=Hi%20Acme%21") for b in bodies)
    email = next(b for b in bodies if b["line"] == "support@acme.example")
    assert email["deepLinks"]["ios"] == "sms:support@acme.example&body=Hi%20Acme%21"
    _, _, card = two_servers.request("GET", email["contactCard"].removeprefix(two_servers.url))
    parsed = vobject.readOne(card)
    assert parsed.email.value == "support@acme.example"
    assert not hasattr(parsed, "tel")


def test_get_and_delete_a_placement(two_servers: PlacementProcess, pools: Pools) -> None:
    _, _, placed = place(two_servers, pools, "user/with:odd chars")
    path = f"{base(pools)}/placements/{urllib.parse.quote('user/with:odd chars', safe='')}"
    status, _, found = two_servers.request("GET", path, token=TOKEN)
    assert status == 200
    assert found["line"] == placed["line"]
    assert found["user"] == "user/with:odd chars"
    status, _, released = two_servers.request("DELETE", path, token=TOKEN)
    assert (status, released["released"]) == (200, True)
    assert two_servers.request("GET", path, token=TOKEN)[0] == 404
    assert two_servers.request("DELETE", path, token=TOKEN)[0] == 404
    link = placed["link"].removeprefix(two_servers.url)
    assert two_servers.request("GET", link, headers={"User-Agent": IPHONE})[0] == 404


def test_a_flagged_line_moves_its_users_and_an_at_risk_line_keeps_them(
        two_servers: PlacementProcess, pools: Pools) -> None:
    users = {f"mv-{n}": place(two_servers, pools, f"mv-{n}")[2] for n in range(4)}
    by_line = {body["line"]: user for user, body in users.items()}
    pools.status("s1", lines=["+15550000001", "+15550000002"],
                 state={"+15550000001": "Flagged", "+15550000002": "AtRisk"})
    flagged_user, risky_user = by_line["+15550000001"], by_line["+15550000002"]

    def moved_answer() -> dict[str, Any]:
        for _ in range(50):
            status, _, body = place(two_servers, pools, flagged_user)
            if body.get("moved"):
                assert status == 200
                return dict(body)
            import time
            time.sleep(0.1)
        raise AssertionError("the flagged line's user was never moved")

    moved = moved_answer()
    assert moved["previousLine"] == "+15550000001"
    assert moved["line"] not in {"+15550000001", "+15550000002"}  # flagged, and at risk: neither takes new users
    assert moved["link"] == users[flagged_user]["link"]  # the short link follows the user
    status, _, kept = place(two_servers, pools, risky_user)
    assert (status, kept["line"], kept["moved"], kept["lineState"]) == (200, "+15550000002", False, "AtRisk")
    status, _, again = place(two_servers, pools, flagged_user)
    assert (status, again["line"], again["moved"]) == (200, moved["line"], False)


def test_a_deleted_server_moves_its_users(two_servers: PlacementProcess, pools: Pools) -> None:
    answers = {f"gone-{n}": place(two_servers, pools, f"gone-{n}")[2] for n in range(2)}
    on_s2 = next(user for user, body in answers.items() if body["server"] == "s2")
    pools.delete_server("s2")
    for _ in range(50):
        _status, _, body = place(two_servers, pools, on_s2)
        if body.get("moved"):
            break
        import time
        time.sleep(0.1)
    assert body["moved"] is True
    assert body["server"] == "s1"


def test_budgets_count_observed_conversations_and_a_full_pool_answers_503_with_retry_after(
        pools: Pools, start_service: ServiceFactory) -> None:
    pools.pool("p", quota=3)
    pools.server("s1", pool="p", lines=["+15550000101", "+15550000102"], observed={"+15550000101": 1})
    service = start_service(namespaces=[pools.namespace])
    lines = [place(service, pools, f"b-{n}")[2]["line"] for n in range(5)]
    assert sorted(lines) == sorted(["+15550000101"] * 2 + ["+15550000102"] * 3)
    status, headers, body = place(service, pools, "b-6")
    assert status == 503
    assert body["reason"] == "PoolFull"
    assert headers["retry-after"] == "30"  # the pool's poll interval: the next status update
    assert place(service, pools, "b-0")[0] == 200  # known users are still answered
    status, _, summary = service.request("GET", f"{base(pools)}/placements:summary", token=TOKEN)
    assert status == 200
    assert {line["line"]: line["budgetRemaining"] for line in summary["lines"]} == {
        "+15550000101": 0, "+15550000102": 0}
    assert summary["users"] == 5
    assert summary["newUsersToday"] == 5


def test_without_metrics_nobody_new_is_placed_but_known_users_keep_their_lines(
        pools: Pools, start_service: ServiceFactory) -> None:
    pools.pool("p")
    pools.server("s1", pool="p", lines=["+15550000201"])
    service = start_service(namespaces=[pools.namespace])
    assert place(service, pools, "known")[0] == 201
    pools.metrics("p", ok=False)
    for _ in range(50):
        status, headers, body = place(service, pools, fresh_user())
        if status == 503:
            break
        import time
        time.sleep(0.1)
    assert (status, body["reason"]) == (503, "MetricsUnavailable")
    assert "unreachable" in body["message"]
    assert int(headers["retry-after"]) > 0
    assert place(service, pools, "known")[0] == 200


def test_a_pool_the_operator_has_not_reported_on_is_not_ready(pools: Pools, start_service: ServiceFactory) -> None:
    pools.kube.apply({"apiVersion": "linepool.dev/v1alpha1", "kind": "LinePool",
                      "metadata": {"name": "fresh", "namespace": pools.namespace},
                      "spec": {"metrics": {"prometheusURL": "http://127.0.0.1:9/"}}})
    service = start_service(namespaces=[pools.namespace])
    status, headers, body = place(service, pools, "u", pool="fresh")
    assert (status, body["reason"]) == (503, "PoolNotReady")
    assert "retry-after" in headers


BAD_INPUT = [
    # (name, raw body, status, field or None, words in the message)
    ("malformed JSON", b'{"user": ', 400, None, "JSON object"),
    ("not an object", b'["u-1"]', 400, None, "JSON object"),
    ("empty body", b"", 400, None, "JSON object"),
    ("missing user", b'{"firstMessage": "Hey!"}', 422, "user", "required"),
    ("user not a string", b'{"user": 42}', 422, "user", "string"),
    ("empty user", b'{"user": ""}', 422, "user", "at least 1"),
    ("user over 256 bytes", json.dumps({"user": "é" * 129}).encode(), 422, "user", "256 bytes"),
    ("link in firstMessage", b'{"user": "u", "firstMessage": "see https://acme.example"}', 422, "firstMessage",
     "link"),
    ("bare domain in firstMessage", b'{"user": "u", "firstMessage": "visit acme.com"}', 422, "firstMessage", "link"),
    ("firstMessage too long", json.dumps({"user": "u", "firstMessage": "a" * 161}).encode(), 422, "firstMessage",
     "160"),
    ("unknown field", b'{"user": "u", "platform": "android"}', 422, "platform", "not a field"),
]


@pytest.mark.parametrize(("name", "raw", "status", "field", "words"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_a_4xx_json_error_naming_the_field_and_writes_nothing(
        two_servers: PlacementProcess, pools: Pools, name: str, raw: bytes, status: int, field: str | None,
        words: str) -> None:
    path = f"{base(pools)}/placements"
    answer_status, headers, body = two_servers.request("POST", path, raw=raw, token=TOKEN)
    assert answer_status == status, body
    assert headers["content-type"] == "application/json"
    assert body["code"] == status
    assert body.get("field") == field
    assert words in body["message"]
    _, _, summary = two_servers.request("GET", f"{base(pools)}/placements:summary", token=TOKEN)
    assert summary["users"] == 0


def test_a_user_of_exactly_256_bytes_is_accepted(two_servers: PlacementProcess, pools: Pools) -> None:
    assert place(two_servers, pools, "é" * 128)[0] == 201


@pytest.mark.parametrize(("method", "path", "status", "reason"), [
    ("POST", "/v1/namespaces/{ns}/linepools/nope/placements", 404, "NotFound"),
    ("POST", "/v1/namespaces/not-watched/linepools/p/placements", 404, "NotFound"),
    ("GET", "/v1/namespaces/{ns}/linepools/p/placements/nobody", 404, "NotFound"),
    ("GET", "/v1/namespaces/{ns}/linepools/p/lines/+19999999999/contact.vcf", 404, "NotFound"),
    ("GET", "/l/no-such-code", 404, "NotFound"),
    ("GET", "/v2/anything", 404, "NotFound"),
    ("PUT", "/v1/namespaces/{ns}/linepools/p/placements", 405, "MethodNotAllowed"),
    ("PATCH", "/v1/namespaces/{ns}/linepools/p/placements/u", 405, "MethodNotAllowed"),
    ("POST", "/v1/namespaces/{ns}/linepools/p/placements:summary", 405, "MethodNotAllowed"),
])
def test_unknown_things_and_wrong_methods(two_servers: PlacementProcess, pools: Pools, method: str, path: str,
                                          status: int, reason: str) -> None:
    answer, headers, body = two_servers.request(method, path.format(ns=pools.namespace), body={"user": "u"},
                                                token=TOKEN)
    assert (answer, body["reason"]) == (status, reason), body
    assert headers["content-type"] == "application/json"
    if status == 405:
        assert "allow" in headers


def test_credentials(two_servers: PlacementProcess, pools: Pools) -> None:
    path = f"{base(pools)}/placements"
    status, headers, _body = two_servers.request("POST", path, body={"user": "u"})
    assert (status, headers.get("www-authenticate")) == (401, "Bearer")
    assert two_servers.request("POST", path, body={"user": "u"}, token="wrong")[0] == 401
    assert two_servers.request("POST", path, body={"user": "u"}, headers={"Authorization": "Basic dTpw"})[0] == 401
    # Credentials come first: a caller without them learns nothing about the body or the pool.
    assert two_servers.request("POST", path, raw=b"{", token=None)[0] == 401
    assert two_servers.request("POST", f"/v1/namespaces/{pools.namespace}/linepools/nope/placements",
                               body={"user": "u"})[0] == 401
    assert two_servers.request("POST", path, body={"user": "u"}, token="another-token")[0] == 201
    assert "wrong" not in two_servers.log()


def test_openapi_document_health_readiness_and_metrics(two_servers: PlacementProcess, pools: Pools) -> None:
    status, _, document = two_servers.request("GET", "/openapi.json")
    assert status == 200
    paths = document["paths"]
    assert set(paths) >= {"/v1/namespaces/{namespace}/linepools/{pool}/placements",
                          "/v1/namespaces/{namespace}/linepools/{pool}/placements/{user}",
                          "/v1/namespaces/{namespace}/linepools/{pool}/placements:summary",
                          "/v1/namespaces/{namespace}/linepools/{pool}/lines/{line}/contact.vcf",
                          "/l/{code}", "/l/{code}/qr.svg"}
    post = paths["/v1/namespaces/{namespace}/linepools/{pool}/placements"]["post"]
    assert set(post["responses"]) >= {"200", "201", "400", "401", "403", "404", "422", "503"}
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["user"]
    assert two_servers.request("GET", "/healthz")[0] == 200
    assert two_servers.request("GET", "/readyz")[2] == {"ready": True}
    place(two_servers, pools, "metrics-1")
    place(two_servers, pools, "metrics-1")
    _, _, page = two_servers.request("GET", "/metrics")
    ns = pools.namespace
    assert f'linepool_placements_total{{namespace="{ns}",outcome="placed",pool="p"}} 1.0' in page
    assert f'linepool_placements_total{{namespace="{ns}",outcome="sticky",pool="p"}} 1.0' in page
    assert f'linepool_placement_budget_remaining{{line="+15550000001",namespace="{ns}",pool="p"}} 49.0' in page
    assert 'linepool_placement_request_duration_seconds_count{route="/v1/namespaces/{namespace}/linepools/{pool}' \
           '/placements"} 2.0' in page
    assert "linepool_build_info" not in page
    two_servers.request("POST", f"{base(pools)}/placements", raw=b"{", token=TOKEN)
    two_servers.request("POST", f"/v1/namespaces/{ns}/linepools/made-up/placements", body={"user": "u"}, token=TOKEN)
    _, _, page = two_servers.request("GET", "/metrics")
    assert f'linepool_placements_total{{namespace="{ns}",outcome="rejected",pool="p"}} 1.0' in page
    assert "made-up" not in page  # the operator's liveness metric is the operator's alone


def test_an_unreachable_store_answers_503_loses_nothing_and_recovers(
        pools: Pools, start_service: ServiceFactory, postgres: PostgresServer, postgres_url: str) -> None:
    pools.pool("p")
    pools.server("s1", pool="p", lines=["+15550000301", "+15550000302"])
    service = start_service(namespaces=[pools.namespace], database=postgres_url)
    _, _, before = place(service, pools, "kept")
    postgres.halt()
    try:
        status, headers, body = place(service, pools, "while-down")
        assert (status, body["reason"]) == (503, "StoreUnavailable")
        assert headers["retry-after"] == "5"
        status, _, ready = service.request("GET", "/readyz")
        assert status == 503
        assert any("store" in problem for problem in ready["problems"])
    finally:
        postgres.start()
    status, _, again = place(service, pools, "kept")
    assert (status, again["line"]) == (200, before["line"])
    assert place(service, pools, "while-down")[0] == 201
    _, _, page = service.request("GET", "/metrics")
    assert "linepool_placement_store_errors_total 0.0" not in page
