"""Detector routes: train a version, list versions, pre-fill a project's images with its masks.

* ``POST /api/projects/{id}/detector/train`` (manager, ml_engineer, admin; members): 202 with the
  `JobOut` of a new training job and a new detector version (status ``training``); 409 naming the
  counts when the project has too few annotated masks; a training job already queued or running is
  returned instead of a second one.
* ``GET /api/projects/{id}/detectors``: every version, newest first, with its held-out metrics.
* ``POST /api/projects/{id}/detector/propose`` (same roles): 202 with the `JobOut` of a proposal
  job; 409 while the project has no ready detector.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from backend.api.deps import CurrentUser, ProjectForJobStarter, ProjectForMember, SessionDep, SettingsDep, StorageDep
from backend.clients.model_server import ModelServerClient
from backend.detection import service
from backend.detection.schemas import DetectorTrainParams, DetectorVersionOut, ProposeParams
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.model_versions.service import active_version
from backend.tables import DetectorVersion, Job, ModelStatus
from backend.tables.enums import JobStatus

router = APIRouter(tags=["detector"])

TRAIN_KIND, PROPOSE_KIND = "detect_train", "detect"


def _pending(db: SessionDep, project_id: int, kind: str) -> Job | None:
    return db.scalar(
        select(Job)
        .where(Job.project_id == project_id, Job.kind == kind, Job.status.in_((JobStatus.queued, JobStatus.running)))
        .order_by(Job.id.desc())
    )


@router.post("/api/projects/{project_id}/detector/train", status_code=status.HTTP_202_ACCEPTED)
def train(
    project: ProjectForJobStarter,
    db: SessionDep,
    user: CurrentUser,
    storage: StorageDep,
    settings: SettingsDep,
    params: DetectorTrainParams | None = None,
) -> JobOut:
    params = params or DetectorTrainParams()
    pending = _pending(db, project.id, TRAIN_KIND)
    if pending is not None:
        return JobOut.model_validate(pending)
    try:
        service.check_enough(service.training_boxes(db, project.id), params.min_boxes)
    except service.NotEnoughData as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    version = active_version(db, project, storage, ModelServerClient.from_settings(settings), settings)
    number = len(service.list_versions(db, project.id)) + 1
    job = jobs.create_job(
        db, TRAIN_KIND, project.id, user.id, message=f"detector training on model version {version.id}"
    )
    detector = DetectorVersion(
        project_id=project.id,
        model_version_id=version.id,
        job_id=job.id,
        name=f"detector v{number}",
        status=ModelStatus.training,
        hyperparameters=params.model_dump(),
        created_by=user.id,
    )
    db.add(detector)
    db.flush()
    job.result = {**job.result, "detector_version_id": detector.id, "params": params.model_dump()}
    jobs.submit(db, job, settings)
    db.refresh(job)
    return JobOut.model_validate(job)


@router.get("/api/projects/{project_id}/detectors")
def list_detectors(project: ProjectForMember, db: SessionDep) -> list[DetectorVersionOut]:
    return [DetectorVersionOut.model_validate(v) for v in service.list_versions(db, project.id)]


@router.post("/api/projects/{project_id}/detector/propose", status_code=status.HTTP_202_ACCEPTED)
def propose(
    project: ProjectForJobStarter,
    db: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    params: ProposeParams | None = None,
) -> JobOut:
    params = params or ProposeParams()
    if params.detector_version_id is None:
        detector = service.latest_ready(db, project.id)
    else:
        detector = db.get(DetectorVersion, params.detector_version_id)
        if detector is None or detector.project_id != project.id:
            raise HTTPException(
                status_code=status.HTTP_404_NOT_FOUND,
                detail=f"detector version {params.detector_version_id} not found in this project",
            )
    if detector is None or detector.status != ModelStatus.ready:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"no ready detector version: train one first (POST /api/projects/{project.id}/detector/train)",
        )
    pending = _pending(db, project.id, PROPOSE_KIND)
    if pending is not None:
        return JobOut.model_validate(pending)
    job = jobs.create_job(db, PROPOSE_KIND, project.id, user.id, message=f"pre-filling masks with {detector.name}")
    job.result = {
        **job.result,
        "detector_version_id": detector.id,
        "params": {**params.model_dump(), "detector_version_id": detector.id},
    }
    jobs.submit(db, job, settings)
    db.refresh(job)
    return JobOut.model_validate(job)
