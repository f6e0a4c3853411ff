"""A training round on every GPU of a machine: PyTorch DDP processes launched by `torchrun`.

The caller writes a job (`write_job`: the model, the samples, the config, where checkpoints go) to
a folder and `launch`es `torchrun --standalone --nproc-per-node N -m model_server.training.distributed
JOB`; each process joins the process group (NCCL on GPU, one GPU per process; gloo on CPU), runs
`loop.train_round` on its slice of every global batch, and rank 0 writes the trained model and the
`TrainResult` to the job folder (`read_result`). `python -m model_server train JOB --nproc-per-node N`
does the same from a shell. Resuming works as in one process: the checkpoints are in the job's
`checkpoint_dir`, and a process count change keeps the result (the effective batch is the config's).

A stop request is a file: `request_stop(job)` creates `JOB/stop`, rank 0 sees it before the next
step and every process stops there (after a checkpoint).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
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


def launch(job: Path, nproc_per_node: int, timeout_s: float | None = None) -> tuple[Sam, TrainResult]:
    """Run the job in `nproc_per_node` processes (torchrun, on this machine) and read its result;
    ChildProcessError with the processes' last output if they fail."""
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be at least 1, got {nproc_per_node}")
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
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise ChildProcessError(f"distributed training failed (exit {done.returncode}): {done.stderr[-3000:]}")
    return read_result(job)


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
        result = train_round(
            model,
            spec["samples"],
            config,
            checkpoint_dir=Path(spec["checkpoint_dir"]),
            should_stop=lambda: (job / STOP_FILE).exists(),
        )
        if dist.get_rank() == 0:
            state = {k: v.cpu() for k, v in model.state_dict().items()}
            tmp = job / (RESULT_FILE + ".tmp")
            torch.save({"model_name": spec["model_name"], "state_dict": state, "result": asdict(result)}, tmp)
            os.replace(tmp, job / RESULT_FILE)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]))
