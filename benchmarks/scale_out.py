"""Scale out: embedding a project through 1 and 2 model service processes, and saving masks through
1 and 2 API processes on PostgreSQL, in the same run (each "2" row against its "1" row).

Every service is a process of its own in its own empty folder (tests/system/processes.py), over one
moto S3 server (tests/s3_server.py) and, for the API, a new PostgreSQL database on 127.0.0.1:5432.

**Embedding** (images/s): ``python -m model_server serve --storage s3://...`` processes with untrained
vit_t on the CPU, and ONE client (`model_server.api.http_service`) spreading the project's images over them in
batches of `--batch` keys, round-robin, each service's batches sent from a thread of their own. Why one
client and not two workers: a project's embedding is one job, run by one Celery task that holds the
job's row and progress, so a second worker on the ``embed`` queue takes a second project, not half of
this one; what spreads one project over several model services is its client's requests, which in a
deployment a load balancer in front of them does behind one ``DATAENGINE_MODEL_SERVER_URL``. The rows:
one service with `--threads` torch threads; two services with `--threads` each (twice the cores, if the
machine has them); and one service with twice the threads, the same cores as the two: whether
processes beat threads on equal hardware. Each service embeds one image first (model load, not timed);
the embeddings are deleted between rows so every row computes all of them.

**Mask saves** (masks/s): the API as uvicorn with 1 and then 2 worker processes (``--workers``, as
docker-compose.yml runs it) on a fresh migrated PostgreSQL database each; `--clients` annotators in
threads of this process, each on images it claimed, save `--masks` masks in all (POST
/api/images/{id}/masks, a small square RLE, a new client id each), `--masks-per-image` per image.

On a 2-core machine the ratios say little about more cores: with one torch thread per service, two
services can at most double one service's rate and the "same cores" row is the fairer comparison;
the API rows share the same two cores with PostgreSQL and the clients, so a ratio near 1 there means
the machine, not the API, is the limit.

Usage: .venv/bin/python benchmarks/scale_out.py [--images 12] [--threads 1] [--masks 480] [--clients 8]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image as PILImage
from pycocotools import mask as mask_util

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.core.migrations import upgrade
from model_server import api
from tests.backend.conftest import create_postgres_database, drop_postgres_database
from tests.ports import free_port
from tests.s3_server import CREDENTIALS, S3Server, start_s3_server
from tests.system.processes import Processes, api_argv, create_admin_argv, model_service_argv

PASSWORD = "correct horse battery"
IMAGE_SIDE = 64  # the encoder resizes every image to 1024 px: its cost does not depend on the size
CHECKPOINT_KEY = "models/bench/vit_t.pth"


@dataclass(frozen=True)
class Row:
    measure: str  # "embed" or "mask saves": each row is compared with the first of its measure and round
    round: int
    processes: int
    setting: str
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def _image_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _rounds(rounds: int, settings: Sequence) -> list[tuple]:
    """(round, *setting) for every setting, all of them once per round: the rows alternate, so that a
    change of the machine's load during the run hits every setting alike."""
    return [(r, *(s if isinstance(s, tuple) else (s,))) for r in range(1, rounds + 1) for s in settings]


# ---------------------------------------------------------------------------------------------- embed


@contextmanager
def _model_services(processes: Processes, storage_url: str, count: int, threads: int, tag: str) -> Iterator[list[str]]:
    """`count` model service processes of `threads` torch threads each; their URLs once they answer."""
    started = []
    for index in range(count):
        port = free_port()
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        service = processes.start(f"model-{tag}-{index}", model_service_argv(storage_url, port), env)
        started.append((service, f"http://127.0.0.1:{port}"))
    for service, url in started:
        service.wait_http(f"{url}/v1/health")
    try:
        yield [url for _, url in started]
    finally:
        for service, _ in started:
            service.stop()


def _embed_spread(clients: Sequence[api.ModelService], model: api.ModelRef, keys: list[str], batch: int) -> float:
    """Seconds to embed `keys` with batches dealt round-robin over `clients`, one thread per client."""
    batches = [keys[i : i + batch] for i in range(0, len(keys), batch)]
    per_client = [batches[i :: len(clients)] for i in range(len(clients))]

    def run(client: api.ModelService, mine: list[list[str]]) -> None:
        for chunk in mine:
            client.embed(model, chunk)

    start = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        for future in [pool.submit(run, c, mine) for c, mine in zip(clients, per_client)]:
            future.result()
    return time.perf_counter() - start


def embedding_rows(s3: S3Server, root: Path, images: int, threads: int, batch: int, rounds: int) -> list[Row]:
    storage_url = s3.storage_url(s3.create_bucket())
    storage = api.open_storage(storage_url)
    keys = [f"images/bench/{i:04d}.png" for i in range(images)]
    for i, key in enumerate(keys):
        storage.put_bytes(key, _image_bytes(i))
    warm_keys = [f"images/warm/{i}.png" for i in range(2)]
    for i, key in enumerate(warm_keys):
        storage.put_bytes(key, _image_bytes(10_000 + i))
    rows = []
    with Processes(root / "embed", root / "logs", s3.env) as processes:
        model = None
        for round_, count, per_service in _rounds(rounds, ((1, threads), (2, threads), (1, 2 * threads))):
            tag = f"{round_}-{count}x{per_service}"
            with _model_services(processes, storage_url, count, per_service, tag) as urls:
                clients = [api.http_service(url) for url in urls]
                if model is None:
                    info = clients[0].create_untrained("vit_t", CHECKPOINT_KEY)
                    model = api.ModelRef("vit_t", CHECKPOINT_KEY, info.sha256)
                for client, warm in zip(clients, warm_keys):
                    client.embed(model, [warm])  # loads the model: not timed
                storage.delete_prefix("embeddings/")
                seconds = _embed_spread(clients, model, keys, batch)
            setting = f"{per_service} torch thread(s) each, {batch} image keys per request"
            if per_service != threads:
                setting += " (the cores of the 2-service row)"
            rows.append(Row("embed (model services)", round_, count, setting, images, seconds))
    return rows


# ------------------------------------------------------------------------------------------ mask saves


def _square_rle(k: int) -> dict:
    mask = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    y, x = (k * 7) % (IMAGE_SIDE - 8), (k * 13) % (IMAGE_SIDE - 8)
    mask[y : y + 8, x : x + 8] = 1
    encoded = mask_util.encode(np.asfortranarray(mask))
    return {"size": [IMAGE_SIDE, IMAGE_SIDE], "counts": encoded["counts"].decode("ascii")}


def _token(http: httpx.Client, username: str) -> dict[str, str]:
    response = http.post("/api/auth/token", data={"username": username, "password": PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _prepare_project(http: httpx.Client, clients: int, images: int) -> tuple[list[dict[str, str]], list[list[int]]]:
    """A project with `images` images per annotator and `clients` annotators; their headers and images."""
    admin = _token(http, "admin")
    project = http.post("/api/projects", json={"name": "scale out"}, headers=admin).json()["id"]
    headers, owned = [], []
    for c in range(clients):
        name = f"annotator{c}"
        user = http.post(
            "/api/users", json={"username": name, "password": PASSWORD, "role": "annotator"}, headers=admin
        )
        user.raise_for_status()
        http.post(
            f"/api/projects/{project}/members", json={"user_id": user.json()["id"]}, headers=admin
        ).raise_for_status()
        files = [("files", (f"{c}-{i}.png", _image_bytes(c * 1000 + i), "image/png")) for i in range(images)]
        uploaded = http.post(f"/api/projects/{project}/images", files=files, headers=admin)
        uploaded.raise_for_status()
        headers.append(_token(http, name))
        owned.append([image["id"] for image in uploaded.json()["images"]])
    return headers, owned


def _save_masks(base_url: str, headers: dict[str, str], image_ids: list[int], per_image: int, tag: str) -> int:
    saved = 0
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for image_id in image_ids:
            http.post(f"/api/images/{image_id}/claim", headers=headers).raise_for_status()
            for k in range(per_image):
                body = {"client_id": f"{tag}-{image_id}-{k}", "rle": _square_rle(k), "clicks": 1}
                response = http.post(f"/api/images/{image_id}/masks", json=body, headers=headers)
                if response.status_code != 201:
                    raise RuntimeError(f"save refused: {response.status_code} {response.text}")
                saved += 1
    return saved


def _timed_saves(
    base_url: str, headers: list[dict[str, str]], owned: list[list[int]], per_image: int
) -> tuple[int, float]:
    """(masks saved, seconds): every annotator at once on its images after the first; the first image
    each warms up every API process and connection pool, not timed."""
    clients = range(len(headers))
    with ThreadPoolExecutor(len(headers)) as pool:
        list(pool.map(lambda c: _save_masks(base_url, headers[c], owned[c][:1], 2, "warm"), clients))
        start = time.perf_counter()
        counts = list(pool.map(lambda c: _save_masks(base_url, headers[c], owned[c][1:], per_image, "m"), clients))
        return sum(counts), time.perf_counter() - start


def mask_save_rows(s3: S3Server, root: Path, masks: int, clients: int, per_image: int, rounds: int) -> list[Row]:
    images_per_client = max(1, masks // (clients * per_image))
    rows = []
    for round_, workers in _rounds(rounds, (1, 2)):
        database_url = create_postgres_database()
        try:
            upgrade(database_url)
            env = {
                **s3.env,
                "DATAENGINE_DATABASE_URL": database_url,
                "DATAENGINE_STORAGE_URL": s3.storage_url(s3.create_bucket()),
                "DATAENGINE_SECRET_KEY": "scale-out-benchmark-" + "x" * 32,
                "DATAENGINE_BCRYPT_ROUNDS": "4",
            }
            with Processes(root / f"api-{round_}-{workers}", root / "logs", env) as processes:
                processes.run("cli", create_admin_argv(PASSWORD))
                port = free_port()
                service = processes.start("api", api_argv(port, workers))
                base_url = f"http://127.0.0.1:{port}"
                service.wait_http(f"{base_url}/openapi.json")
                with httpx.Client(base_url=base_url, timeout=120) as http:
                    headers, owned = _prepare_project(http, clients, images_per_client + 1)
                count, seconds = _timed_saves(base_url, headers, owned, per_image)
        finally:
            drop_postgres_database(database_url)
        setting = f"uvicorn --workers {workers}, {clients} annotators at once, {per_image} masks per image"
        rows.append(Row("mask saves (API processes)", round_, workers, setting, count, seconds))
    return rows


def _table(rows: list[Row]) -> str:
    lines = [
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        "",
        "| measure | round | processes | setting | items | seconds | per second | vs the round's first row |",
        "|---|---|---|---|---|---|---|---|",
    ]
    references: dict[tuple[str, int], float] = {}
    for row in rows:
        reference = references.setdefault((row.measure, row.round), row.rate)
        lines.append(
            f"| {row.measure} | {row.round} | {row.processes} | {row.setting} | {row.count} | {row.seconds:.1f} | {row.rate:.2f} "
            f"| {row.rate / reference:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12, help="images embedded per row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of one model service")
    parser.add_argument("--batch", type=int, default=2, help="image keys per embed request")
    parser.add_argument("--masks", type=int, default=480, help="masks saved per row")
    parser.add_argument("--clients", type=int, default=8, help="annotators saving at once")
    parser.add_argument("--masks-per-image", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="embedding rounds (each row once per round)")
    parser.add_argument("--mask-rounds", type=int, default=3, help="mask-save rounds (cheap: repeat them)")
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--skip-masks", action="store_true")
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)  # for this process's own boto3 (the services get them in their env)
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-out-")))
        s3 = stack.enter_context(start_s3_server())
        rows = []
        if not args.skip_embed:
            rows += embedding_rows(s3, root, args.images, args.threads, args.batch, args.rounds)
        if not args.skip_masks:
            rows += mask_save_rows(s3, root, args.masks, args.clients, args.masks_per_image, args.mask_rounds)
    print(_table(rows))


if __name__ == "__main__":
    main()
