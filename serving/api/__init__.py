"""The HTTP API (FastAPI): recommendation lists from a materialised view, events in, health,
readiness and Prometheus metrics. :func:`~serving.api.app.create_api` builds a replica's app
(:mod:`.app`) from its settings (:mod:`.settings`), keys (:mod:`.auth`), wire models
(:mod:`.wire`), in-memory views (:mod:`.views`) and middleware (:mod:`.middleware`); run it with
``streamrec api``."""

from serving.api.app import create_api, serve
from serving.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_api", "serve"]
