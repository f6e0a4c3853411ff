"""The annotate page during a re-embedding, in real headless Chromium: the browser never decodes an
embedding with the decoder of another version than the one whose encoder made it.

Its own project of two grabcut photographs, both embedded by version A (the install's untrained
vit_t). Version B has other weights, image encoder included (vit_t seeded differently, as a
whole-model round would give), and is promoted: its embed job is queued, and stays so (the live
server runs no worker), so B's embedding exists only for image 1, computed here by asking for it
pinned. The page opens image 1 (served B's embedding: decoded with B's decoder), prefetches image 2
meanwhile (served A's: A's decoder loads beside B's), then moves to image 2 with *Done, next*. A click
on each gives a mask. From the network: each embedding response's `X-Model-Version` is the version
whose decoder graphs were fetched and that the decoder status names for that image
(`data-model-version`), and no image is ever shown ready with the other version.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import pytest

from backend.clients.model_server import ModelRef, model_service
from backend.core.db import make_engine, make_session_factory
from backend.storage import storage_for
from backend.tables import ModelOrigin, ModelStatus, ModelVersion
from tests.browser.page_helpers import DECODER_TIMEOUT_MS, log_in, opaque_pixels, wait_for_pixels

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARCH = "vit_t"
OTHER_SEED = 1  # the untrained default is seed 0: other weights everywhere, the image encoder too

# Every (image id, model version) the decoder status shows as ready, in order.
RECORD_READY = """
window.readyWith = [];
new MutationObserver(() => {
  const s = document.querySelector('[data-testid=decoder-status]');
  if (s && s.dataset.ready === 'true') window.readyWith.push([Number(s.dataset.imageId), Number(s.dataset.modelVersion)]);
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-ready', 'data-image-id', 'data-model-version'] });
"""
GRAPH = re.compile(r"/api/model-versions/(\d+)/decoder\.(?:image\.|click\.)?onnx$")
EMBEDDING = re.compile(r"/api/images/(\d+)/embedding\?")


def _register_other_encoder(live_server, project_id: int, parent_id: int) -> int:
    """A ready version of the project with other weights than the default's (its decoder graphs
    exported as the registry does for a trained version); returns its id."""
    from model_server.sam.build import build_sam
    from model_server.service.weights import save_model_checkpoint

    settings = live_server.settings
    storage = storage_for(settings)
    client = model_service(settings, storage)
    prefix = f"models/test-reembed/{project_id}"
    key = f"{prefix}/checkpoint.pth"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pth"
        save_model_checkpoint(build_sam(ARCH, seed=OTHER_SEED), path)
        with path.open("rb") as f:
            storage.put_stream(key, f)
    info = client.describe(ARCH, key)
    artifacts = {"checkpoint": key}
    for name, graph_key in client.export_decoders(ModelRef(ARCH, key, info.sha256), prefix).items():
        with storage.open(graph_key) as f:
            artifacts[f"{name}_onnx"] = graph_key
            artifacts[f"{name}_onnx_sha256"] = hashlib.sha256(f.read()).hexdigest()
    engine = make_engine(settings.db_url)
    with make_session_factory(engine)() as db:
        version = ModelVersion(
            project_id=project_id,
            parent_id=parent_id,
            name="new encoder",
            architecture=ARCH,
            origin=ModelOrigin.trained,
            status=ModelStatus.ready,
            sha256=info.sha256,
            encoder_sha256=info.encoder_sha256,
            metrics={},
            artifacts=artifacts,
            hyperparameters={"encoder_mode": "full"},
        )
        db.add(version)
        db.commit()
        version_id = version.id
    engine.dispose()
    return version_id


def _seed(live_server, data_root: Path) -> tuple[int, list[int], int, int]:
    """(project, [image 1, image 2], version A, version B) as the module docstring says."""
    names = sorted(p.name for p in (data_root / "grabcut" / "images").glob("*.jpg"))[:2]
    with live_server.api() as http:
        project = http.post("/api/projects", json={"name": "Re-embedding"}).raise_for_status().json()
        files = [("files", (n, (data_root / "grabcut" / "images" / n).read_bytes(), "image/jpeg")) for n in names]
        images = [
            i["id"]
            for i in http.post(f"/api/projects/{project['id']}/images", files=files).raise_for_status().json()["images"]
        ]
        a = http.get(f"/api/projects/{project['id']}/model").raise_for_status().json()["id"]
        for image_id in images:
            http.get(f"/api/images/{image_id}/embedding", params={"model_version": a}).raise_for_status()
        b = _register_other_encoder(live_server, project["id"], a)
        promoted = http.post(f"/api/projects/{project['id']}/model-versions/{b}/promote").raise_for_status().json()
        assert promoted["embed_job"] is not None, promoted  # another encoder: the project is re-embedded
        assert promoted["embed_job"]["status"] == "queued"
        served = http.get(f"/api/images/{images[0]}/embedding", params={"model_version": b}).raise_for_status()
        assert served.headers["x-model-version"] == str(b)
        # Image 2 is not re-embedded yet: the server still serves A's embedding of it.
        assert http.get(f"/api/images/{images[1]}/embedding").raise_for_status().headers["x-model-version"] == str(a)
    return project["id"], images, a, b


def _wait_ready(page, image_id: int) -> None:
    page.wait_for_selector(
        f"[data-testid=decoder-status][data-ready=true][data-image-id='{image_id}']", timeout=DECODER_TIMEOUT_MS
    )


def _click_gives_mask(page) -> None:
    box = page.locator("#ui").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(".candidates button", timeout=60_000)
    wait_for_pixels(page, "overlay")
    assert opaque_pixels(page, "overlay") > 0


def test_each_image_decodes_with_its_embeddings_version(page, live_server, data_root):
    project_id, (first, second), a, b = _seed(live_server, data_root)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    embeddings: list[tuple[int, int]] = []  # (image id, X-Model-Version) of every embedding response
    graphs: set[int] = set()  # versions whose decoder graphs the page fetched

    def on_response(response) -> None:
        if m := EMBEDDING.search(response.url):
            embeddings.append((int(m[1]), int(response.headers["x-model-version"])))
        elif m := GRAPH.search(response.url.split("?")[0]):
            graphs.add(int(m[1]))

    page.on("response", on_response)
    page.add_init_script(RECORD_READY)
    log_in(page, live_server.url, "admin", "admin password 1")

    page.goto(f"{live_server.url}/annotate/{project_id}/{first}")
    _wait_ready(page, first)
    assert page.get_attribute("[data-testid=decoder-status]", "data-model-version") == str(b)
    assert page.is_hidden("[data-testid=reembedding]")  # image 1 has the serving version's embedding
    _click_gives_mask(page)
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('.save-status')?.textContent === 'saved'", timeout=60_000)

    page.click("text=Done, next")
    page.wait_for_url(f"**/annotate/{project_id}/{second}")
    _wait_ready(page, second)
    assert page.get_attribute("[data-testid=decoder-status]", "data-model-version") == str(a)
    notice = page.locator("[data-testid=reembedding]")
    assert notice.is_visible() and notice.get_attribute("data-model-version") == str(a)
    assert f"#{b}" in notice.inner_text() and f"#{a}" in notice.inner_text()
    _click_gives_mask(page)

    served = dict(embeddings)
    assert served == {first: b, second: a}, embeddings  # each image: one version, every response
    assert len(set(embeddings)) == 2, embeddings
    assert graphs == {a, b}  # both versions' decoders were fetched, no other
    ready = {tuple(pair) for pair in page.evaluate("window.readyWith")}
    assert ready == {(first, b), (second, a)}, ready  # never shown ready with the other version
    assert not errors, errors
