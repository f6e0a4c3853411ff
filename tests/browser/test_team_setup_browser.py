"""A team sets itself up in the browser, end to end in headless Chromium, with nothing but the pages:

the admin creates an annotator and a manager (Users); the manager creates a project, has an invalid
setting refused next to its field and saves a valid one (Settings), uploads six GrabCut photographs
plus a duplicate and a file that is no image through the file input, sees the batch's progress bar
reach 100% and one result per file, computes the embeddings, adds the annotator as a member
(Members) and assigns them an image (Images); the annotator changes their password (Account),
finds the project and annotates the image they were given: the claim hands it to them, one click
and Enter save a mask. Last, the manager archives the project: it leaves the projects list unless
"show archived" is ticked.

The live server has no Celery worker, so the embedding job runs eagerly inside the request that
starts it. With DATAENGINE_UPDATE_SCREENSHOT=1 the test rewrites the docs' screenshots of the new pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.worker import celery_app
from tests.browser.page_helpers import DECODER_TIMEOUT_MS, client_point, log_in, session_token, wait_for_pixels
from tests.live_app import ADMIN

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs"
UPDATE_SCREENSHOT = os.environ.get("DATAENGINE_UPDATE_SCREENSHOT") == "1"
ANNOTATOR = "team-annotator"
MANAGER = ("team-manager", "manager password 1")
PASSWORDS = ["first password 1", "reset password 1", "changed password 1"]  # the annotator's, in turn
PHOTOS = ["124080.jpg", "153077.jpg", "153093.jpg", "181079.jpg", "189080.jpg", "208001.jpg"]
TASK_TIMEOUT_MS = 600_000


@pytest.fixture
def eager_tasks(live_server) -> Iterator[None]:
    """Jobs run inside the request that starts them (the live server has no worker)."""
    celery_app.configure(live_server.settings, eager=True)
    yield
    celery_app.configure(live_server.settings, eager=False)


def screenshot(page, name: str, full_page: bool = False) -> None:
    if UPDATE_SCREENSHOT:
        page.screenshot(path=str(DOCS / name), full_page=full_page)


def api(live_server, page) -> httpx.Client:
    return httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {session_token(page)}"}, timeout=120
    )


def status_text(page) -> str:
    page.wait_for_selector("[data-status]:not(:empty)")
    return page.inner_text("[data-status]")


def admin_creates_the_team(page, live_server) -> None:
    log_in(page, live_server.url, *ADMIN)
    page.click("[data-nav=users]")
    form = page.locator("[data-form=create-user]")

    # The schema's refusal lands next to its field.
    form.locator("input[name=username]").fill("no spaces allowed")
    form.locator("input[name=password]").fill(PASSWORDS[0])
    form.locator("button[type=submit]").click()
    page.wait_for_selector("[data-error-for=username]:not(:empty)")
    assert "pattern" in page.inner_text("[data-error-for=username]")

    for username, password, role in [(ANNOTATOR, PASSWORDS[0], "annotator"), (*MANAGER, "manager")]:
        form.locator("input[name=username]").fill(username)
        form.locator("input[name=password]").fill(password)
        form.locator("select[name=role]").select_option(role)
        form.locator("button[type=submit]").click()
        page.wait_for_selector(f"[data-user-row='{username}']")
        assert page.inner_text("[data-error-for=username]") == ""

    # Deactivate and reactivate the annotator, then set a new password for them.
    row = page.locator(f"[data-user-row='{ANNOTATOR}']")
    row.locator("[data-action=deactivate]").click()
    page.wait_for_selector(f"[data-user-row='{ANNOTATOR}'][data-active=false]")
    page.locator(f"[data-user-row='{ANNOTATOR}'] [data-action=reactivate]").click()
    page.wait_for_selector(f"[data-user-row='{ANNOTATOR}'][data-active=true]")
    row.locator("input[name=new_password]").fill(PASSWORDS[1])
    row.locator("button[type=submit]").click()
    page.wait_for_selector("[data-status]:has-text('password is set')")
    screenshot(page, "users.png")


def manager_creates_the_project(page, live_server) -> int:
    log_in(page, live_server.url, *MANAGER)
    page.wait_for_selector("[data-empty]:has-text('Create one below')")
    form = page.locator("[data-form=create-project]")
    form.locator("input[name=name]").fill("Team setup")
    form.locator("textarea[name=description]").fill("GrabCut photographs, set up in the browser")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/projects/*/settings")
    project_id = int(page.url.split("/")[-2])
    assert page.inner_text("[data-project-name]") == "Team setup"

    # review_fraction 2 is out of range: refused inline, nothing stored.
    page.fill("input[name='settings.review_fraction']", "2")
    page.click("[data-action=save]")
    error = page.locator("[data-error-for='settings.review_fraction']")
    error.wait_for()
    assert "less than or equal to 1" in error.inner_text()
    assert page.get_attribute("input[name='settings.review_fraction']", "aria-invalid") == "true"
    screenshot(page, "project-settings.png")
    with api(live_server, page) as http:
        assert http.get(f"/api/projects/{project_id}").json()["settings"]["review_fraction"] == 0.02

    page.fill("input[name='settings.review_fraction']", "0.5")
    page.fill("input[name='settings.gates.semi_automatic.min_masks']", "50")
    page.check("input[name='settings.auto_promote']")
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "PATCH" else None)
    page.click("[data-action=save]")
    page.wait_for_selector("[data-status]:has-text('Saved')")
    assert error.inner_text() == ""
    # Only what changed travels.
    assert sent == [
        {"settings": {"review_fraction": 0.5, "auto_promote": True, "gates": {"semi_automatic": {"min_masks": 50}}}}
    ]
    with api(live_server, page) as http:
        settings = http.get(f"/api/projects/{project_id}").json()["settings"]
    assert settings["review_fraction"] == 0.5 and settings["auto_promote"] is True
    assert settings["gates"]["semi_automatic"] == {
        "min_masks": 50,
        "min_done_share": 0.0,
        "min_trained_models": 0,
        "min_detectors": 1,
    }
    return project_id


def manager_uploads(page, live_server, data_root: Path, tmp_path: Path, project_id: int) -> None:
    page.click("[data-nav=images]")
    page.wait_for_url(f"**/projects/{project_id}/images")
    photos = [data_root / "grabcut" / "images" / name for name in PHOTOS]
    duplicate = tmp_path / "same-as-the-first.jpg"
    duplicate.write_bytes(photos[0].read_bytes())
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("these are notes, not a photograph\n")
    page.set_input_files("[data-input=files]", [*map(str, photos), str(duplicate), str(not_an_image)])

    page.wait_for_selector("[data-upload-summary][data-done=true]", timeout=120_000)
    assert page.evaluate("document.querySelector('[data-batch=\"0\"] progress').value") == 1
    assert page.locator("[data-batch]").count() == 1 and page.inner_text("[data-batch='0'] span:last-child") == "100%"
    outcomes = {
        row.get_attribute("data-file-result"): row.get_attribute("data-outcome")
        for row in page.locator("[data-file-result]").all()
    }
    assert outcomes == {
        **{name: "stored" for name in PHOTOS},
        duplicate.name: "duplicate",
        not_an_image.name: "refused",
    }
    assert "duplicate of image #" in page.inner_text(f"[data-file-result='{duplicate.name}']")
    assert page.inner_text("[data-upload-summary]") == "6 stored, 1 duplicate, 1 refused"
    page.wait_for_selector("[data-range][data-total='6']")
    assert page.locator("[data-table=images] tbody tr").count() == 6

    # The embeddings, computed from here (eagerly: the job has ended when the request returns).
    page.click("[data-action=embed]")
    page.wait_for_selector("[data-embed-status][data-job-status=succeeded]", timeout=TASK_TIMEOUT_MS)
    assert page.evaluate("document.querySelector('.embed progress').value") == 1
    page.wait_for_function("[...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)")
    screenshot(page, "images.png", full_page=True)


def manager_adds_the_annotator(page, project_id: int) -> None:
    page.click("[data-nav=members]")
    page.wait_for_selector(f"[data-member='{MANAGER[0]}']")
    # The last manager cannot leave: the server says why and the page shows it.
    page.click(f"[data-member='{MANAGER[0]}'] [data-action=remove]")
    page.wait_for_selector("[data-status].error:not(:empty)")
    assert page.locator(f"[data-member='{MANAGER[0]}']").count() == 1

    form = page.locator("[data-form=add-member]")
    form.locator("select[name=user_id]").select_option(label=f"{ANNOTATOR} (annotator)")
    form.locator("select[name=role_in_project]").select_option("annotator")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(f"[data-member='{ANNOTATOR}']")
    assert f"{ANNOTATOR} added" in status_text(page)
    screenshot(page, "members.png")


def manager_assigns_and_deletes(page, live_server, project_id: int) -> tuple[int, int]:
    """Assigns the fourth photograph to the annotator and deletes the sixth; returns (image id, annotator id)."""
    page.click("[data-nav=images]")
    with api(live_server, page) as http:
        images = {i["file_name"]: i for i in http.get(f"/api/projects/{project_id}/images").json()}
        annotator_id = next(
            m["user_id"] for m in http.get(f"/api/projects/{project_id}/members").json() if m["username"] == ANNOTATOR
        )
    given, removed = images[PHOTOS[3]]["id"], images[PHOTOS[5]]["id"]
    page.select_option(f"[data-assign='{given}']", label=ANNOTATOR)
    page.wait_for_selector(f"[data-assign='{given}'][data-assigned='{annotator_id}']")

    page.click(f"[data-image='{removed}'] [data-action=delete]")
    page.click(f"[data-image='{removed}'] [data-action=delete]")  # the second click confirms
    page.wait_for_selector("[data-range][data-total='5']")

    page.select_option("select[name=assigned_to]", label=ANNOTATOR)
    page.wait_for_selector("[data-range][data-total='1']")
    assert page.get_attribute("[data-table=images] tbody tr", "data-image") == str(given)
    page.select_option("select[name=assigned_to]", "")
    page.select_option("select[name=status]", "new")
    page.wait_for_selector("[data-range][data-total='5']")
    return given, annotator_id


def annotator_changes_password_and_annotates(page, live_server, project_id: int, given: int, annotator_id: int) -> None:
    log_in(page, live_server.url, ANNOTATOR, PASSWORDS[1])
    page.click("[data-nav=account]")
    page.fill("input[name=current_password]", "not my password")
    page.fill("input[name=new_password]", PASSWORDS[2])
    page.fill("input[name=repeat_password]", PASSWORDS[2])
    page.click("[data-form=password] button[type=submit]")
    page.wait_for_selector("[data-error-for=current_password]:not(:empty)")
    page.fill("input[name=current_password]", PASSWORDS[1])
    page.click("[data-form=password] button[type=submit]")
    assert "Password changed" in status_text(page)
    screenshot(page, "account.png")
    with httpx.Client(base_url=live_server.url) as http:
        assert http.post("/api/auth/token", data={"username": ANNOTATOR, "password": PASSWORDS[1]}).status_code == 401
        assert http.post("/api/auth/token", data={"username": ANNOTATOR, "password": PASSWORDS[2]}).status_code == 200

    # The page's session goes on with the token the change answered.
    page.click("[data-nav=projects]")
    page.click(f"a[data-project='{project_id}']")
    page.wait_for_url(f"**/annotate/{project_id}/{given}")
    page.wait_for_selector("[data-testid=decoder-status][data-ready=true]", timeout=DECODER_TIMEOUT_MS)
    assert page.inner_text("[data-project-name]") == "Team setup"
    with api(live_server, page) as http:
        info = http.get(f"/api/images/{given}").json()
        assert (
            info["assigned_to"] == annotator_id and info["assignee_id"] == annotator_id
        )  # reserved for them, claimed by them
        size = info["height"], info["width"]
        page.mouse.click(*client_point(page, size, (info["width"] / 2, info["height"] / 2)))
        wait_for_pixels(page, "overlay")
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('.save-status')?.textContent === 'saved'", timeout=30_000)
        masks = http.get(f"/api/images/{given}/masks").json()
    assert len(masks) == 1 and masks[0]["source"] == "manual" and masks[0]["clicks"] == 1


def manager_archives(page, project_id: int) -> None:
    page.click("[data-nav=settings]")
    page.click("[data-action=archive]")
    page.wait_for_selector("section:has([data-action=archive]) p.ok:has-text('Archived')")
    page.click("[data-nav=projects]")
    page.wait_for_selector("[data-empty]:not(:empty)")  # hidden from the list...
    assert page.locator(f"[data-project-id='{project_id}']").count() == 0
    page.check("input[name=include_archived]")  # ...unless asked for
    page.wait_for_selector(f"[data-project-id='{project_id}'][data-archived=true]")


def test_a_team_sets_itself_up_and_annotates(browser, live_server, data_root, tmp_path, eager_tasks):
    contexts = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(3)]
    errors: list[str] = []
    try:
        admin, manager, annotator = (context.new_page() for context in contexts)
        for page in (admin, manager, annotator):
            page.on("pageerror", lambda e: errors.append(str(e)))
        admin_creates_the_team(admin, live_server)
        project_id = manager_creates_the_project(manager, live_server)
        manager_uploads(manager, live_server, data_root, tmp_path, project_id)
        manager_adds_the_annotator(manager, project_id)
        given, annotator_id = manager_assigns_and_deletes(manager, live_server, project_id)
        annotator_changes_password_and_annotates(annotator, live_server, project_id, given, annotator_id)
        manager_archives(manager, project_id)
    finally:
        for context in contexts:
            context.close()
    assert not errors, errors
