"""Evaluation of a trained classifier: predictions, metrics and their files.

`predict_clips` runs a model over a finite eval dataset in one pass (labels
are carried through `model.predict`, so no video is decoded twice) and works
inside and outside a `tf.distribute` strategy scope. `compute_metrics` turns
the probabilities into `EvalMetrics`, `confusion_matrix_png` draws its
confusion matrix and `write_eval_outputs` stores both atomically (local or
`gs://`).
"""

import dataclasses
import io
import json
import os
from typing import Optional

from absl import logging
import keras
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

from trainer import files
from trainer.training.cluster import Cluster

METRICS_NAME = 'metrics.json'
CONFUSION_NAME = 'confusion_matrix.png'
MAX_TOP_K = 5


class _ProbabilitiesAndLabels(keras.Model):
  """Wraps a classifier: `(video, label)` -> clip-averaged softmax and label.

  Carrying the label through the model lets one `model.predict` pass return
  both, in the same order, under any distribution strategy.
  """

  def __init__(self, classifier: keras.Model, eval_clips: int, **kwargs):
    super().__init__(**kwargs)
    self.classifier = classifier
    self.eval_clips = eval_clips

  def call(self, inputs, training=False):
    del training  # always inference
    video, label = inputs
    if self.eval_clips > 1:
      # (batch, clips, frames, h, w, 3) -> (batch * clips, frames, h, w, 3).
      video = tf.reshape(video, tf.concat([[-1], tf.shape(video)[2:]], 0))
    logits = tf.cast(self.classifier(video, training=False), tf.float32)
    probabilities = tf.nn.softmax(logits, axis=-1)
    if self.eval_clips > 1:
      probabilities = tf.reduce_mean(
          tf.reshape(probabilities,
                     [-1, self.eval_clips, tf.shape(probabilities)[-1]]),
          axis=1)
    return {'probabilities': probabilities, 'labels': label}


def _check_element_spec(dataset: tf.data.Dataset, eval_clips: int) -> None:
  """Raises ValueError unless `dataset` yields (video, label) of right rank."""
  spec = dataset.element_spec
  if not isinstance(spec, tuple) or len(spec) != 2:
    raise ValueError(
        f'dataset must yield (video, label) pairs; its element_spec is {spec}. '
        'Pass the dataset built by `pipeline.eval_dataset`.')
  rank = 6 if eval_clips > 1 else 5
  video_rank = spec[0].shape.rank
  if video_rank is not None and video_rank != rank:
    layout = ('(batch, clips, frames, height, width, 3)' if eval_clips > 1 else
              '(batch, frames, height, width, 3)')
    raise ValueError(
        f'With eval_clips={eval_clips} the video must be {layout}; the dataset '
        f'yields shape {spec[0].shape}. Build the dataset with the same '
        'eval_clips as given here.')
  clips = spec[0].shape[1] if eval_clips > 1 else None
  if clips is not None and clips != eval_clips:
    raise ValueError(
        f'eval_clips={eval_clips} but the dataset yields {clips} clips per '
        f'video (shape {spec[0].shape}). Use the same eval_clips for both.')


def predict_clips(model, dataset, *, eval_clips: int = 1,
                  cluster: Optional[Cluster] = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Runs `model` over a finite eval dataset and returns its probabilities.

  Works inside a `tf.distribute` strategy scope (the strategy the model was
  built under is used) and without one.

  Args:
    model: a Keras model mapping float video
      `(num, frames, height, width, 3)` to float logits `(num, num_classes)`.
    dataset: finite `tf.data.Dataset` of `(video, label)` batches; video is
      `(batch, frames, height, width, 3)`, or
      `(batch, eval_clips, frames, height, width, 3)` if `eval_clips > 1`;
      label is integer `(batch,)`.
    eval_clips: clips per video. With more than one, the clips are folded
      into the batch for the model and the softmax probabilities averaged over
      each video's clips.
    cluster: the run's cluster; by default the strategy the model was built
      under, on this machine.

  Returns:
    `(probabilities, labels)`: float32 `(num_videos, num_classes)` and int32
    `(num_videos,)`, in dataset order.

  Raises:
    ValueError: `eval_clips` is not a positive int or disagrees with the
      dataset's video shape.
  """
  if not isinstance(eval_clips, int) or eval_clips < 1:
    raise ValueError(f'eval_clips must be an int >= 1, got {eval_clips!r}; '
                     'set `eval_clips` to 1 or more.')
  _check_element_spec(dataset, eval_clips)
  with model.distribute_strategy.scope():
    wrapper = _ProbabilitiesAndLabels(model, eval_clips,
                                      name='probabilities_and_labels')
  (cluster or Cluster(model.distribute_strategy)).prepare_model(wrapper)
  # ((video, label),): Keras takes the single element as x and no y.
  outputs = wrapper.predict(
      dataset.map(lambda video, label: ((video, label),)), verbose=0)
  probabilities = np.asarray(outputs['probabilities'], dtype=np.float32)
  labels = np.asarray(outputs['labels']).astype(np.int32)
  logging.info('Predicted %d videos (%d clips each).', len(labels), eval_clips)
  return probabilities, labels


def _check_metric_inputs(probabilities, labels, label_names):
  """Validates and returns `(probabilities, labels)` as numpy arrays."""
  probabilities = np.asarray(probabilities)
  labels = np.asarray(labels)
  num_classes = len(label_names)
  if len(set(label_names)) != num_classes:
    raise ValueError(f'label_names must be unique, got {list(label_names)}; '
                     "use the prepared manifest's `labels`.")
  if probabilities.ndim != 2 or probabilities.shape[1] != num_classes:
    raise ValueError(
        f'probabilities must be (num_clips, {num_classes}) for '
        f'{num_classes} label_names; got shape {probabilities.shape}. Check '
        "that the model's num_classes matches the dataset's labels.")
  if labels.ndim != 1 or labels.shape[0] != probabilities.shape[0]:
    raise ValueError(
        f'labels must be (num_clips,) = ({probabilities.shape[0]},) to match '
        f'probabilities; got shape {labels.shape}.')
  if labels.shape[0] == 0:
    raise ValueError('There are zero clips to evaluate (labels is empty); '
                     'check that the eval split is prepared and not empty.')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integers, got dtype {labels.dtype}; '
                     'pass the int labels of the eval dataset.')
  bad = labels[(labels < 0) | (labels >= num_classes)]
  if bad.size:
    raise ValueError(
        f'labels must lie in [0, {num_classes}) for {num_classes} '
        f'label_names; got {sorted(set(bad.tolist()))[:10]}. Check that '
        'label_names come from the same prepared manifest as the data.')
  return probabilities, labels


@dataclasses.dataclass(frozen=True)
class EvalMetrics:
  """How well a model classified the clips of a split.

  Attributes:
    top1: fraction of clips whose most probable class is theirs.
    top5: top-k accuracy with `k = min(5, num_classes)`.
    mean_class_accuracy: mean of per-class accuracy over the classes that
      have at least one clip.
    num_clips: clips evaluated.
    per_class_accuracy: `{name: accuracy}` in label order, None for a class
      without clips.
    confusion_matrix: rows are true labels, columns predictions, in label
      order.
  """
  top1: float
  top5: float
  mean_class_accuracy: float
  num_clips: int
  per_class_accuracy: dict[str, Optional[float]]
  confusion_matrix: list[list[int]]

  @property
  def label_names(self) -> list[str]:
    return list(self.per_class_accuracy)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2,
                      allow_nan=False) + '\n'


def compute_metrics(probabilities, labels, label_names: list[str]
                    ) -> EvalMetrics:
  """Accuracy metrics and confusion matrix of clip predictions.

  Ties: classes are ranked by descending probability and equal probabilities
  by ascending class index (a stable sort), so the top-1 prediction is
  `argmax` and a tied class is counted in the top k only if its index is
  among the first k of that order.

  Args:
    probabilities: float `(num_clips, num_classes)`.
    labels: int `(num_clips,)` in `[0, num_classes)`.
    label_names: `num_classes` unique names, in label-index order.

  Returns:
    The metrics (see `EvalMetrics`).

  Raises:
    ValueError: shapes disagree, labels are out of range or not integers,
      label_names repeat, or there are zero clips.
  """
  probabilities, labels = _check_metric_inputs(probabilities, labels,
                                               label_names)
  num_classes = len(label_names)
  ranking = np.argsort(-probabilities, axis=1, kind='stable')
  k = min(MAX_TOP_K, num_classes)
  top1_hits = ranking[:, 0] == labels
  topk_hits = np.any(ranking[:, :k] == labels[:, None], axis=1)
  confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
  np.add.at(confusion, (labels, ranking[:, 0]), 1)
  clips_per_class = confusion.sum(axis=1)
  per_class = {
      name: (float(confusion[i, i] / clips_per_class[i])
             if clips_per_class[i] else None)
      for i, name in enumerate(label_names)}
  present = [acc for acc in per_class.values() if acc is not None]
  return EvalMetrics(
      top1=float(np.mean(top1_hits)),
      top5=float(np.mean(topk_hits)),
      mean_class_accuracy=float(np.mean(present)),
      num_clips=int(labels.shape[0]),
      per_class_accuracy=per_class,
      confusion_matrix=confusion.tolist())


def confusion_matrix_png(confusion, label_names: list[str],
                         title: str = 'Confusion matrix') -> bytes:
  """Draws a confusion matrix as PNG bytes.

  Colours are row-normalised (fraction of each true class); cells show the
  raw counts, zero cells are left blank so that large matrices stay readable.
  The figure grows with the number of classes (about 0.22 inch per class),
  so 101 classes still get legible labels.

  Args:
    confusion: int `(num_classes, num_classes)`; rows true, columns
      predicted.
    label_names: `num_classes` names, in label-index order.
    title: figure title.

  Returns:
    The PNG file contents.

  Raises:
    ValueError: `confusion` is not square with one row per label name.
  """
  confusion = np.asarray(confusion)
  num_classes = len(label_names)
  if confusion.shape != (num_classes, num_classes):
    raise ValueError(
        f'confusion must be ({num_classes}, {num_classes}) for {num_classes} '
        f'label_names; got shape {confusion.shape}.')
  row_sums = confusion.sum(axis=1, keepdims=True)
  normalised = confusion / np.maximum(row_sums, 1)
  side = max(4.0, 0.22 * num_classes + 2.5)
  font_size = float(np.clip(160.0 / max(num_classes, 1), 4.0, 10.0))
  figure = Figure(figsize=(side + 1.0, side), dpi=100)
  canvas = FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  image = axes.imshow(normalised, cmap='Blues', vmin=0.0, vmax=1.0,
                      interpolation='nearest')
  colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
  colorbar.set_label('fraction of true class')
  ticks = np.arange(num_classes)
  axes.set_xticks(ticks)
  axes.set_yticks(ticks)
  axes.set_xticklabels(label_names, rotation=90, fontsize=font_size)
  axes.set_yticklabels(label_names, fontsize=font_size)
  axes.set_xlabel('predicted')
  axes.set_ylabel('true')
  axes.set_title(title)
  for row, column in zip(*np.nonzero(confusion)):
    colour = 'white' if normalised[row, column] > 0.5 else 'black'
    axes.text(column, row, str(int(confusion[row, column])), ha='center',
              va='center', color=colour, fontsize=font_size)
  figure.tight_layout()
  buffer = io.BytesIO()
  canvas.print_png(buffer)
  return buffer.getvalue()


def write_eval_outputs(metrics: EvalMetrics, eval_dir: str) -> bytes:
  """Writes `metrics.json` and `confusion_matrix.png` to `eval_dir`
  (local or `gs://`, created if missing), each atomically.

  Returns:
    The PNG bytes written (for TensorBoard).
  """
  tf.io.gfile.makedirs(eval_dir)
  files.write_atomically(os.path.join(eval_dir, METRICS_NAME),
                         metrics.to_json())
  png = confusion_matrix_png(metrics.confusion_matrix, metrics.label_names)
  files.write_atomically(os.path.join(eval_dir, CONFUSION_NAME), png)
  logging.info('Wrote %s and %s to %s (top1 %s).', METRICS_NAME,
               CONFUSION_NAME, eval_dir, metrics.top1)
  return png
