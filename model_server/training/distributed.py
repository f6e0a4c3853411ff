"""A training round on every GPU of a machine: PyTorch DDP processes launched by `torchrun`.

The caller writes a job (`write_job`: the model, the samples, the config, where checkpoints go) to
a folder and `launch`es `torchrun --standalone --nproc-per-node N -m model_server.training.distributed
JOB`; each process joins the process group (NCCL on GPU, one GPU per process; gloo on CPU), runs
`loop.train_round` on its slice of every global batch, and rank 0 writes the trained model and the
`TrainResult` to the job folder (`read_result`). `python -m model_server train JOB --nproc-per-node N`
does the same from a shell. Resuming works as in one process: the checkpoints are in the job's
`checkpoint_dir`, and a process count change keeps the result (the effective batch is the config's).

A stop request is a file: `request_stop(job)` creates `JOB/stop`, rank 0 sees it before the next
step and every process stops there (after a checkpoint). Progress is a file too: rank 0 writes
``JOB/progress.json`` (``[step, total, loss]``) after each step, and `launch` polls it while the
processes run, calling its `progress` with the newest (coarse: steps finished between two polls are
reported once, as the last of them) and turning its `should_stop` into `request_stop`. A ValueError
of the round (bad input: no usable mask, a batch that does not split, a foreign checkpoint to resume
from) is written by rank 0 to ``JOB/error.txt`` and raised again by `launch` as a ValueError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ..sam import Sam, build_sam
from .config import TrainConfig, TrainResult
from .loop import Sample, train_round

JOB_FILE = "job.pt"
RESULT_FILE = "result.pt"
STOP_FILE = "stop"
PROGRESS_FILE = "progress.json"
ERROR_FILE = "error.txt"
LOG_FILE = "torchrun.log"


def write_job(
    job: Path, model_name: str, model: Sam, samples: Sequence[Sample], config: TrainConfig, checkpoint_dir: Path
) -> None:
    """Everything the processes need, in one file under `job`."""
    job.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    payload = {
        "model_name": model_name,
        "state_dict": state,
        "samples": list(samples),
        "config": asdict(config),
        "checkpoint_dir": str(checkpoint_dir),
    }
    torch.save(payload, job / JOB_FILE)


def launch(
    job: Path,
    nproc_per_node: int,
    timeout_s: float | None = None,
    *,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    poll_s: float = 0.2,
) -> tuple[Sam, TrainResult]:
    """Run the job in `nproc_per_node` processes (torchrun, on this machine) and read its result.

    While they run, every `poll_s`: `progress(step, total, loss)` for a step newer than the last
    reported, and `request_stop` once `should_stop()` is true. ValueError with the round's message
    if it refused its input; ChildProcessError with the processes' last output if they fail;
    TimeoutError (the processes killed) after `timeout_s`."""
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be at least 1, got {nproc_per_node}")
    for stale in (STOP_FILE, PROGRESS_FILE, ERROR_FILE, RESULT_FILE):
        (job / stale).unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc_per_node}",
        "-m",
        "model_server.training.distributed",
        str(job),
    ]
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    reported = 0
    with (job / LOG_FILE).open("w") as log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT) as child:
        try:
            while child.poll() is None:
                reported = _report(job, reported, progress)
                if should_stop is not None and not (job / STOP_FILE).exists() and should_stop():
                    request_stop(job)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"distributed training ran past {timeout_s} s; its processes were stopped")
                time.sleep(poll_s)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    _report(job, reported, progress)
    if child.returncode != 0:
        if (job / ERROR_FILE).is_file():
            raise ValueError((job / ERROR_FILE).read_text())
        output = (job / LOG_FILE).read_text()[-3000:]
        raise ChildProcessError(f"distributed training failed (exit {child.returncode}): {output}")
    return read_result(job)


def _report(job: Path, reported: int, progress: Callable[[int, int, float], None] | None) -> int:
    """Forward rank 0's newest progress if it is past step `reported`; the step reported now."""
    try:
        step, total, loss = json.loads((job / PROGRESS_FILE).read_text())
    except (FileNotFoundError, ValueError):  # not written yet (it is replaced atomically, never torn)
        return reported
    if step > reported and progress is not None:
        progress(int(step), int(total), float(loss))
    return max(reported, int(step))


def read_result(job: Path) -> tuple[Sam, TrainResult]:
    """The trained model (built on the CPU) and the round's TrainResult."""
    saved = torch.load(job / RESULT_FILE, map_location="cpu", weights_only=False)
    model = build_sam(saved["model_name"], device="cpu")
    model.load_state_dict(saved["state_dict"])
    return model, TrainResult(**saved["result"])


def request_stop(job: Path) -> None:
    (job / STOP_FILE).touch()


def run_worker(job: Path) -> None:
    """One torchrun process: join the group, train, rank 0 writes the result."""
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=30))
    try:
        spec = torch.load(job / JOB_FILE, map_location="cpu", weights_only=False)
        model = build_sam(spec["model_name"], device="cpu")
        model.load_state_dict(spec["state_dict"])
        model.to(device)
        config = TrainConfig(**spec["config"])

        def write_progress(step: int, total: int, loss: float) -> None:
            _write_atomically(job / PROGRESS_FILE, json.dumps([step, total, loss]))

        try:
            result = train_round(
                model,
                spec["samples"],
                config,
                checkpoint_dir=Path(spec["checkpoint_dir"]),
                progress=write_progress,
                should_stop=lambda: (job / STOP_FILE).exists(),
            )
        except ValueError as error:  # the same input in every process: each refuses it alike
            if dist.get_rank() == 0:
                _write_atomically(job / ERROR_FILE, str(error))
            raise
        if dist.get_rank() == 0:
            state = {k: v.cpu() for k, v in model.state_dict().items()}
            tmp = job / (RESULT_FILE + ".tmp")
            torch.save({"model_name": spec["model_name"], "state_dict": state, "result": asdict(result)}, tmp)
            os.replace(tmp, job / RESULT_FILE)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]))
