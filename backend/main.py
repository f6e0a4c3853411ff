"""The FastAPI application factory.

`create_app(settings)` wires settings, the database, the storage and every router; it does not create
tables (run `dataengine migrate`, which `dataengine up` does first). Routers are registered from the
one `ROUTERS` list: a new domain appends one line here.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from backend.annotation.router import router as annotation_router
from backend.api.errors import ERROR_RESPONSES, install_error_handlers
from backend.auth.router import router as auth_router
from backend.auto.router import router as auto_router
from backend.core.config import Settings
from backend.core.db import make_engine, make_session_factory
from backend.core.limits import BodySizeLimitMiddleware
from backend.dashboard.router import router as dashboard_router
from backend.detection.router import router as detection_router
from backend.embeddings.router import router as embeddings_router
from backend.exchange.router import router as exchange_router
from backend.images.router import router as images_router
from backend.jobs.router import router as jobs_router
from backend.model_versions.router import router as model_versions_router
from backend.projects.router import router as projects_router
from backend.retraining.router import router as retraining_router
from backend.review.router import router as review_router
from backend.selection.router import router as selection_router
from backend.stages.router import router as stages_router
from backend.storage import storage_for
from backend.users.router import router as users_router
from backend.web import install_web
from backend.webhooks.router import router as webhooks_router

ROUTERS: list[APIRouter] = [
    auth_router,
    users_router,
    projects_router,
    images_router,
    annotation_router,
    jobs_router,
    model_versions_router,
    embeddings_router,
    auto_router,
    review_router,
    exchange_router,
    dashboard_router,
    stages_router,
    retraining_router,
    detection_router,
    webhooks_router,
    selection_router,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: `Settings()` from the environment)."""
    settings = settings or Settings()
    settings.ensure_secret_key()
    engine = make_engine(settings.db_url)

    app = FastAPI(title="Data Engine", version="0.1.0", openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.storage = storage_for(settings)
    app.add_middleware(BodySizeLimitMiddleware, settings=settings)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    install_web(app, settings.frontend_dist)  # after every API route: its catch-all serves the SPA
    return app
