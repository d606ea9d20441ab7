"""Wire models of the HTTP API: what it accepts and answers, and its JSON errors."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from stream.schemas import Event, RecommendedItem, now_ms


class EventIn(Event):
    """An event as sent over HTTP: the ``events`` schema, where ``event_id`` and ``ts`` may be
    left out. Set ``event_id`` to retry safely: workers apply an event_id once."""

    # optional here, required in Event: complete() fills them in (a deliberate override)
    event_id: str | None = Field(  # type: ignore[assignment]
        None, min_length=1, max_length=256, description="unique id; default: a random one (then a retry counts twice)"
    )
    ts: int | None = Field(  # type: ignore[assignment]
        None, ge=0, le=10**14, strict=True, description="event time, ms since epoch; default: arrival"
    )

    def complete(self) -> Event:
        fields = self.model_dump()
        fields["event_id"] = self.event_id or uuid.uuid4().hex
        fields["ts"] = now_ms() if self.ts is None else self.ts
        return Event(**fields)


class RecommendationsOut(BaseModel):
    user_id: str
    items: list[RecommendedItem] = Field(description="best first, at most k")
    fallback: bool = Field(
        description="true when the user has no list of their own (unknown, or forgotten): "
        "items are then the trending items of the learner's newest usable snapshot, "
        "or none before its first one"
    )
    model_version: str | None = Field(description="model of the list; trending:<version> for a fallback")
    trigger_event_id: str | None = Field(None, description="the last event reflected in the list")
    event_ts: int | None = Field(None, description="time of that event, ms since epoch")
    published_ts: int | None = Field(None, description="when the worker published the list, ms since epoch")


class Accepted(BaseModel):
    event_id: str = Field(description="id of the accepted event (the one sent, or the one given to it)")


class BatchAccepted(BaseModel):
    accepted: int
    event_ids: list[str] = Field(description="ids of the accepted events, in the order sent")


class ApiErrorOut(BaseModel):
    error: str = Field(description="short code: unauthorized, forbidden, invalid_request, body_too_large, ...")
    message: str = Field(description="what went wrong, for people")
    detail: list[dict] | None = Field(None, description="validation errors: loc, msg, type of each")


class ApiError(HTTPException):
    def __init__(self, status: int, error: str, message: str, headers: dict | None = None) -> None:
        super().__init__(status, message, headers)
        self.error = error


_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    422: "invalid_request",
    503: "unavailable",
}
