"""The training and evaluation inputs of a run, from its `InputsConfig`.

`VideoInputs.read` reads a prepared directory's manifest once, checks it and
the batch sizes against the cluster, and makes the datasets: each epoch's
training batches (`train_dataset`) and the evaluation split
(`eval_dataset`).
"""

import dataclasses
import hashlib
import json

import tensorflow as tf

from trainer import settings
from trainer.data import pipeline
from trainer.training.cluster import Cluster
from trainer.training.config import InputsConfig


@dataclasses.dataclass(frozen=True)
class VideoInputs:
  """The data of a run, checked: see `read`.

  Attributes:
    config: the settings.
    manifest: the prepared directory's manifest.
    label_names: the classes, in label order.
    num_train_clips: clips of the training split.
    dataset_fingerprint: identifies the labels and the training shards.
    batch_size: the global training batch.
    num_workers: machines reading it.
  """
  config: InputsConfig
  manifest: dict
  label_names: tuple[str, ...]
  num_train_clips: int
  dataset_fingerprint: str
  batch_size: int
  num_workers: int = 1

  @classmethod
  def read(cls, config: InputsConfig, cluster: Cluster) -> 'VideoInputs':
    """Reads and checks `config.data_dir` for a run on `cluster`.

    The manifest is checked first, before the run writes anything: labels,
    every shard's recorded label indices and file size; records are checked
    while they are read (see `trainer.data.pipeline`).

    Raises:
      ValueError: a missing or unprepared directory, a manifest whose shards
        are missing, of another size than recorded or hold label indices
        outside its labels, a missing or empty split, a batch that does not
        fit the replicas, the split or this machine's memory (named).
    """
    data_dir = config.data_dir
    manifest = pipeline.read_manifest(data_dir)
    pipeline.check_manifest(data_dir, manifest)
    _check_split(manifest, config, 'train_split')
    _check_split(manifest, config, 'eval_split')
    num_train_clips = manifest['splits'][config.train_split]['num_clips']
    batch_size = config.global_batch_size(cluster.num_replicas)
    if num_train_clips < batch_size:
      raise settings.SettingError(
          type(config).__name__, 'batch_size', batch_size,
          f'must be between 1 and the {num_train_clips} clips of split '
          f'{config.train_split!r} in {data_dir}')
    config.check_memory(cluster.num_replicas, cluster.num_workers)
    return cls(config=config, manifest=manifest,
               label_names=tuple(manifest['labels']),
               num_train_clips=num_train_clips,
               dataset_fingerprint=_fingerprint(manifest, config.train_split),
               batch_size=batch_size, num_workers=cluster.num_workers)

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
    config, sampling = self.config, self.config.sampling
    return strategy.distribute_datasets_from_function(
        lambda context: pipeline.build_dataset(
            config.data_dir, config.train_split, training=True,
            batch_size=self.batch_size, num_frames=sampling.num_frames,
            frame_step=sampling.frame_step, image_size=sampling.image_size,
            seed=seed, epoch=epoch, skip_steps=skip_steps,
            deterministic=deterministic, train_resize=sampling.train_resize,
            min_crop_area=sampling.min_crop_area,
            flip=sampling.flip, input_context=context,
            shuffle_buffer=config.shuffle_buffer))

  def eval_dataset(self, *, clips: int = 0) -> tf.data.Dataset:
    """The evaluation split in manifest order, global batches (Keras
    distributes them); `clips` per video (`config.eval_clips` if 0).

    On one machine every replica's share comes from this one pipeline; with
    several workers each one evaluates every `num_workers`-th share.
    """
    config, sampling = self.config, self.config.sampling
    dataset = pipeline.build_dataset(
        config.data_dir, config.eval_split, training=False,
        batch_size=config.eval_batch_size or self.batch_size,
        num_frames=sampling.num_frames, frame_step=sampling.frame_step,
        image_size=sampling.image_size,
        eval_clips=clips or config.eval_clips,
        eval_resize=sampling.eval_resize,
        drop_remainder=config.eval_drop_remainder)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA if self.num_workers > 1
        else tf.data.experimental.AutoShardPolicy.OFF)
    return dataset.with_options(options)


def _fingerprint(manifest: dict, split: str) -> str:
  """Identifies the labels and the training split's shards (by content).

  Only a shard's file, clip count and sha256 count, so that a manifest that
  also records sizes and label indices keeps the fingerprint of the same
  shards.
  """
  identity_keys = ('file', 'num_clips', 'sha256')
  identity = {'labels': manifest['labels'],
              'shards': [{k: s[k] for k in identity_keys if k in s}
                         for s in manifest['splits'][split]['shards']]}
  return hashlib.sha256(
      json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _check_split(manifest: dict, config: InputsConfig, name: str) -> None:
  splits, split = manifest['splits'], getattr(config, name)
  if split not in splits:
    raise settings.SettingError(
        type(config).__name__, name, split,
        f'is not a split of {config.data_dir}; it has {sorted(splits)}')
  if not splits[split]['num_clips']:
    raise settings.SettingError(
        type(config).__name__, name, split,
        f'names a split of {config.data_dir} without clips; prepare it '
        'again with more videos, or choose another split')
