"""The scoring formulas on synthetic inputs: known vectors give known numbers."""

import math

import numpy as np
import pytest

from animagent import scoring

E1, E2 = [1.0, 0.0], [0.0, 1.0]


def test_cosine_matrix_of_known_vectors():
    got = scoring.cosine_matrix(np.array([E1, E2, [3.0, 4.0]]), np.array([[1.0, 1.0], [-2.0, 0.0]]))
    half = 1 / math.sqrt(2)
    assert got == pytest.approx(np.array([[half, -1.0], [half, 0.0], [0.7 * math.sqrt(2), -0.6]]))


def test_zero_vectors_and_size_mismatch_are_refused():
    with pytest.raises(ValueError, match="zero"):
        scoring.cosine_matrix(np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="sizes differ"):
        scoring.cosine_matrix(np.ones((1, 3)), np.ones((1, 4)))


def test_identical_frames_are_perfectly_consistent():
    assert scoring.temporal_consistency(np.tile([0.3, -1.2, 2.0], (8, 1))) == pytest.approx(1.0)


def test_temporal_consistency_is_vbench_formula():
    # frame 1: cos to previous 0, to first 0 -> 0; frame 2: to previous 0, to first 1 -> 0.5; mean 0.25
    assert scoring.temporal_consistency(np.array([E1, E2, E1])) == pytest.approx(0.25)
    # negative cosines count as 0, not below
    assert scoring.temporal_consistency(np.array([E1, [-1.0, 0.0]])) == 0.0
    # 60 degrees to both the first and the previous frame -> cos 0.5
    assert scoring.temporal_consistency(np.array([E1, [0.5, math.sqrt(3) / 2]])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 frames"):
        scoring.temporal_consistency(np.array([E1]))


def test_still_clip_has_no_motion_and_flips_have_full_motion():
    frame = np.full((8, 10, 3), 97, dtype=np.uint8)
    assert scoring.motion_magnitude([frame] * 5) == 0.0
    assert list(scoring.change_zscores([frame] * 5)) == [0.0] * 4
    black, white = np.zeros_like(frame), np.full_like(frame, 255)
    assert scoring.motion_magnitude([black, white, black]) == pytest.approx(1.0)
    half = np.full_like(frame, 51)  # 51/255 = 0.2 change per pixel
    assert scoring.motion_magnitude([black, half]) == pytest.approx(0.2)


def test_a_single_jump_is_a_spike():
    frames = [np.full((4, 4, 3), 10 * i, dtype=np.uint8) for i in range(12)]  # steady change of 10 per frame
    frames[7] = np.full((4, 4, 3), 250, dtype=np.uint8)  # one frame flashes
    z = scoring.change_zscores(frames)
    assert z.shape == (11,)
    assert np.argmax(z) in (6, 7) and z.max() > scoring.SPIKE_Z - 1
    steady = [np.full((4, 4, 3), 10 * i, dtype=np.uint8) for i in range(12)]
    assert np.all(scoring.change_zscores(steady) == 0)


def test_spike_over_threshold_with_enough_frames():
    frames = [np.full((2, 2, 3), i % 2, dtype=np.uint8) for i in range(24)]  # changes of 1/255 every frame
    frames[12] = np.full((2, 2, 3), 200, dtype=np.uint8)
    assert scoring.change_zscores(frames).max() > scoring.SPIKE_Z


def test_clip_t_of_known_vectors():
    images = np.array([E1, E1, E1])
    texts = np.array([[2.0, 0.0], [-1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert scoring.clip_t(images, texts) == pytest.approx([100.0, 0.0, 50.0])
    with pytest.raises(ValueError, match="one text per image"):
        scoring.clip_t(images, texts[:2])


def test_cross_scene_identity_is_mean_pairwise_cosine():
    crops = np.array([E1, E1, E2])  # pairs: (0,1)=1, (0,2)=0, (1,2)=0
    assert scoring.mean_pairwise_cosine(crops) == pytest.approx(1 / 3)
    assert scoring.mean_pairwise_cosine(np.tile(E2, (4, 1))) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        scoring.mean_pairwise_cosine(np.array([E1]))


def test_cssc_is_the_majority_share():
    classifier = iter(["anime", "anime", "realism", "anime", "ink wash"]).__next__  # a scripted style classifier
    labels = [classifier() for _ in range(5)]
    assert scoring.majority_share(labels) == pytest.approx(3 / 5)
    # DreamFactory's own example: three realism scenes and one anime scene -> 75 %
    assert scoring.majority_share(["realism", "realism", "realism", "anime"]) == 0.75
    with pytest.raises(ValueError):
        scoring.majority_share([])


def test_consecutive_keyframe_similarity():
    got = scoring.consecutive_similarity(np.array([E1, [1.0, 1.0], E2, E2]))
    half = 1 / math.sqrt(2)
    assert got == pytest.approx([half, half, 1.0])
