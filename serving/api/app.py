"""The HTTP API (FastAPI): recommendation lists from a materialised view, events in, health,
readiness and Prometheus metrics.

Each replica reads the compacted ``recommendations`` topic from its start, without a consumer
group (every replica holds every user), into memory, and with it the ``items`` catalogue and
the learner's announcements on ``model-updates`` (for the trending fallback). A GET is a dict
lookup, never a Kafka round trip. Run it with ``streamrec api``.

Authentication: bearer API keys in two scopes. ``STREAMREC_API_READ_KEYS`` may read
recommendations, ``STREAMREC_API_WRITE_KEYS`` may send events (comma separated lists). A key has
the scopes of the lists it appears in and no others: a write key cannot read users' lists unless
it is also a read key. /healthz, /readyz, /metrics and the OpenAPI pages need no key.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoints' annotations at
# runtime, and the batch model is built per app from its configured limit.

from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from pydantic import Field, create_model
from starlette.exceptions import HTTPException

from serving.api.auth import KeyRing
from serving.api.middleware import BodyLimit, RequestMetrics
from serving.api.settings import MAX_K, ApiSettings
from serving.api.views import ServingState
from serving.api.wire import _ERROR_CODES, Accepted, ApiError, ApiErrorOut, BatchAccepted, EventIn, RecommendationsOut
from stream.config import Settings
from stream.schemas import Event

DESCRIPTION = """
Recommendation lists of a streamrec deployment, and events in over HTTP.

* **Lists** come from an in-memory view of the compacted `recommendations` topic that this
  replica reads from its start: a user's list is the last one a worker published for them.
  A user without one (unknown, or forgotten) gets the trending items of the learner's newest
  verified snapshot, marked `"fallback": true`.
* **Events** are validated with the `events` schema and produced to Kafka keyed by `user_id`;
  `202 Accepted` means Kafka acknowledged them. Set `event_id` to make retries safe.
* **Auth**: `Authorization: Bearer <key>`. Read keys (`STREAMREC_API_READ_KEYS`) may read lists,
  write keys (`STREAMREC_API_WRITE_KEYS`) may send events; a key has only the scopes of the lists
  it is in. No key or an unknown key: 401; a key without the route's scope: 403.
* **Errors** are JSON: `{"error": code, "message": text}` (+ `detail` for validation errors).
"""


def _error_responses(*statuses: int) -> dict:
    return {s: {"model": ApiErrorOut} for s in statuses}


def create_api(settings: Settings | None = None, api: ApiSettings | None = None) -> FastAPI:
    """The FastAPI app of one replica; the view fills in the background once it starts."""
    settings = settings or Settings()
    api = api or ApiSettings()
    keys = KeyRing.of(api)
    if api.allow_anonymous and keys:
        raise ValueError("API keys are configured and allow_anonymous is on: choose one")
    if not api.allow_anonymous and not keys:
        raise ValueError(
            "no API keys configured: set STREAMREC_API_READ_KEYS and/or STREAMREC_API_WRITE_KEYS "
            "(comma separated), or STREAMREC_API_ALLOW_ANONYMOUS=true for local development"
        )
    state = ServingState(settings, api)

    registry = CollectorRegistry()
    durations = Histogram(
        "streamrec_api_request_duration_seconds",
        "Time to answer an HTTP request, by route template, method and status",
        ["route", "method", "status"],
        registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )
    Gauge("streamrec_api_view_users", "Users with a list in this replica's view", registry=registry).set_function(
        lambda: len(state.view)
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="streamrec API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "recommendations", "description": "read scope"},
            {"name": "events", "description": "write scope"},
            {"name": "operations", "description": "no key needed"},
        ],
    )
    app.state.serving = state
    app.add_middleware(BodyLimit, limits={"/v1/events": settings.max_event_bytes}, default=api.max_body_bytes)
    app.add_middleware(RequestMetrics, histogram=durations)

    bearer = HTTPBearer(auto_error=False, description="an API key of the route's scope")

    def require(scope: str):
        async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
            if api.allow_anonymous:
                return
            if credentials is None:
                raise ApiError(
                    401,
                    "unauthorized",
                    "missing API key: send 'Authorization: Bearer <key>'",
                    {"WWW-Authenticate": "Bearer"},
                )
            granted = keys.scopes(credentials.credentials)
            if not granted:
                raise ApiError(401, "unauthorized", "unknown API key", {"WWW-Authenticate": "Bearer"})
            if scope not in granted:
                raise ApiError(403, "forbidden", f"this API key does not have the {scope} scope")

        return Depends(check)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException) -> JSONResponse:
        error = getattr(exc, "error", None) or _ERROR_CODES.get(exc.status_code, "error")
        return JSONResponse({"error": error, "message": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return JSONResponse({"error": "invalid_request", "message": message, "detail": errors}, 422)

    @app.get(
        "/v1/users/{user_id:path}/recommendations",
        response_model=RecommendationsOut,
        tags=["recommendations"],
        dependencies=[require("read")],
        responses=_error_responses(401, 403, 422, 503),
        summary="A user's current recommendation list",
    )
    async def recommendations(
        user_id: Annotated[str, Path(min_length=1, max_length=256, description="the user's id")],
        k: Annotated[
            int,
            Query(
                ge=1,
                le=MAX_K,
                description=f"list length, 1..{MAX_K}; lists hold as many items as the workers publish (STREAMREC_K)",
            ),
        ] = settings.k,
    ) -> RecommendationsOut:
        """The last list a worker published for the user, without items deleted or made
        unavailable since, cut to `k` items. A user without a list gets the trending items
        instead, with `"fallback": true`. 503 while this replica is still loading the view."""
        if not state.follower.caught_up:
            raise ApiError(
                503,
                "not_ready",
                "this replica is still loading the recommendation view; retry shortly",
                {"Retry-After": "1"},
            )
        rec = state.view.get(user_id)
        if rec is not None:
            withdrawn = state.catalogue.withdrawn
            items = [item for item in rec.items if item.item_id not in withdrawn][:k]
            return RecommendationsOut(
                user_id=user_id,
                items=items,
                fallback=False,
                model_version=rec.model_version,
                trigger_event_id=rec.trigger_event_id,
                event_ts=rec.event_ts,
                published_ts=rec.published_ts,
            )
        ranking = state.trending.ranking
        if ranking is None:
            return RecommendationsOut(user_id=user_id, items=[], fallback=True, model_version=None)
        return RecommendationsOut(
            user_id=user_id,
            items=ranking.top(k, state.catalogue.categories),
            fallback=True,
            model_version=f"trending:{ranking.version}",
        )

    def checked(events: list[EventIn], batch: bool) -> list[Event]:
        """The events with id and time filled in; each must fit the workers' size limit."""
        out = []
        for i, event in enumerate(events):
            complete = event.complete()
            size = len(complete.model_dump_json(exclude_none=True).encode())
            if size > settings.max_event_bytes:
                raise RequestValidationError(
                    [
                        {
                            "loc": ["body", "events", i] if batch else ["body"],
                            "type": "too_large",
                            "msg": f"event is {size} bytes as JSON, more than the limit of {settings.max_event_bytes}",
                        }
                    ]
                )
            out.append(complete)
        return out

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=Accepted,
        tags=["events"],
        dependencies=[require("write")],
        responses=_error_responses(401, 403, 413, 422, 503),
        summary="Send one event",
    )
    async def post_event(event: EventIn) -> Accepted:
        """Validate the event and produce it to `events`, keyed by `user_id`. 202 once Kafka
        acknowledged it; the worker then refreshes the user's list (readable with GET)."""
        [complete] = checked([event], batch=False)
        await state.produce([complete])
        return Accepted(event_id=complete.event_id)

    EventBatch = create_model(
        "EventBatch",
        __doc__="Events sent together; all are validated before any is produced.",
        events=(list[EventIn], Field(min_length=1, max_length=api.max_batch, description=f"1..{api.max_batch} events")),
    )

    @app.post(
        "/v1/events:batch",
        status_code=202,
        response_model=BatchAccepted,
        tags=["events"],
        dependencies=[require("write")],
        responses=_error_responses(401, 403, 413, 422, 503),
        summary="Send a batch of events",
    )
    async def post_events(batch: EventBatch) -> BatchAccepted:
        """All or nothing: one invalid event rejects the whole batch (422, with its index in
        `loc`) and nothing is produced. 202 once Kafka acknowledged every event."""
        events = checked(batch.events, batch=True)  # type: ignore[attr-defined]  # a field create_model added
        await state.produce(events)
        return BatchAccepted(accepted=len(events), event_ids=[e.event_id for e in events])

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict:
        """200 while the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness", responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """200 once the view has been read up to the end offsets seen at start, the broker
        answers (checked every STREAMREC_API_PROBE_INTERVAL_S) and the event producer is
        connected; 503 otherwise. The body says which condition holds."""
        body = {
            "ready": state.ready,
            "view_caught_up": state.follower.caught_up,
            "broker_reachable": state.follower.broker_reachable,
            "producer_connected": state.producer is not None,
            "view_users": len(state.view),
            "trending_version": state.trending.ranking.version if state.trending.ranking else None,
        }
        return JSONResponse(body, 200 if body["ready"] else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        """streamrec_api_request_duration_seconds{route,method,status}, streamrec_api_view_users."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings: Settings, api: ApiSettings, log_level: str = "info") -> None:
    """Run one replica with uvicorn until interrupted. No access log: paths hold user ids."""
    import uvicorn

    uvicorn.run(
        create_api(settings, api),
        host=api.host,
        port=api.port,
        access_log=False,
        log_level=log_level,
        server_header=False,
    )
