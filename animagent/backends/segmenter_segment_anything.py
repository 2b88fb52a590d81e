"""The segment-anything segmenter (`segmenter.kind: segment_anything`): the original package and an official
`.pth` checkpoint, behind the same box -> mask call as the transformers SAM (segmenter_sam.py).

A `.pth` file is a pickle, so it is trusted only by content: its sha256 must be one of the three official
checkpoints (CHECKPOINTS, which also gives the model type), and it is read with `torch.load(weights_only=True)`
into a model built empty — the package's own loader would unpickle without that guard. The package imports
torchvision; without it (or without the package) loading fails with an install hint. This module owns the
checksum table, the guarded load and the mask call; it does not choose boxes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL.Image import Image

from animagent import gpu
from animagent.config import Config
from animagent.errors import InputError, MissingError
from animagent.runfolder import sha256_file

log = logging.getLogger(__name__)

# The official checkpoints (dl.fbaipublicfiles.com/segment_anything/): sha256 -> (model type, file name).
CHECKPOINTS = {
    "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e": ("vit_h", "sam_vit_h_4b8939.pth"),
    "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622": ("vit_l", "sam_vit_l_0b3195.pth"),
    "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912": ("vit_b", "sam_vit_b_01ec64.pth"),
}
INSTALL_HINT = "pip install torchvision 'segment-anything @ git+https://github.com/facebookresearch/segment-anything'"


def checkpoint_type(path: Path) -> str:
    """The model type of an official checkpoint, identified by its sha256; anything else is refused."""
    if not path.is_file():
        raise InputError(f"segmenter.checkpoint {path} does not exist")
    digest = sha256_file(path)
    if digest not in CHECKPOINTS:
        official = ", ".join(name for _, name in CHECKPOINTS.values())
        raise InputError(f"{path} (sha256 {digest[:12]}...) is not an official SAM checkpoint ({official})")
    return CHECKPOINTS[digest][0]


class SegmentAnythingSegmenter:
    def __init__(self, config: Config, checkpoint: Path):
        try:
            from segment_anything import SamPredictor, sam_model_registry
        except ImportError as exc:
            raise MissingError(f"segmenter.kind segment_anything needs the package and torchvision ({exc}): "
                               f"{INSTALL_HINT}") from None
        model_type = checkpoint_type(checkpoint)
        model = sam_model_registry[model_type](checkpoint=None)
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        self._predictor = SamPredictor(model.to(gpu.device(config)).eval())
        log.info("segmenter segment-anything %s loaded from %s", model_type, checkpoint)

    def mask(self, image: Image, box: tuple[int, int, int, int]) -> np.ndarray:
        """Boolean (height, width) mask of the object in `box` = (x0, y0, x1, y1), in the image's pixels."""
        self._predictor.set_image(np.asarray(image.convert("RGB")))
        masks, _, _ = self._predictor.predict(box=np.asarray(box, dtype=np.float32), multimask_output=False)
        return masks[0].astype(bool)

    def close(self) -> None:
        del self._predictor
        gpu.free_memory()
