"""Where a character is in a keyframe, and the crop of it that is scored: the review's identity gate and the
evaluation's cross-scene identity use the same crop, so the two figures agree.

This module owns the geometry (a box in pixels, SAM's mask kept inside the box, the masked crop padded to a square);
the segmenter comes in as a protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from animagent.artifacts import Box

if TYPE_CHECKING:
    from PIL import Image

    from animagent.backends import Segmenter

MASK_FILL = (255, 255, 255)  # outside the mask a crop is white, like the sheets' plain background


def character_mask(
    image: Image.Image, box: Box, segmenter: Segmenter
) -> tuple[np.ndarray, str, tuple[int, int, int, int]]:
    """(bool mask of the image's size, "sam" or "box", the box in pixels): SAM's mask inside the box, or the
    whole box when SAM finds nothing inside it (a mask that never leaves the box cannot grab a neighbour)."""
    pixels = box_pixels(box, image.width, image.height)
    x0, y0, x1, y1 = pixels
    inside = np.zeros((image.height, image.width), dtype=bool)
    inside[y0:y1, x0:x1] = True
    sam = np.asarray(segmenter.mask(image, pixels), dtype=bool) & inside
    return (sam, "sam", pixels) if sam.any() else (inside, "box", pixels)


def box_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box in pixels, at least one pixel wide and high and inside the image."""
    x0, y0, x1, y1 = box.to_pixels(width, height)
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def masked_crop(image: Image.Image, mask: np.ndarray, pixels: tuple[int, int, int, int]) -> Image.Image:
    """The box's crop with everything outside the mask white, padded to a square: CLIP's processor centre-crops
    a tall crop, which would cut off a standing character's head and feet."""
    from PIL import Image

    rgb = image.convert("RGB")
    masked = Image.composite(rgb, Image.new("RGB", rgb.size, MASK_FILL), Image.fromarray(mask.astype(np.uint8) * 255))
    crop = masked.crop(pixels)
    side = max(crop.size)
    square = Image.new("RGB", (side, side), MASK_FILL)
    square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return square
