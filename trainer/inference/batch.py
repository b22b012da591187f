"""Classifies a list of videos, one after another, as `movinet-classify`
does: in clips (a table per video) or streaming (top-k per model frame),
with optional JSON, plots and annotated videos.

An input that cannot be classified is reported through `on_error` and
skipped; the others go on. Only the command prints: lines go through the
`emit` callable given.
"""

import contextlib
import dataclasses
from typing import Callable, Optional

from absl import logging
import numpy as np

from trainer import files
from trainer.inference import frames as frames_lib
from trainer.inference import outputs
from trainer.inference import sources
from trainer.inference.classifiers import ClipClassifier
from trainer.inference.classifiers import StreamClassifier
from trainer.inference.models import LoadedModel


@dataclasses.dataclass(frozen=True)
class Options:
  """How to classify and what to write.

  Attributes:
    clips: clips per video in clip mode, probabilities averaged.
    stream: frame by frame through a stream model at its trained rate.
    top_k: classes shown per video (and per frame when streaming).
    max_frames: source frames read per video at most (None: all).
    output_json: a JSON file of every result (None: none).
    plot: a PNG of the stream's top-k over time (`outputs.output_paths`
      names one per video).
    output_video: an MP4 or GIF of each video with its top-k overlaid.
  """
  clips: int = 1
  stream: bool = False
  top_k: int = 5
  max_frames: Optional[int] = None
  output_json: Optional[str] = None
  plot: Optional[str] = None
  output_video: Optional[str] = None

  def __post_init__(self):
    for name in ('clips', 'top_k', 'max_frames'):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise ValueError(f'--{name}={value}; pass 1 or more.')
    if self.stream and self.clips != 1:
      raise ValueError(f'--clips={self.clips} is for clip mode; --stream '
                       'takes the whole video frame by frame.')
    if self.plot and not self.stream:
      raise ValueError('--plot draws probabilities over time; it needs '
                       '--stream.')
    if self.output_video:
      outputs.video_writer_extension(self.output_video)


@dataclasses.dataclass
class _Targets:
  """The per-video output files of one video (None: not written)."""
  plot: Optional[str] = None
  video: Optional[str] = None


def _targets(options: Options, inputs) -> list[_Targets]:
  stems = [video.stem for video in inputs]
  plots = (outputs.output_paths(options.plot, stems) if options.plot
           else [None] * len(inputs))
  videos = (outputs.output_paths(options.output_video, stems)
            if options.output_video else [None] * len(inputs))
  return [_Targets(plot, video) for plot, video in zip(plots, videos)]


def _maybe_writer(path: Optional[str], fps: float):
  """A video writer for `path`, or for None a context giving None."""
  if path is None:
    return contextlib.nullcontext(None)
  return outputs.video_writer(path, fps)


def _camera_frames(video: sources.Video):
  """`video.frames()`, ended by Ctrl-C when `video` is a camera (the way to
  stop one without --max_frames): the frames so far are kept."""
  if not video.is_camera:
    yield from video.frames()
    return
  try:
    yield from video.frames()
  except KeyboardInterrupt:
    logging.info('Interrupted: %s ends here.', video.name)


def stream_video(classifier: StreamClassifier, video: sources.Video,
                 options: Options, targets: _Targets, emit) -> dict:
  """Streams one opened video through `classifier` (reset first); returns
  its record, with the top-k of every model frame."""
  labels, k = classifier.labels, options.top_k
  fps = video.fps or frames_lib.DEFAULT_FPS
  selector = frames_lib.StreamSelector(classifier.model.sampling, fps)
  classifier.reset()
  steps, probabilities, ranked, count = [], [], [], 0
  with _maybe_writer(targets.video, fps) as writer:
    for index, frame in enumerate(_camera_frames(video)):
      count += 1
      if selector.take(index):
        probabilities.append(classifier(frame))
        ranked = outputs.top_k(probabilities[-1], labels, k)
        steps.append({'source_frame': index, 'time': round(index / fps, 4),
                      'top_k': ranked})
        emit(outputs.frame_line(video.name, index / fps, ranked))
      if writer is not None:
        writer.write(outputs.annotate(frame, ranked))
  if targets.plot:
    outputs.plot(targets.plot, video.name,
                 [step['time'] for step in steps], probabilities, labels, k)
  return {'input': video.name, 'fps': video.fps, 'source_frames': count,
          'model_fps': round(classifier.model.sampling.model_fps(fps), 4),
          'top_k': ranked, 'stream': steps}


def clip_video(classifier: ClipClassifier, video: sources.Video,
               options: Options, targets: _Targets, emit) -> dict:
  """Classifies one opened video in clips; returns its record."""
  frames = list(_camera_frames(video))
  fps = video.fps or frames_lib.DEFAULT_FPS
  probabilities = classifier(frames, fps)
  ranked = outputs.top_k(probabilities, classifier.labels, options.top_k)
  emit(outputs.table(video.name, ranked))
  if targets.video:
    with outputs.video_writer(targets.video, fps) as writer:
      for frame in frames:
        writer.write(outputs.annotate(frame, ranked))
  indices = classifier.frame_indices(len(frames), fps)
  return {'input': video.name, 'fps': video.fps,
          'source_frames': len(frames), 'clips': classifier.clips,
          'clip_frames': np.asarray(indices).tolist(), 'top_k': ranked}


def classify_all(model: LoadedModel, inputs: list[sources.VideoInput],
                 options: Options, emit: Callable[[str], None],
                 on_error: Callable[[str], None]) -> list[str]:
  """Classifies each of `inputs` with `model`; writes what `options` ask.

  Args:
    model: the loaded model.
    inputs: the videos (`sources.expand_inputs`).
    options: how, and what to write.
    emit: takes each line of results (tables, stream frames).
    on_error: takes the one-line message of each input that failed.

  Returns:
    The names of the inputs that failed.

  Raises:
    ValueError: options that do not fit the model (`--stream` with a base
      model).
  """
  logging.info('Classifying %d inputs with %s, sampling %s.', len(inputs),
               model.description, model.sampling)
  if options.stream:
    classifier = StreamClassifier(model)
    run = stream_video
  else:
    classifier = ClipClassifier(model, clips=options.clips)
    run = clip_video
  records, failed = [], []
  for video_input, targets in zip(inputs, _targets(options, inputs)):
    try:
      with sources.open_video(video_input, options.max_frames) as video:
        records.append(run(classifier, video, options, targets, emit))
    except (ValueError, OSError) as error:  # InputError is a ValueError
      message = files.reason(error).rstrip('.')
      if not isinstance(error, sources.InputError):
        message = f'{video_input.name}: {message}'
      failed.append(video_input.name)
      on_error(message)
      records.append({'input': video_input.name, 'error': message})
  if options.output_json:
    outputs.write_json(options.output_json, {
        'model': model.description, 'labels': list(model.labels),
        'sampling': model.sampling.to_json(),
        'mode': 'stream' if options.stream else 'clips',
        'videos': records, 'failed': failed})
  return failed
