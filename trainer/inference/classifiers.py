"""Class probabilities of frames and videos, whatever the model's format.

  classifier = StreamClassifier('exports/quickstart')   # TFLite float32
  for frame in frames:                # RGB uint8 (height, width, 3), any size
    probabilities = classifier(frame)                   # (classes,)
  classifier.reset()                  # before the next video

  clips = ClipClassifier('exports/quickstart', clips=3)
  probabilities = clips(frames, fps=30.0)  # (frames, height, width, 3)

Both take a `source` as `models.load_model` does (an export directory, a
training model_dir, a `.keras` file or a `keras.Model`), or a `LoadedModel`,
and resize frames as the model's training evaluation did
(`frames.preprocess`).
"""

from typing import Union

import numpy as np

from trainer.inference import frames as frames_lib
from trainer.inference import runners
from trainer.inference.models import LoadedModel
from trainer.inference.models import load_model


def _loaded(source, **options) -> LoadedModel:
  if isinstance(source, LoadedModel):
    return source
  return load_model(source, **options)


class StreamClassifier:
  """A stream model fed one frame at a time; the states stay inside.

  Attributes:
    model: the `LoadedModel` (labels, sampling, runner).
  """

  def __init__(self, source, quantization: str = 'float32',
               backend: str = 'tflite', **options):
    """Loads `source` (see `models.load_model`; `options` go there too).

    Raises:
      ValueError: the model is a base model, which keeps no states.
    """
    self.model = _loaded(source, quantization=quantization, backend=backend,
                         **options)
    if not self.model.stream:
      raise ValueError(f'{self.model.description} is a base model; frame '
                       'by frame classification needs a stream model '
                       '(use clips instead).')
    size = self.model.image_size
    self._shape = (1, 1, size, size, 3)
    self._states = None
    self.reset()

  @property
  def labels(self) -> tuple[str, ...]:
    return self.model.labels

  def reset(self) -> None:
    """Back to the zero states: the next frame starts a new video."""
    self._states = self.model.runner.init_states(self._shape)

  def __call__(self, frame) -> np.ndarray:
    """The probabilities after one more frame.

    Args:
      frame: RGB `(height, width, 3)`, uint8 or float in [0, 1], any size
        (resized as the model's sampling says).

    Returns:
      float32 `(classes,)`, summing to 1.
    """
    image = frames_lib.preprocess(frame, self.model.sampling,
                                  self.model.image_size)[None]
    logits, self._states = self.model.runner.step(self._states, image)
    return frames_lib.softmax(logits)


class ClipClassifier:
  """Classifies a whole video from `clips` clips, as evaluation does.

  Each clip is `clip_frames` frames `frame_step` apart in the video
  resampled to the rate the model was trained at; the clips are spread
  evenly over the video and their probabilities averaged. A base model
  takes each clip at once; a stream model runs it from zero states, frame
  by frame (TFLite) or as one chunk (SavedModel, Keras).
  """

  def __init__(self, source, clips: int = 1, quantization: str = 'float32',
               backend: str = 'tflite', **options):
    if clips < 1:
      raise ValueError(f'--clips={clips}; pass 1 or more.')
    self.model = _loaded(source, quantization=quantization, backend=backend,
                         **options)
    self.clips = clips

  @property
  def labels(self) -> tuple[str, ...]:
    return self.model.labels

  def frame_indices(self, num_frames: int, fps: float) -> np.ndarray:
    """The frames of a video of `num_frames` at `fps` each clip takes.

    Returns:
      int64 `(clips, clip_frames)`, indices into the video's frames.
    """
    sampling = self.model.sampling
    kept = frames_lib.resample_indices(
        num_frames, fps, sampling.prepared_fps(fps))
    chosen = frames_lib.clip_indices(len(kept), self.model.clip_frames,
                                     sampling.frame_step, self.clips)
    return kept[chosen]

  def clip_probabilities(self, clip) -> np.ndarray:
    """The probabilities `(classes,)` of one preprocessed clip `(1, frames,
    size, size, 3)`."""
    runner = self.model.runner
    if self.model.stream:
      states = runner.init_states(clip.shape)
      logits, _ = runners.run_stream(runner, states, clip)
    else:
      logits = runner.logits(clip)
    return frames_lib.softmax(logits)

  def __call__(self, video: Union[np.ndarray, list], fps: float
               ) -> np.ndarray:
    """The probabilities of a video, averaged over the clips.

    Args:
      video: RGB frames `(frames, height, width, 3)` (or a list of them),
        uint8 or float in [0, 1], at `fps`.
      fps: their rate, frames per second (0 or None: unknown, taken as
        `frames.DEFAULT_FPS`).

    Returns:
      float32 `(classes,)`.
    """
    if not len(video):  # pylint: disable=use-implicit-booleaness-not-len
      raise ValueError('A video of no frames; nothing to classify.')
    indices = self.frame_indices(len(video), fps or frames_lib.DEFAULT_FPS)
    probabilities = []
    for clip in indices:
      frames = frames_lib.preprocess(np.stack([video[i] for i in clip]),
                                     self.model.sampling,
                                     self.model.image_size)
      probabilities.append(self.clip_probabilities(frames[None]))
    return np.mean(probabilities, axis=0)
