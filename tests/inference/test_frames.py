"""Which frames inference takes and how it resizes them: no model."""

import numpy as np
import pytest
import tensorflow as tf

from trainer.data import clip_ops
from trainer.data.sampling import ClipSampling
from trainer.inference import frames
from trainer.inference.classifiers import ClipClassifier
from trainer.inference.models import LoadedModel



@pytest.mark.parametrize('count, source_fps, target_fps, expected', [
    (10, 30.0, 10.0, [0, 3, 6, 9]),
    (10, 25.0, 10.0, [0, 3, 5, 8]),  # 2.5 rounds half up: 3
    (5, 30.0, 30.0, [0, 1, 2, 3, 4]),
    (5, 10.0, 30.0, [0, 1, 2, 3, 4]),  # never more frames than the source
])
def test_resample_keeps_the_frame_nearest_each_timestamp(
    count, source_fps, target_fps, expected):
  assert frames.resample_indices(count, source_fps,
                                 target_fps).tolist() == expected


@pytest.mark.parametrize('available, num_frames, step, clips', [
    (100, 4, 5, 1), (100, 4, 5, 3), (10, 4, 5, 2), (16, 4, 5, 1)])
def test_clip_indices_are_evaluation_s(available, num_frames, step, clips):
  # clip_ops is what evaluation runs in training.
  starts = clip_ops._eval_starts(available, num_frames, step, clips)
  expected = clip_ops.sample_frame_indices(available, num_frames, step,
                                           starts).numpy()
  assert frames.clip_indices(available, num_frames, step,
                             clips).tolist() == expected.tolist()


def test_clip_mode_takes_known_frames_of_a_resampled_video():
  # 60 frames at 30 fps, trained at 15 fps every 2nd frame: prepared frames
  # are the even source frames (30 of them); a 4-frame clip spans 7 of
  # them, the middle one starts at prepared frame (30 - 7) // 2 = 11.
  model = LoadedModel(runner=None, stream=False, labels=('a', 'b'),
                      sampling=ClipSampling(num_frames=4, frame_step=2,
                                            fps=15.0, image_size=8),
                      image_size=8, description='no model')
  assert ClipClassifier(model).frame_indices(60, 30.0).tolist() == [
      [22, 26, 30, 34]]
  assert ClipClassifier(model, clips=2).frame_indices(60, 30.0).tolist() == [
      [10, 14, 18, 22], [34, 38, 42, 46]]


def test_the_stream_takes_every_step_th_frame_at_the_prepared_rate():
  sampling = ClipSampling(frame_step=3, fps=12.0)
  selector = frames.StreamSelector(sampling, 30.0)
  taken = [index for index in range(100) if selector.take(index)]
  assert taken == frames.resample_indices(100, 30.0, 12.0)[::3].tolist()
  assert taken[:4] == [0, 8, 15, 23]  # 12 fps / 3: every 0.25 s
  assert sampling.model_fps(30.0) == 4.0


@pytest.mark.parametrize('resize', ['crop', 'pad'])
def test_frames_are_resized_as_evaluation_resizes(resize):
  frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
  sampling = ClipSampling(image_size=16, resize=resize)
  ops = {'crop': clip_ops.center_crop_clip, 'pad': clip_ops.pad_clip}
  expected = ops[resize](tf.constant(frame[None]), size=16).numpy()
  got = frames.preprocess(frame, sampling)
  assert got.shape == (1, 16, 16, 3) and got.dtype == np.float32
  np.testing.assert_array_equal(got, expected)
  # The same frame as float in [0, 1] gives the same square.
  np.testing.assert_allclose(frames.preprocess(frame / 255.0, sampling),
                             expected, atol=1e-6)
  if resize == 'pad':  # 48 x 64 fitted in 16 x 16: black bars top, bottom
    assert not got[0, :2].any() and not got[0, -2:].any()
