"""Authorization: every route against every role, from one table generated from the app's routes.

A route's rights in a project are those of the caller's role IN THAT PROJECT (DESIGN.md §3): the
members below have a global role that would allow more (a global manager added as `annotator`) or
less (a global annotator made the project's `manager`) than their role in the project, so only the
project role can explain the answers. `PROJECT_ROUTES` says which project roles each route admits;
`GLOBAL_ROUTES` (what belongs to no project) which global roles. A route missing from both tables,
or a route without an authorization dependency, fails `test_every_route_is_in_the_table`.

For each route and member: an allowed role gets anything but 401/403-by-role/404 (a 422 for the empty
body is fine: it passed authorization), a role below gets 403 naming the roles, a non-member 404
(the answer for an unknown id), an anonymous caller 401.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pycocotools import mask as mask_util
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.jobs.service import create_job
from backend.main import create_app
from backend.projects.service import create_project
from backend.tables import (
    Image,
    JobStatus,
    Mask,
    MaskSource,
    ModelVersion,
    Project,
    ProjectMember,
    Role,
    Stage,
    User,
    Webhook,
)

A, M, ML = Role.annotator, Role.manager, Role.ml_engineer
MEMBERS = frozenset({A, M, ML})
STARTERS = frozenset({M, ML})
MANAGERS = frozenset({M})
ML_ENGINEERS = frozenset({ML})

# (method, path) -> the roles in the project that may call it (admins always may).
PROJECT_ROUTES: dict[tuple[str, str], frozenset[Role]] = {
    ("GET", "/api/projects/{project_id}"): MEMBERS,
    ("PATCH", "/api/projects/{project_id}"): MANAGERS,
    ("GET", "/api/projects/{project_id}/members"): MEMBERS,
    ("POST", "/api/projects/{project_id}/members"): MANAGERS,
    ("PATCH", "/api/projects/{project_id}/members/{user_id}"): MANAGERS,
    ("DELETE", "/api/projects/{project_id}/members/{user_id}"): MANAGERS,
    ("POST", "/api/projects/{project_id}/images"): MANAGERS,
    ("GET", "/api/projects/{project_id}/images"): MEMBERS,
    ("GET", "/api/images/{image_id}"): MEMBERS,
    ("POST", "/api/images/{image_id}/assign"): MANAGERS,
    ("DELETE", "/api/images/{image_id}"): MANAGERS,
    ("GET", "/api/images/{image_id}/file"): MEMBERS,
    ("GET", "/api/images/{image_id}/thumbnail"): MEMBERS,
    ("POST", "/api/projects/{project_id}/claim"): MEMBERS,
    ("GET", "/api/projects/{project_id}/images/next"): MEMBERS,
    ("POST", "/api/images/{image_id}/claim"): MEMBERS,
    ("POST", "/api/images/{image_id}/release"): MEMBERS,
    ("POST", "/api/images/{image_id}/done"): MEMBERS,
    ("GET", "/api/images/{image_id}/masks"): MEMBERS,
    ("POST", "/api/images/{image_id}/masks"): MEMBERS,
    ("DELETE", "/api/masks/{mask_id}"): MEMBERS,
    ("GET", "/api/jobs/{job_id}"): MEMBERS,
    ("POST", "/api/jobs/{job_id}/cancel"): STARTERS,
    ("GET", "/api/projects/{project_id}/jobs"): MEMBERS,
    ("POST", "/api/jobs/{job_id}/events/ticket"): MEMBERS,
    ("GET", "/api/jobs/{job_id}/events"): MEMBERS,
    ("GET", "/api/projects/{project_id}/model"): MEMBERS,
    ("GET", "/api/model-versions/{version_id}"): MEMBERS,
    ("GET", "/api/model-versions/{version_id}/decoder.onnx"): MEMBERS,
    ("GET", "/api/model-versions/{version_id}/decoder.image.onnx"): MEMBERS,
    ("GET", "/api/model-versions/{version_id}/decoder.click.onnx"): MEMBERS,
    ("GET", "/api/projects/{project_id}/model-versions"): MEMBERS,
    ("POST", "/api/projects/{project_id}/model-versions/{version_id}/promote"): ML_ENGINEERS,
    ("POST", "/api/projects/{project_id}/model-versions/rollback"): ML_ENGINEERS,
    ("POST", "/api/projects/{project_id}/embed"): STARTERS,
    ("GET", "/api/images/{image_id}/embedding"): MEMBERS,
    ("POST", "/api/projects/{project_id}/auto-annotate"): STARTERS,
    ("GET", "/api/projects/{project_id}/review/next"): MEMBERS,
    ("POST", "/api/masks/{mask_id}/review"): MEMBERS,
    ("GET", "/api/projects/{project_id}/review/summary"): MEMBERS,
    ("GET", "/api/projects/{project_id}/export"): STARTERS,
    ("POST", "/api/projects/{project_id}/exports"): STARTERS,
    ("GET", "/api/exports/{job_id}/file"): STARTERS,
    ("POST", "/api/projects/{project_id}/import/{format}"): STARTERS,
    ("POST", "/api/projects/{project_id}/images/from-urls"): STARTERS,
    ("POST", "/api/projects/{project_id}/images/from-bucket"): STARTERS,
    ("GET", "/api/projects/{project_id}/dashboard"): MEMBERS,
    ("GET", "/api/projects/{project_id}/selection"): MEMBERS,
    ("POST", "/api/projects/{project_id}/selection/score"): STARTERS,
    ("GET", "/api/projects/{project_id}/dashboard/me"): MEMBERS,
    ("GET", "/api/projects/{project_id}/dashboard/annotators"): MEMBERS,
    ("GET", "/api/projects/{project_id}/dashboard/timeline"): MEMBERS,
    ("GET", "/api/projects/{project_id}/gate"): MEMBERS,
    ("POST", "/api/projects/{project_id}/stage"): MANAGERS,
    ("POST", "/api/projects/{project_id}/retrain"): ML_ENGINEERS,
    ("POST", "/api/projects/{project_id}/detector/train"): STARTERS,
    ("GET", "/api/projects/{project_id}/detectors"): MEMBERS,
    ("POST", "/api/projects/{project_id}/detector/propose"): STARTERS,
    ("POST", "/api/projects/{project_id}/webhooks"): MANAGERS,
    ("GET", "/api/projects/{project_id}/webhooks"): MANAGERS,
    ("DELETE", "/api/projects/{project_id}/webhooks/{webhook_id}"): MANAGERS,
    ("POST", "/api/projects/{project_id}/webhooks/{webhook_id}/test"): MANAGERS,
    ("GET", "/api/projects/{project_id}/webhooks/{webhook_id}/deliveries"): MANAGERS,
}

EVERYONE = frozenset(Role)
# (method, path) -> the GLOBAL roles that may call it; None: no login needed.
GLOBAL_ROUTES: dict[tuple[str, str], frozenset[Role] | None] = {
    ("POST", "/api/auth/token"): None,
    ("GET", "/api/users/me"): EVERYONE,
    ("POST", "/api/users/me/password"): EVERYONE,
    ("POST", "/api/users/me/revoke-tokens"): EVERYONE,
    ("GET", "/api/users"): frozenset({Role.admin, Role.manager}),
    ("POST", "/api/users"): frozenset({Role.admin}),
    ("PATCH", "/api/users/{user_id}"): frozenset({Role.admin}),
    ("POST", "/api/users/{user_id}/password"): frozenset({Role.admin}),
    ("POST", "/api/users/{user_id}/revoke-tokens"): frozenset({Role.admin}),
    ("GET", "/api/projects"): EVERYONE,
    ("POST", "/api/projects"): frozenset({Role.admin, Role.manager}),
}


def _api_routes() -> list[tuple[str, APIRoute]]:
    """(path, route) of every API route of the app, through the routers it includes."""
    app = create_app(Settings(database_url="sqlite://", secret_key="x" * 32))
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found.append((route.path, route))
        for context in getattr(route, "effective_route_contexts", list)():  # an included router
            if isinstance(context.original_route, APIRoute):
                found.append((context.path_format, context.original_route))
    return [(path, route) for path, route in found if route.include_in_schema]


def _route_keys(path: str, route: APIRoute) -> list[tuple[str, str]]:
    return [(method, path) for method in sorted(route.methods)]


def _authorization_marks(route: APIRoute) -> list[Any]:
    """The authorization dependencies anywhere in the route's dependency tree."""
    found, stack = [], list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if hasattr(dependant.call, "authorization"):
            found.append(dependant.call)
        stack.extend(dependant.dependencies)
    return found


def test_every_route_is_in_the_table() -> None:
    """A new route fails here until it has an entry and an authorization dependency."""
    keys = {key for path, route in _api_routes() for key in _route_keys(path, route)}
    tabled = set(PROJECT_ROUTES) | set(GLOBAL_ROUTES)
    assert keys - tabled == set(), "routes without an entry in the authorization table"
    assert tabled - keys == set(), "table entries for routes that do not exist"
    unguarded = [
        key
        for path, route in _api_routes()
        for key in _route_keys(path, route)
        if GLOBAL_ROUTES.get(key, ()) is not None and not _authorization_marks(route)
    ]
    assert unguarded == [], "routes without an authorization dependency (backend/api/deps.py)"


def test_each_route_has_exactly_one_authorization() -> None:
    for path, route in _api_routes():
        marks = _authorization_marks(route)
        assert len(marks) <= 1, f"{path}: {len(marks)} authorization dependencies, want one"


class World:
    """A project with an image, a mask, a finished job and the default model; members of every role."""

    def __init__(
        self,
        client: TestClient,
        db: Session,
        make_user: Callable[..., User],
        login: Callable[[User], dict[str, str]],
        image_bytes: bytes,
    ) -> None:
        self.client, self.db, self.login = client, db, login
        self.admin = make_user(Role.admin)
        self.owner = make_user(Role.manager)
        self.project = create_project(db, self.owner, "guarded")
        # Global roles chosen so that only the role in the project explains each answer.
        self.members = {
            A: self._member(make_user(Role.manager), A),
            M: self._member(make_user(Role.annotator), M),
            ML: self._member(make_user(Role.annotator), ML),
        }
        self.outsider = make_user(Role.manager)
        admin_headers = login(self.admin)
        uploaded = client.post(
            f"/api/projects/{self.project.id}/images",
            headers=admin_headers,
            files=[("files", ("a.jpg", image_bytes, "image/jpeg"))],
        )
        assert uploaded.status_code == 201, uploaded.text
        self.image = db.get(Image, uploaded.json()["images"][0]["id"])
        model = client.get(f"/api/projects/{self.project.id}/model", headers=admin_headers)
        assert model.status_code == 200, model.text
        # A version of this project (the default one belongs to no project: anyone may load it).
        default = db.get(ModelVersion, model.json()["id"])
        own = ModelVersion(
            project_id=self.project.id,
            parent_id=default.id,
            name="project's",
            origin=default.origin,
            architecture=default.architecture,
            artifacts=default.artifacts,
            sha256=default.sha256,
        )
        db.add(own)
        db.commit()
        self.version_id = own.id

    def _member(self, user: User, role: Role) -> User:
        self.db.add(ProjectMember(project_id=self.project.id, user_id=user.id, role_in_project=role))
        self.db.commit()
        return user

    def fresh_mask(self, author: User) -> Mask:
        pixels = np.zeros((self.image.height, self.image.width), dtype=np.uint8, order="F")
        pixels[5:20, 5:20] = 1
        rle = mask_util.encode(pixels)
        mask = Mask(
            image_id=self.image.id,
            project_id=self.project.id,
            rle={"size": rle["size"], "counts": rle["counts"].decode()},
            bbox=[5, 5, 15, 15],
            area=225,
            source=MaskSource.manual,
            stage=Stage.assisted_manual,
            author_id=author.id,
            provenance={"origin": "annotated"},
        )
        self.db.add(mask)
        self.db.commit()
        return mask

    def fresh_job(self, kind: str = "export") -> int:
        job = create_job(self.db, kind, self.project.id, self.admin.id)
        job.status = JobStatus.succeeded  # finished: the event stream ends at once
        self.db.commit()
        return job.id

    def fresh_webhook(self) -> int:
        """A hook of the project, inactive: its test event is refused (409) and nothing is sent."""
        hook = Webhook(project_id=self.project.id, url="http://127.0.0.1:9/", secret="s" * 32, events=[], active=False)
        self.db.add(hook)
        self.db.commit()
        return hook.id

    def fresh_image(self) -> int:
        """Another image row (its file is missing), for routes that delete an image."""
        tag = f"{np.random.randint(1 << 31):08x}"
        copy = Image(
            project_id=self.project.id,
            file_name=f"{tag}.jpg",
            storage_key=f"images/{tag}.jpg",
            sha256=tag * 8,
            width=self.image.width,
            height=self.image.height,
            size_bytes=1,
        )
        self.db.add(copy)
        self.db.commit()
        return copy.id

    def path(self, template: str, caller: User) -> str:
        """The route's path for fresh objects of the project (so a DELETE never hides a later check)."""
        values = {
            "project_id": self.project.id,
            "image_id": self.image.id,
            "version_id": self.version_id,
            "format": "coco",
        }
        if "{mask_id}" in template:
            values["mask_id"] = self.fresh_mask(caller).id
        if "{job_id}" in template:
            values["job_id"] = self.fresh_job()
        if "{webhook_id}" in template:
            values["webhook_id"] = self.fresh_webhook()
        if "{user_id}" in template:
            values["user_id"] = self._member(self._spare_user(), A).id
        if template == "/api/images/{image_id}":
            values["image_id"] = self.fresh_image()
        return template.format(**values)

    def _spare_user(self) -> User:
        user = User(username=f"spare{np.random.randint(1 << 40)}", password_hash="x", role=Role.annotator)
        self.db.add(user)
        self.db.commit()
        return user

    def call(self, method: str, template: str, caller: User | None) -> Any:
        headers = self.login(caller) if caller is not None else {}
        path = self.path(template, caller or self.admin)
        return self.client.request(method, path, headers=headers)


def _refused_by_role(response: Any) -> bool:
    return response.status_code == 403 and "requires role in this project" in response.json()["detail"]


@pytest.fixture
def world(
    client: TestClient,
    db: Session,
    make_user: Callable[..., User],
    login: Callable[[User], dict[str, str]],
    image_bytes: bytes,
) -> World:
    return World(client, db, make_user, login, image_bytes)


def test_project_role_decides_every_project_route(world: World) -> None:
    wrong: list[str] = []
    # DELETE routes last: nothing they remove is needed by a later call (each gets fresh objects anyway).
    routes = sorted(PROJECT_ROUTES.items(), key=lambda item: item[0][0] == "DELETE")
    for (method, template), allowed in routes:
        for role, member in world.members.items():
            response = world.call(method, template, member)
            if role in allowed:
                if response.status_code in (401, 404) or _refused_by_role(response):
                    wrong.append(f"{method} {template} as {role.value}: {response.status_code} {response.text[:120]}")
            elif not _refused_by_role(response):
                wrong.append(f"{method} {template} as {role.value}: want 403, got {response.status_code}")
        for who, caller, want in (("outsider", world.outsider, 404), ("anonymous", None, 401)):
            response = world.call(method, template, caller)
            if response.status_code != want:
                wrong.append(f"{method} {template} as {who}: want {want}, got {response.status_code}")
        admin = world.call(method, template, world.admin)
        if admin.status_code in (401, 403, 404):
            wrong.append(f"{method} {template} as admin: {admin.status_code}")
    assert wrong == []


@pytest.mark.parametrize("role", list(Role))
def test_global_role_decides_what_belongs_to_no_project(
    role: Role, client: TestClient, make_user: Callable[..., User], login: Callable[[User], dict[str, str]]
) -> None:
    caller = make_user(role)
    headers = login(caller)
    # Revoking one's own tokens last: it logs the caller out.
    routes = sorted(GLOBAL_ROUTES.items(), key=lambda item: item[0][1] == "/api/users/me/revoke-tokens")
    for (method, template), allowed in routes:
        if allowed is None:
            continue
        path = template.format(user_id=make_user(Role.annotator).id)
        response = client.request(method, path, headers=headers)
        if role in allowed:
            assert response.status_code not in (401, 403, 404), f"{method} {path} as {role.value}: {response.text}"
        else:
            assert response.status_code == 403, f"{method} {path} as {role.value}: {response.status_code}"
        assert client.request(method, path).status_code == 401


def test_a_global_manager_who_is_an_annotator_cannot_take_the_project_over(world: World) -> None:
    """The issue's case: such a member removed the project's creator, who then got 404 on it."""
    annotator = world.members[A]
    headers = world.login(annotator)
    removed = world.client.delete(f"/api/projects/{world.project.id}/members/{world.owner.id}", headers=headers)
    assert removed.status_code == 403
    added = world.client.post(
        f"/api/projects/{world.project.id}/members",
        headers=headers,
        json={"user_id": world.outsider.id, "role_in_project": "manager"},
    )
    assert added.status_code == 403
    assert world.client.get(f"/api/projects/{world.project.id}", headers=world.login(world.owner)).status_code == 200
    assert isinstance(world.db.get(Project, world.project.id), Project)
