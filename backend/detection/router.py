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

from backend.api.deps import CurrentUser, ProjectForJobStarter, ProjectForMember, SessionDep, SettingsDep, StorageDep
from backend.clients.model_server import model_service
from backend.detection import service
from backend.detection.schemas import DetectorTrainParams, DetectorVersionOut, ProposeParams
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.model_versions.service import active_version
from backend.tables import DetectorVersion, Job, ModelStatus

router = APIRouter(tags=["detector"])

TRAIN_KIND, PROPOSE_KIND = "detect_train", "detect"


@router.post("/api/projects/{project_id}/detector/train", status_code=status.HTTP_202_ACCEPTED)
def train(
    project: ProjectForJobStarter,
    db: SessionDep,
    user: CurrentUser,
    storage: StorageDep,
    settings: SettingsDep,
    params: DetectorTrainParams | None = None,
) -> JobOut:
    chosen = params or DetectorTrainParams()

    def inputs() -> jobs.JobInputs:
        try:
            service.check_enough(service.training_boxes(db, project.id), chosen.min_boxes)
        except service.NotEnoughData as error:
            raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
        version = active_version(db, project, storage, model_service(settings, storage), settings)
        number = len(service.list_versions(db, project.id)) + 1
        detector = DetectorVersion(
            project_id=project.id,
            model_version_id=version.id,
            name=f"detector v{number}",
            status=ModelStatus.training,
            hyperparameters=chosen.model_dump(),
            created_by=user.id,
        )
        db.add(detector)
        db.flush()

        def attach(job: Job) -> None:
            detector.job_id = job.id

        return jobs.JobInputs(
            {"detector_version_id": detector.id, "params": chosen.model_dump()},
            f"detector training on model version {version.id}",
            attach,
        )

    return JobOut.model_validate(jobs.start_or_existing(db, settings, TRAIN_KIND, project.id, user.id, inputs).job)


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
    chosen = jobs.JobInputs(
        {"detector_version_id": detector.id, "params": {**params.model_dump(), "detector_version_id": detector.id}},
        f"pre-filling masks with {detector.name}",
    )
    started = jobs.start_or_existing(db, settings, PROPOSE_KIND, project.id, user.id, lambda: chosen)
    return JobOut.model_validate(started.job)
