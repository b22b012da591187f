"""The training and evaluation inputs of a run, from its `InputsConfig`.

`VideoInputs.read` reads a prepared directory's manifest once, checks it,
the rate its frames were prepared at and the batch sizes against the
cluster, and makes the datasets: each epoch's training batches
(`train_dataset`) and the evaluation split (`eval_dataset`).
"""

import dataclasses
import math

from absl import logging
import tensorflow as tf

from trainer import settings
from trainer.data import pipeline
from trainer.data.manifest import Manifest
from trainer.data.sampling import ClipSampling
from trainer.training import config as config_lib
from trainer.training.cluster import Cluster
from trainer.training.config import InputsConfig


@dataclasses.dataclass(frozen=True)
class VideoInputs:
  """The data of a run, checked: see `read`.

  Attributes:
    config: the settings.
    manifest: the prepared directory's manifest.
    num_train_clips: clips of the training split.
    batch_size: the global training batch.
    num_workers: machines reading it.
  """
  config: InputsConfig
  manifest: Manifest
  num_train_clips: int
  batch_size: int
  num_workers: int = 1

  @classmethod
  def read(cls, config: InputsConfig, cluster: Cluster) -> 'VideoInputs':
    """Reads and checks `config.data_dir` for a run on `cluster`.

    The manifest is checked first, before the run writes anything
    (`Manifest.check_files`: labels, every shard's recorded label indices
    and file size); records are checked while they are read (see
    `trainer.data.pipeline`).

    Raises:
      ValueError: a missing or unprepared directory, a manifest whose shards
        are missing, of another size than recorded or hold label indices
        outside its labels, a missing or empty split, frames prepared at
        another rate than `config.prepared_fps`, a batch that does not fit
        the replicas, the split or this machine's memory (named).
    """
    manifest = Manifest.read(config.data_dir)
    manifest.check_files()
    check_frame_rate(config, manifest)
    owner = config_lib.SETTING_NAMES[type(config).__name__]
    train = manifest.split(config.train_split, f'{owner}.train_split')
    manifest.split(config.eval_split, f'{owner}.eval_split')
    batch_size = config.global_batch_size(cluster.num_replicas)
    if train.num_clips < batch_size:
      raise settings.SettingError(
          type(config).__name__, 'batch_size', batch_size,
          f'must be between 1 and the {train.num_clips} clips of split '
          f'{config.train_split!r} in {config.data_dir}')
    config.check_memory(cluster.num_replicas, cluster.num_workers)
    return cls(config=config, manifest=manifest,
               num_train_clips=train.num_clips, batch_size=batch_size,
               num_workers=cluster.num_workers)

  @property
  def label_names(self) -> tuple[str, ...]:
    return self.manifest.labels

  @property
  def clip_sampling(self) -> ClipSampling:
    """How inference must take clips to match this run's evaluation."""
    frames = self.manifest.frames
    return ClipSampling.of(self.config.sampling,
                           frames.fps if frames else None)

  @property
  def dataset_fingerprint(self) -> str:
    """Identifies the labels and the training shards (by content)."""
    return self.manifest.fingerprint(self.config.train_split)

  @property
  def num_classes(self) -> int:
    return len(self.label_names)

  @property
  def steps_per_epoch(self) -> int:
    """Training steps per epoch: full global batches (the rest is dropped)."""
    return self.num_train_clips // self.batch_size

  def train_dataset(self, strategy: tf.distribute.Strategy, *, seed: int,
                    epoch: int, skip_steps: int = 0, deterministic: bool):
    """Epoch `epoch` of the training clips as per-replica batches.

    The same `(seed, epoch)` always gives the same clips in the same
    batches, and `skip_steps` starts that many steps in, so a resumed run
    trains on exactly the batches an uninterrupted run would.
    """
    config = self.config
    return strategy.distribute_datasets_from_function(
        lambda context: pipeline.train_dataset(
            self.manifest, config.train_split, config.sampling,
            batch_size=self.batch_size, seed=seed, epoch=epoch,
            skip_steps=skip_steps, deterministic=deterministic,
            shuffle_buffer=config.shuffle_buffer, input_context=context))

  def eval_dataset(self, *, clips: int = 0) -> tf.data.Dataset:
    """The evaluation split in manifest order, global batches (Keras
    distributes them); `clips` per video (`config.eval_clips` if 0).

    On one machine every replica's share comes from this one pipeline; with
    several workers each one evaluates every `num_workers`-th share.
    """
    config = self.config
    dataset = pipeline.eval_dataset(
        self.manifest, config.eval_split, config.sampling,
        batch_size=config.eval_batch_size or self.batch_size,
        clips=clips or config.eval_clips,
        drop_remainder=config.eval_drop_remainder)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA if self.num_workers > 1
        else tf.data.experimental.AutoShardPolicy.OFF)
    return dataset.with_options(options)


def check_frame_rate(config: InputsConfig, manifest: Manifest) -> None:
  """Stops a run on data prepared at another rate than
  `config.prepared_fps` (if set) says; logs the time a clip spans.

  `frame_step` counts frames of the prepared videos (`manifest.frames.fps`,
  or each video's own rate when kept): 3 frames at 5 fps and 15 at 25 fps
  are both 0.6 s.

  Raises:
    SettingError: naming `prepared_fps`, the data's rate and the fix.
  """
  sampling = config.sampling
  fps = manifest.frames.fps if manifest.frames else None
  expected = config.prepared_fps
  if expected is not None and not (fps and math.isclose(fps, expected)):
    found = (f'at {fps:g} fps (movinet-prepare --fps={fps:g})' if fps else
             "at each video's own rate (movinet-prepare --fps=0)")
    raise settings.SettingError(
        type(config).__name__, 'prepared_fps', expected,
        f'does not match {config.data_dir}, prepared {found}: frame_step='
        f'{sampling.frame_step} counts prepared frames, so clips would span '
        'another time. Prepare the videos with movinet-prepare '
        f'--fps={expected:g} into a new --output_dir, or set prepared_fps '
        'and frame_step for the rate the data has')
  span = (sampling.num_frames - 1) * sampling.frame_step
  if fps:
    logging.info(
        'Clips: %d frames %d apart at %g fps: %.2f s between frames, %.2f s '
        'from first to last.', sampling.num_frames, sampling.frame_step, fps,
        sampling.frame_step / fps, span / fps)
  else:
    logging.info(
        "Clips: %d frames %d apart at each video's own rate (e.g. at 25 fps: "
        '%.2f s between frames, %.2f s from first to last).',
        sampling.num_frames, sampling.frame_step, sampling.frame_step / 25,
        span / 25)
