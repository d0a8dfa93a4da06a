"""The placement service's HTTP API: routes, their answers and their errors.

Each route observes through adapters (the pool watch, the store, the access check), decides
through ``logic.placement`` and ``logic.links``, and answers JSON. Every error is a JSON object
``{"code", "reason", "message", "field"?}``: 400 for a body that is not a JSON object, 422 for a
bad field (named), 401/403 for credentials, 404 for an unknown pool, namespace, user or line,
405 for a wrong method, and 503 with ``Retry-After`` when no line can be given.

Authentication comes before the body is read: a caller without credentials learns nothing else.
The short link (``/l/{code}``), its QR code and the lines' vCards are public: they are handed to
end users' phones, and a code is 72 random bits.
"""

import html
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from linepool import __version__
from linepool.adapters.access import Access, AccessError, bearer
from linepool.adapters.placement_store import Placement, PlacementStore, StoreUnavailable
from linepool.adapters.pool_watch import PoolWatch
from linepool.api.spec import MAX_FIRST_MESSAGE, NO_LINKS_IN_FIRST_MESSAGE
from linepool.api.text import contains_link
from linepool.logic.links import deep_links, platform_for, qr_svg, vcard
from linepool.logic.placement import (
    PoolFacts,
    Unavailable,
    budget_left,
    move_reason,
    retry_after,
    window_start,
)

log = logging.getLogger(__name__)

MAX_USER_BYTES = 256
# Budget log entries older than this are out of every window (a calendar day is at most 25 h).
LOG_RETENTION = timedelta(days=2)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class PlacementRequest(BaseModel):
    """A new user to place, or a known one to look up."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, description=f"The app's id of the user: 1 to {MAX_USER_BYTES} bytes of UTF-8.")
    firstMessage: str | None = Field(
        default=None, min_length=1, max_length=MAX_FIRST_MESSAGE,
        description="The opener pre-filled in the user's deep link; text only, no link. "
                    "Without it, the pool's spec.placement.firstMessage.",
    )

    @field_validator("user")
    @classmethod
    def _user_size(cls, value: str) -> str:
        if len(value.encode()) > MAX_USER_BYTES:
            raise ValueError(f"must be at most {MAX_USER_BYTES} bytes of UTF-8")
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("firstMessage")
    @classmethod
    def _text_only(cls, value: str | None) -> str | None:
        if value is not None and contains_link(value):
            raise ValueError(NO_LINKS_IN_FIRST_MESSAGE)
        return value


class DeepLinkSet(BaseModel):
    ios: str = Field(description="sms:<line>&body=<first message>: opens Messages on iPhone, pre-filled.")
    android: str = Field(description="sms:<line>?body=<first message>: the same on Android.")


class PlacementAnswer(BaseModel):
    user: str
    line: str = Field(description="The user's line: an E.164 number or an Apple ID email.")
    server: str = Field(description="The MessagingServer that carries the line.")
    placedAt: str = Field(description="When the user was put on this line (RFC 3339).")
    moved: bool = Field(description="True when this request moved the user off a line that can no longer carry them.")
    previousLine: str | None = Field(default=None, description="The line the user moved off, when moved.")
    lineState: str = Field(description="The line's state as the operator last reported it (Unknown before).")
    deepLinks: DeepLinkSet
    link: str = Field(description="A short link that opens the right deep link for the phone; "
                                  "link + '/qr.svg' is its QR code.")
    contactCard: str = Field(description="URL of the line's vCard, to share early in the conversation.")


class ErrorAnswer(BaseModel):
    code: int
    reason: str
    message: str
    field: str | None = None


@dataclass
class Telemetry:
    """The service's own metrics, in their own registry: the operator's are not ours to export."""

    registry: CollectorRegistry
    placements: Counter
    latency: Histogram
    budget: Gauge
    store_errors: Counter

    @classmethod
    def create(cls) -> "Telemetry":
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            placements=Counter("linepool_placements_total", "Placement requests by outcome: placed, sticky, moved, "
                               "released, pool_full, unavailable, rejected.", ["namespace", "pool", "outcome"],
                               registry=registry),
            latency=Histogram("linepool_placement_request_duration_seconds", "Time to answer an API request.",
                              ["route"], registry=registry,
                              buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)),
            budget=Gauge("linepool_placement_budget_remaining", "New users each line may still take in the quota "
                         "window: its daily budget less observed new conversations and today's placements.",
                         ["namespace", "pool", "line"], registry=registry),
            store_errors=Counter("linepool_placement_store_errors_total", "Store operations that failed.",
                                 registry=registry),
        )


@dataclass
class Service:
    """What the routes work with; built by ``placement_service``."""

    store: PlacementStore
    watch: PoolWatch
    access: Access
    public_url: str
    telemetry: Telemetry
    clock: Callable[[], datetime]
    store_ready: bool = False


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, *, field: str | None = None,
                 retry: int | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.field, self.retry = code, reason, message, field, retry


def _error(code: int, reason: str, message: str, *, field: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "reason": reason, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=code, headers=headers)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorAnswer, "description": text} for code, text in {
        400: "The body is not a JSON object.", 401: "No valid bearer token.", 403: "The token may not do this.",
        404: "Unknown namespace, pool, user or line.", 422: "A field is invalid; `field` names it.",
        503: "No line can be given now (`reason`: PoolFull, MetricsUnavailable, PoolNotReady, InvalidSpec, "
             "StoreUnavailable); retry after `Retry-After` seconds.",
    }.items()
}


def create_app(service: Service) -> FastAPI:
    """The FastAPI application; ``/openapi.json`` documents it."""
    app = FastAPI(title="linepool placement service", version=__version__,
                  description="Gives each new user of an app a line of a LinePool, round-robin, within each "
                              "line's daily budget of new conversations, and keeps them on it.")
    prefix = "/v1/namespaces/{namespace}/linepools/{pool}"
    telemetry = service.telemetry

    def count_rejected(request: Request, code: int) -> None:
        # Only for pools that exist: a label per made-up path would let any caller grow the metrics.
        # (The watch holds no pool of an unwatched namespace, so ``facts`` is None for those too.)
        namespace, pool = request.path_params.get("namespace"), request.path_params.get("pool")
        if 400 <= code < 500 and namespace and pool \
                and service.watch.facts(namespace=namespace, name=pool) is not None:
            telemetry.placements.labels(namespace, pool, "rejected").inc()

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        count_rejected(request, exc.code)
        headers = {"Retry-After": str(exc.retry)} if exc.retry is not None else None
        return _error(exc.code, exc.reason, exc.message, field=exc.field, headers=headers)

    @app.exception_handler(AccessError)
    async def _access_error(request: Request, exc: AccessError) -> JSONResponse:
        count_rejected(request, exc.status)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 503:
            headers = {"Retry-After": "5"}
        return _error(exc.status, exc.reason, str(exc), headers=headers)

    @app.exception_handler(StoreUnavailable)
    async def _store_error(request: Request, exc: StoreUnavailable) -> JSONResponse:
        telemetry.store_errors.inc()
        log.warning("store unavailable: %s", exc)
        return _error(503, Unavailable.STORE_UNAVAILABLE.value, f"the placement store is unavailable: {exc}",
                      headers={"Retry-After": str(retry_after(reason=Unavailable.STORE_UNAVAILABLE, facts=None))})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "Error")
        message = f"{request.method} is not allowed here" if exc.status_code == 405 else str(exc.detail)
        if exc.status_code == 404:
            message = f"no such path: {request.url.path}"
        return _error(exc.status_code, reason, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        return _error(422, "Invalid", f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")

    async def facts_for(*, namespace: str, pool: str, token: str | None, verb: str) -> PoolFacts:
        await service.access.check(token=bearer(token), verb=verb, namespace=namespace, pool=pool)
        if not service.watch.watches(namespace):
            raise ApiError(404, "NotFound", f"namespace {namespace} is not watched by this service")
        facts = service.watch.facts(namespace=namespace, name=pool)
        if facts is None:
            raise ApiError(404, "NotFound", f"no LinePool {pool} in namespace {namespace}")
        return facts

    def answer(*, facts: PoolFacts, placement: Placement, moved: bool, previous: str | None) -> dict[str, Any]:
        links = deep_links(line=placement.line, first_message=placement.first_message)
        line = facts.lines.get(placement.line)
        link = f"{service.public_url}/l/{placement.code}"
        body: dict[str, Any] = {
            "user": placement.user, "line": placement.line, "server": placement.server,
            "placedAt": placement.placed_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "moved": moved,
            "lineState": "Gone" if line is None else line.state.value if line.state else "Unknown",
            "deepLinks": {"ios": links.ios, "android": links.android}, "link": link,
            "contactCard": _card_url(public=service.public_url, placement=placement),
        }
        if previous is not None:
            body["previousLine"] = previous
        return body

    @app.post(prefix + "/placements", status_code=201, response_model=PlacementAnswer, responses={
        200: {"model": PlacementAnswer, "description": "A known user: their line."}, **ERRORS},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": PlacementRequest.model_json_schema()}}}},
        summary="Place a user: a new user gets a line (201), a known user keeps theirs (200)")
    async def place(namespace: str, pool: str, request: Request,
                    authorization: Annotated[str | None, Header()] = None) -> Response:
        facts = await facts_for(namespace=namespace, pool=pool, token=authorization, verb="create")
        wanted = _parse(await request.body())
        now = service.clock()
        unavailable = facts.unavailable
        if unavailable is not None and unavailable is not Unavailable.POOL_FULL:
            # Without fresh figures nobody new is placed, but known users keep usable lines.
            known = await service.store.get(namespace=namespace, pool=pool, user=wanted.user)
            if known is None or move_reason(line=known.line, server=known.server, facts=facts) is not None:
                telemetry.placements.labels(namespace, pool, "unavailable").inc()
                raise ApiError(503, unavailable.value, facts.message,
                               retry=retry_after(reason=unavailable, facts=facts))
            telemetry.placements.labels(namespace, pool, "sticky").inc()
            return JSONResponse(answer(facts=facts, placement=known, moved=False, previous=None), status_code=200)
        assert facts.spec is not None  # an available pool has a valid spec
        outcome = await service.store.place(facts=facts, user=wanted.user, first_message=wanted.firstMessage,
                                            now=now, since=window_start(spec=facts.spec, now=now))
        placement = outcome.placement
        if placement is None:
            telemetry.placements.labels(namespace, pool, "pool_full").inc()
            message = facts.message or (f"every line of the pool has used its budget of "
                                        f"{facts.quota} new conversations for today")
            raise ApiError(503, Unavailable.POOL_FULL.value, message,
                           retry=retry_after(reason=Unavailable.POOL_FULL, facts=facts))
        moved = outcome.previous is not None and outcome.previous.line != placement.line
        if not outcome.created and not moved and wanted.firstMessage and wanted.firstMessage != placement.first_message:
            placement = await service.store.update_message(placement=placement, first_message=wanted.firstMessage)
        line = facts.lines.get(placement.line)
        if line is not None and (outcome.created or moved):
            telemetry.budget.labels(namespace, pool, placement.line).set(
                budget_left(facts=line, placed=outcome.placed_on_line))
        outcome_name = "placed" if outcome.created else "moved" if moved else "sticky"
        telemetry.placements.labels(namespace, pool, outcome_name).inc()
        if moved:
            log.info("moved a user of %s/%s from %s to %s", namespace, pool,
                     outcome.previous.line if outcome.previous else "?", placement.line)
        body = answer(facts=facts, placement=placement, moved=moved,
                      previous=outcome.previous.line if moved and outcome.previous else None)
        return JSONResponse(body, status_code=201 if outcome.created else 200)

    @app.get(prefix + "/placements:summary", responses=ERRORS,
             summary="Users per line, and new users in today's window against each line's budget")
    async def summary(namespace: str, pool: str,
                      authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        facts = await facts_for(namespace=namespace, pool=pool, token=authorization, verb="get")
        now = service.clock()
        since = window_start(spec=facts.spec, now=now) if facts.spec else now
        users = await service.store.users_per_line(namespace=namespace, pool=pool)
        today = await service.store.window_counts(namespace=namespace, pool=pool, since=since)
        lines = []
        for line_id, line in sorted(facts.lines.items(), key=lambda item: (item[1].server, item[0])):
            placed = today.get(line_id, 0)
            lines.append({
                "line": line_id, "server": line.server, "role": line.role.value,
                "state": line.state.value if line.state else "Unknown", "assignable": line.assignable,
                "users": users.get(line_id, 0), "newUsersToday": placed,
                "observedNewConversations": line.new_conversations, "budget": facts.quota,
                "budgetRemaining": budget_left(facts=line, placed=placed),
            })
        stranded = sum(count for line_id, count in users.items() if line_id not in facts.lines)
        return {
            "namespace": namespace, "pool": pool, "windowStart": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "available": facts.unavailable is None, "reason": facts.unavailable.value if facts.unavailable else None,
            "users": sum(users.values()), "newUsersToday": sum(today.values()),
            "usersOnLinesNoLongerInPool": stranded,
            "budgetRemaining": sum(entry["budgetRemaining"] for entry in lines if entry["line"] in facts.order),
            "lines": lines,
        }

    @app.get(prefix + "/placements/{user:path}", response_model=PlacementAnswer, responses=ERRORS,
             summary="Look a user's placement up")
    async def get_placement(namespace: str, pool: str, user: str,
                            authorization: Annotated[str | None, Header()] = None) -> Response:
        facts = await facts_for(namespace=namespace, pool=pool, token=authorization, verb="get")
        placement = await service.store.get(namespace=namespace, pool=pool, user=user)
        if placement is None:
            raise ApiError(404, "NotFound", f"user {user!r} has no line in {namespace}/{pool}")
        return JSONResponse(answer(facts=facts, placement=placement, moved=False, previous=None))

    @app.delete(prefix + "/placements/{user:path}", responses=ERRORS,
                summary="Release a user's line (it still counts toward today's budget)")
    async def release(namespace: str, pool: str, user: str,
                      authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        await facts_for(namespace=namespace, pool=pool, token=authorization, verb="delete")
        placement = await service.store.release(namespace=namespace, pool=pool, user=user)
        if placement is None:
            raise ApiError(404, "NotFound", f"user {user!r} has no line in {namespace}/{pool}")
        telemetry.placements.labels(namespace, pool, "released").inc()
        return {"user": user, "line": placement.line, "released": True}

    @app.get(prefix + "/lines/{line}/contact.vcf", response_class=PlainTextResponse,
             responses={200: {"content": {"text/vcard": {}}, "description": "A vCard 3.0."}, 404: ERRORS[404]},
             summary="The line's contact card (public: it is shared with end users)")
    async def contact(namespace: str, pool: str, line: str) -> Response:
        facts = service.watch.facts(namespace=namespace, name=pool)
        if facts is None or line not in facts.lines:
            raise ApiError(404, "NotFound", f"no line {line} in LinePool {namespace}/{pool}")
        card = vcard(line=line, card=facts.contact_card, pool_name=pool)
        return Response(card, media_type="text/vcard; charset=utf-8",
                        headers={"Content-Disposition": 'inline; filename="contact.vcf"'})

    @app.get("/l/{code}", include_in_schema=True, summary="The short link: redirects a phone to its deep link",
             responses={302: {"description": "To the sms: deep link for the phone's platform."},
                        200: {"description": "A desktop gets a page with the QR code."}, 404: ERRORS[404]})
    async def short_link(code: str, user_agent: Annotated[str | None, Header()] = None) -> Response:
        placement = await _by_code(code)
        links = deep_links(line=placement.line, first_message=placement.first_message)
        platform = platform_for(user_agent or "")
        if platform == "ios":
            return RedirectResponse(links.ios, status_code=302)
        if platform == "android":
            return RedirectResponse(links.android, status_code=302)
        link = f"{service.public_url}/l/{code}"
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Text us</title></head><body>"
                f"<p>Scan with your phone to start the conversation:</p>"
                f"<img src='{html.escape(link)}/qr.svg' alt='QR code' width='240' height='240'>"
                f"<p>On iPhone: <a href='{html.escape(links.ios)}'>{html.escape(placement.line)}</a> · "
                f"On Android: <a href='{html.escape(links.android)}'>{html.escape(placement.line)}</a></p>"
                f"</body></html>")
        return Response(page, media_type="text/html; charset=utf-8")

    @app.get("/l/{code}/qr.svg", summary="The short link's QR code, for desktop sign-ups",
             responses={200: {"content": {"image/svg+xml": {}}}, 404: ERRORS[404]})
    async def qr(code: str) -> Response:
        await _by_code(code)
        return Response(qr_svg(url=f"{service.public_url}/l/{code}"), media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})

    async def _by_code(code: str) -> Placement:
        placement = await service.store.by_code(code=code) if len(code) <= 64 else None
        if placement is None:
            raise ApiError(404, "NotFound", "this link is unknown or was released")
        return placement

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        problems = []
        if not service.watch.synced:
            problems.append(service.watch.problem or "the pools are not listed yet")
        if not service.store_ready:
            problems.append("the store is not open yet")
        else:
            try:
                await service.store.ping()
            except StoreUnavailable as exc:
                problems.append(f"the store is unreachable: {exc}")
        if problems:
            return JSONResponse({"ready": False, "problems": problems}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        await _refresh_budgets(service)
        return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Timing, histogram=telemetry.latency)
    return app


def _parse(raw: bytes) -> PlacementRequest:
    try:
        return PlacementRequest.model_validate_json(raw or b"")
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] in {"json_invalid", "json_type", "model_type"} or not first["loc"]:
            raise ApiError(400, "BadRequest", "the body must be a JSON object such as "
                           '{"user": "u-123", "firstMessage": "Hey!"}') from None
        field = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "is not a field of a placement request (fields: user, firstMessage)"
        elif first["type"] == "missing":
            message = "is required"
        raise ApiError(422, "Invalid", f"{field}: {message}", field=field) from None


def _card_url(*, public: str, placement: Placement) -> str:
    return (f"{public}/v1/namespaces/{placement.namespace}/linepools/{placement.pool}/lines/"
            f"{quote(placement.line, safe='+@')}/contact.vcf")


async def _refresh_budgets(service: Service) -> None:
    """Set every line's remaining budget from the store, just before a scrape reads it."""
    gauge = service.telemetry.budget
    gauge.clear()
    if not service.store_ready:
        return
    now = service.clock()
    for namespace, name in service.watch.pools():
        facts = service.watch.facts(namespace=namespace, name=name)
        if facts is None or facts.spec is None:
            continue
        try:
            today = await service.store.window_counts(namespace=namespace, pool=name,
                                                      since=window_start(spec=facts.spec, now=now))
        except StoreUnavailable:
            service.telemetry.store_errors.inc()
            return
        for line_id, line in facts.lines.items():
            gauge.labels(namespace, name, line_id).set(budget_left(facts=line, placed=today.get(line_id, 0)))


class _Timing:
    """Times each request by its route template (not its path: users would be labels)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if path not in {"/metrics", "/healthz", "/readyz"}:
                self.histogram.labels(path).observe(time.perf_counter() - started)


def utc_now() -> datetime:
    return datetime.now(UTC)
