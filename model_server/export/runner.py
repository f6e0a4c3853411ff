"""Run an exported decoder graph of our contract with onnxruntime on the CPU (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .contract import LOW_RES


class OnnxDecoder:
    """Runs an exported graph of our contract (`contract`) with onnxruntime on the CPU.

    Used by the tests and benchmarks that check the graphs against the torch decoder.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(
        self,
        embedding: np.ndarray,
        coords_1024: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode one prompt.

        Args:
            embedding: 256x64x64 (or 1x256x64x64) float16/float32 image embedding.
            coords_1024: Nx2 float (x, y) in the 1024 model frame, padding point or box corners
                already included (see `onnx_prompt`).
            labels: N labels (1, 0, 2, 3, -1).
            mask_input: 256x256 (or 1x1x256x256) float low-res logits, or None.

        Returns:
            ``low_res`` 4x256x256 float32 logits (token 0 single-mask, 1-3 multimask) and ``iou``
            4 float32 predicted IoUs.
        """
        embedding = np.asarray(embedding, dtype=np.float32)
        if embedding.shape not in ((256, 64, 64), (1, 256, 64, 64)):
            raise ValueError(f"embedding must be 256x64x64 or 1x256x64x64, got {embedding.shape}")
        embedding = embedding.reshape(1, 256, 64, 64)
        coords = np.asarray(coords_1024, dtype=np.float32).reshape(1, -1, 2)
        labs = np.asarray(labels, dtype=np.float32).reshape(1, -1)
        if coords.shape[1] != labs.shape[1] or coords.shape[1] == 0:
            raise ValueError(f"need N >= 1 points with N labels, got {coords.shape}, {labs.shape}")
        if mask_input is None:
            mask = np.zeros((1, 1, LOW_RES, LOW_RES), dtype=np.float32)
            has_mask = np.zeros(1, dtype=np.float32)
        else:
            mask = np.asarray(mask_input, dtype=np.float32)
            if mask.size != LOW_RES * LOW_RES:
                raise ValueError(f"mask_input must be 256x256 low-res logits, got {mask.shape}")
            mask = mask.reshape(1, 1, LOW_RES, LOW_RES)
            has_mask = np.ones(1, dtype=np.float32)
        low_res, iou = self.session.run(
            None,
            {
                "image_embeddings": embedding,
                "point_coords": coords,
                "point_labels": labs,
                "mask_input": mask,
                "has_mask_input": has_mask,
            },
        )
        return low_res[0], iou[0]
