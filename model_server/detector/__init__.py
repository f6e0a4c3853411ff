"""A one-class ("object") box detector over the cached SAM image embedding: the semi-automatic stage.

Design: an FCOS-style dense head (Tian et al. 2019) on the 256x64x64 image embedding that SAM's
encoder already produced for every image (the backend caches it per image and model version).

* **No second encoder.** The embedding costs nothing more: the detector only adds a 1x1 projection
  to `width` channels and `depth` 3x3 convolutions on the 64x64 grid (about 0.4 GMAC per image at
  width 64, depth 3). That is why it trains in minutes on two CPU cores from a few hundred boxes
  and why the same code runs batched on a GPU (``DetectorConfig.device``), where the encoder, not
  this head, is the cost.
* **Dense, anchor-free.** Each cell of the 64x64 grid (stride 16 in SAM's 1024 model frame) predicts
  an objectness logit and the distances (left, top, right, bottom) from its centre to the box edges,
  encoded as log(distance / 16). No anchors to tune for one class; every cell near an object's
  centre is a positive example, which matters with the few dozen images of a stage-1 project.
  A cell is positive for a box when its centre lies in the box's central part (`center_ratio` of
  its width and height, at least the cell holding the box centre); a cell inside several boxes
  serves the smallest. The objectness target of a positive cell is its centerness (1 at the box
  centre, falling towards the edges), trained with a focal loss on soft targets, so the best-placed
  cell of an object scores highest; boxes train with GIoU plus L1 on the log distances. Cells over
  the padding of the 1024 frame are ignored.
* **Calibrated scores.** Raw objectness ranks cells, it is not a probability that a box is right.
  `train_detector` keeps `calibration_fraction` of the training images out of the head's training,
  detects on them, labels each detection true/false positive at IoU 0.5, and fits Platt scaling
  (``p = sigmoid(a * logit + b)``) by maximum likelihood. `Detector.predict` returns these
  calibrated scores: a score of 0.8 means about 80% of such detections match an object at IoU 0.5
  (on data like the calibration images). With too few calibration detections (or only one class of
  outcome) the identity (a=1, b=0) is kept and the metrics say so.
* **NMS** is `model_server.boxes.batched_nms` (the automatic generator's), with one category.

Frames: boxes given to and returned by this module are XYXY in the ORIGINAL image frame (pixels);
inside, they live in the 1024 model frame of the embedding, scaled per axis by input/original size.

One module per job: `config` (hyperparameters, the sample type and its checks), `targets` (frames,
box coding and the per-cell training targets), `head` (the network), `inference` (`Detector`:
calibrated boxes of one image, save/load), `train` (`train_detector` and its loss), `calibrate`
(Platt scaling on held-out images), `evaluate` (matching at IoU 0.5 and AP), `proposals` (boxes →
SAM masks, the semi-automatic stage's pre-filled masks).
"""

from .config import DetectionSample, DetectorConfig
from .evaluate import evaluate_detector
from .inference import Detector
from .train import train_detector

__all__ = ["DetectionSample", "Detector", "DetectorConfig", "evaluate_detector", "train_detector"]
