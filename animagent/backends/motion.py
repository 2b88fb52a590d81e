"""Each animator's motion table: the director's closed motion vocabulary (`artifacts.Motion`) → that animator's
parameters. Light on purpose (no torch): the animate stage records a shot's parameters in motion.json and its step
keys while the director is loaded and the animator is not. Each animator reads its own table from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from animagent.artifacts import Motion


@dataclass(frozen=True)
class SVDMotion:
    """SVD takes no text: motion is steered only by its micro-conditioning."""

    motion_bucket_id: int  # 0..255; higher = more motion
    noise_aug_strength: float  # noise added to the conditioning image; higher = more motion, less resemblance
    fps: int  # the conditioning (and playback) frame rate; the pipeline passes fps - 1 to the model itself


# Stability's reference sampling for SVD-XT is motion_bucket_id 127, noise_aug 0.02, fps 7 (the model sees
# fps_id 6): that is "moderate". The buckets spread around it over the trained 0..255 range. noise_aug stays
# at the reference for calm shots, because it costs resemblance to the keyframe (character identity), and
# rises only where strong motion matters more than fidelity. fps stays at the reference for every motion:
# it is also the clip's playback rate and SVD-XT was fine-tuned at it; the other two steer the motion.
SVD: dict[Motion, SVDMotion] = {
    "still": SVDMotion(motion_bucket_id=30, noise_aug_strength=0.02, fps=7),
    "gentle": SVDMotion(motion_bucket_id=80, noise_aug_strength=0.02, fps=7),
    "moderate": SVDMotion(motion_bucket_id=127, noise_aug_strength=0.02, fps=7),
    "lively": SVDMotion(motion_bucket_id=170, noise_aug_strength=0.05, fps=7),
    "intense": SVDMotion(motion_bucket_id=220, noise_aug_strength=0.1, fps=7),
}


@dataclass(frozen=True)
class PhraseMotion:
    """Animators that read text are steered by words appended to the prompt."""

    phrase: str  # appended to the prompt
    fps: int  # playback rate of the clip


# The AnimateDiff SDXL beta adapter was trained on 8 fps clips; faster motion is asked for in words, not by frame
# rate, so every class plays at 8 fps.
ANIMATEDIFF: dict[Motion, PhraseMotion] = {
    "still": PhraseMotion(phrase="almost still, only a faint movement", fps=8),
    "gentle": PhraseMotion(phrase="slow, gentle movement", fps=8),
    "moderate": PhraseMotion(phrase="natural movement", fps=8),
    "lively": PhraseMotion(phrase="lively, quick movement", fps=8),
    "intense": PhraseMotion(phrase="intense fast action, dynamic motion", fps=8),
}

# Wan's motion follows the text; speed is asked for in the prompt, never by retiming: every class plays at the
# model's 24 fps (it was trained at 24 fps), so a shot's duration is its motion's duration.
WAN: dict[Motion, PhraseMotion] = {
    "still": PhraseMotion(phrase="Almost still: only a faint movement, the camera holds", fps=24),
    "gentle": PhraseMotion(phrase="Slow, gentle movement", fps=24),
    "moderate": PhraseMotion(phrase="Natural movement at an easy pace", fps=24),
    "lively": PhraseMotion(phrase="Lively, quick movement", fps=24),
    "intense": PhraseMotion(phrase="Intense fast action, dynamic motion", fps=24),
}

# by `animator.kind`
TABLES: dict[str, dict[Motion, SVDMotion] | dict[Motion, PhraseMotion]] = {
    "svd": SVD, "animatediff": ANIMATEDIFF, "wan": WAN,
}
