"""The scoring formulas: pure numpy, one implementation for the pipeline (choosing candidates) and for `eval`.

Every function takes features or pixels already computed and returns plain floats or arrays; nothing here
loads a model, reads a file or knows about the run folder. Features are rows of a 2-D array (N, D); the
functions L2-normalise them themselves, so callers may pass raw or normalised embeddings.

Sources of the formulas (each function's docstring names its own):
- VBench (Huang et al., CVPR 2024; Vchitect/VBench `vbench/subject_consistency.py`,
  `vbench/background_consistency.py`): subject consistency on DINO features, background consistency on CLIP
  features, the same frame-to-first and frame-to-previous formula.
- torchmetrics `CLIPScore`: CLIP-T = max(100 · cos(image, text), 0).
- DreamFactory (Xie et al. 2024): CSFD (cross-scene face distance: mean similarity of each keyframe's face to
  every later one), CSSC (cross-scene style consistency: share of the majority style class), average
  keyframe CLIP score.
- Anim-Director (Li et al., SIGGRAPH Asia 2024): image-image similarity of consecutive scene images,
  text-image similarity, subject/background consistency and distortion checks of clip candidates.
This module owns the arithmetic; what is fed in (which encoder, which crop) is decided by the callers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A transition whose pixel change lies this many standard deviations above the clip's mean change is a spike
# (a flash, a jump cut inside a clip, a frame that melts): the usual 3-sigma outlier rule.
SPIKE_Z = 3.0
# A clip whose frames change by less than one grey level per pixel per frame on average reads as a still image.
STILL_MOTION = 1.0 / 255.0


def normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64). A zero row raises: it has no direction to compare."""
    rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("cannot normalise a zero feature vector")
    return rows / norms


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) cosine similarities between the rows of `a` (N, D) and the rows of `b` (M, D)."""
    a, b = normalize(a), normalize(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    return np.clip(a @ b.T, -1.0, 1.0)


def temporal_consistency(frame_features: np.ndarray) -> float:
    """VBench's subject/background consistency of one clip, from per-frame features (T, D), T >= 2.

    For each frame i > 0: s_i = (max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2; the score is the mean of
    s_i over i = 1..T-1. Identical frames give 1.0. VBench feeds DINO ViT-B/16 features for *subject* consistency
    and CLIP ViT-B/32 features for *background* consistency (`vbench/subject_consistency.py`,
    `vbench/background_consistency.py`); which encoder is used is the caller's choice, so numbers are only
    comparable to VBench's when the encoders match.
    """
    f = normalize(frame_features)
    if len(f) < 2:
        raise ValueError(f"temporal consistency needs at least 2 frames, got {len(f)}")
    to_previous = np.clip(np.sum(f[1:] * f[:-1], axis=1), 0.0, 1.0)
    to_first = np.clip(f[1:] @ f[0], 0.0, 1.0)
    return float(np.mean((to_previous + to_first) / 2.0))


def frame_changes(frames: Sequence[np.ndarray]) -> np.ndarray:
    """(T-1,) mean absolute change per pixel and channel between consecutive frames, as a fraction of 255.

    Frames are equally sized uint8 (or 0..255 float) arrays; T >= 2.
    """
    if len(frames) < 2:
        raise ValueError(f"frame changes need at least 2 frames, got {len(frames)}")
    shape = frames[0].shape
    changes = []
    for i in range(1, len(frames)):
        if frames[i].shape != shape:
            raise ValueError(f"frame {i} is {frames[i].shape}, frame 0 is {shape}")
        diff = np.abs(frames[i].astype(np.float32) - frames[i - 1].astype(np.float32))
        changes.append(float(diff.mean()) / 255.0)
    return np.asarray(changes, dtype=np.float64)


def motion_magnitude(frames: Sequence[np.ndarray]) -> float:
    """A dynamic-degree proxy in 0..1: the mean of `frame_changes` (0 for a still clip, 1 for black↔white flips).

    VBench's dynamic degree thresholds RAFT optical flow; this cheaper proxy keeps the property that matters for
    choosing candidates: a clip that does not move cannot score a perfect consistency *and* motion.
    """
    return float(np.mean(frame_changes(frames)))


def change_zscores(frames: Sequence[np.ndarray]) -> np.ndarray:
    """(T-1,) z-scores of the frame-to-frame changes within the clip; spikes are those above `SPIKE_Z`.

    A cheap distortion check in the spirit of Anim-Director's candidate filter: a transition that changes far
    more than the others marks a flash, a melt or a jump. A clip whose changes are all equal, or all below
    one grey level, gives zeros. With
    T-1 transitions no z-score can exceed (T-2)/sqrt(T-1), so a spike needs at least 12 frames to be detectable.
    """
    changes = frame_changes(frames)
    spread = changes.std()
    # Equal changes, or none visible (every transition under a grey level: a frozen clip's codec flicker,
    # whose tiny spread would otherwise turn noise into z-scores above SPIKE_Z).
    if spread < 1e-9 or changes.max() < STILL_MOTION:
        return np.zeros_like(changes)
    return (changes - changes.mean()) / spread


def clip_t(image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """(N,) CLIP-T of image i against text i: max(100 · cos(E_img, E_txt), 0) (torchmetrics `CLIPScore`).

    DreamFactory's "average key-frames CLIP score" is the mean of this over keyframes and Anim-Director's
    text-image similarity is the same cosine; both papers print the cosine (≈0.29), not the ×100 value (≈29).
    """
    a, b = normalize(image_features), normalize(text_features)
    if a.shape != b.shape:
        raise ValueError(f"need one text per image, got {a.shape[0]} images and {b.shape[0]} texts")
    return np.maximum(100.0 * np.sum(a * b, axis=1), 0.0)


def mean_pairwise_cosine(features: np.ndarray) -> float:
    """Mean cos(f_i, f_j) over all pairs i < j of N >= 2 feature rows: cross-scene identity of one character.

    DreamFactory's CSFD compares each keyframe's face with every later keyframe's and averages; here the rows
    are one character's (SAM-masked) crops from the shots it appears in, encoded by CLIP or DINOv2.
    """
    f = normalize(features)
    if len(f) < 2:
        raise ValueError(f"pairwise similarity needs at least 2 rows, got {len(f)}")
    upper = np.triu_indices(len(f), k=1)
    return float(np.mean(np.clip(f @ f.T, -1.0, 1.0)[upper]))


def majority_share(labels: Sequence[str]) -> float:
    """DreamFactory's CSSC: the count of the most frequent style class divided by the number of keyframes."""
    if not labels:
        raise ValueError("majority share needs at least one label")
    return Counter(labels).most_common(1)[0][1] / len(labels)


def consecutive_similarity(features: np.ndarray) -> np.ndarray:
    """(N-1,) cos(f_i, f_{i+1}) of consecutive rows: Anim-Director's image-image similarity of scene images."""
    f = normalize(features)
    return np.clip(np.sum(f[1:] * f[:-1], axis=1), -1.0, 1.0)


@dataclass(frozen=True)
class ClipMeasures:
    """One clip's VBench consistencies, motion and largest change z-score; used to choose clips and by eval."""

    subject_consistency: float
    background_consistency: float
    motion: float
    max_change_z: float

    @property
    def spike(self) -> bool:
        return self.max_change_z > SPIKE_Z

    @property
    def still(self) -> bool:
        return self.motion < STILL_MOTION


def clip_measures(
    frames: Sequence[np.ndarray], subject_features: np.ndarray, background_features: np.ndarray
) -> ClipMeasures:
    """`frames` (H, W, 3 uint8) with their subject (DINOv2) and background (CLIP) features, one row per frame."""
    return ClipMeasures(
        subject_consistency=temporal_consistency(subject_features),
        background_consistency=temporal_consistency(background_features),
        motion=motion_magnitude(frames),
        max_change_z=float(np.max(change_zscores(frames))),
    )
