"""The official tf-models-official MoViNet: what the tests compare to."""

import numpy as np
import tensorflow as tf
import tf_keras
from official.projects.movinet.modeling import movinet, movinet_model
# Private, and only here: see `build_official`.
# pylint: disable-next=no-name-in-module
from tensorflow.python.autograph.core import ag_ctx

# The official stream recipe, as `build_movinet_classifier(stream=True)`.
STREAM_KWARGS = dict(causal=True, conv_type='2plus1d', se_type='2plus3d',
                     activation='hard_swish', gating_activation='hard_sigmoid')


def build_official(model_id, num_classes, stream=False, external_states=False,
                   seed=0, **overrides):
  """An official `MovinetClassifier` whose every variable is random.

  Weights that start at 0 or 1 (BatchNorm statistics, biases, ReZero scales)
  are drawn too, so that a comparison exercises every variable.
  """
  kwargs = dict(model_id=model_id)
  if stream:
    kwargs.update(STREAM_KWARGS)
    kwargs['use_positional_encoding'] = model_id in ('a3', 'a4', 'a5')
  kwargs.update(overrides)
  kwargs['use_external_states'] = external_states
  tf_keras.utils.set_random_seed(seed)
  # tf_keras runs each layer's `call` through AutoGraph while it builds the
  # functional graph. The official layers branch on Python values only, so
  # the conversion changes no op, yet it is ~20 % of the build (a4 base:
  # 11.3 s -> 9.2 s). A branch on a tensor would raise here, not pass.
  with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED):
    backbone = movinet.Movinet(**kwargs)
    model = movinet_model.MovinetClassifier(
        backbone, num_classes=num_classes, output_states=external_states)
    model.build([1, 1, 1, 1, 3])
  randomize(model, seed)
  return model


def randomize(model, seed):
  """Draws every BatchNorm statistic, beta, gamma, bias and scalar scale."""
  rng = np.random.default_rng(seed)
  for variable in model.variables:
    name, shape = variable.name, variable.shape
    if 'moving_variance' in name or 'gamma' in name:
      value = rng.uniform(0.5, 1.5, shape)
    elif 'moving_mean' in name or 'beta' in name or 'bias' in name:
      value = rng.normal(0.0, 0.1, shape)
    elif len(shape) == 0:
      # ReZero and positional-encoding scales. Small, so that activations stay
      # O(1) through a5's 60 blocks: with larger residual scales random
      # weights amplify float rounding until two correct models differ.
      value = rng.uniform(0.05, 0.2, shape)
    else:
      continue  # kernels keep their random initial values
    variable.assign(value.astype(np.float32))


def save_like_release(model, directory):
  """Saves as the released archives were: `tf.train.Checkpoint(model=...)`."""
  return tf.train.Checkpoint(model=model).save(str(directory / 'ckpt'))


def save_like_trainer(model, directory):
  """Saves as the Model Garden trainer does: backbone tracked on its own."""
  optimizer = tf_keras.optimizers.SGD(0.1, momentum=0.9)
  checkpoint = tf.train.Checkpoint(
      global_step=tf.Variable(7, dtype=tf.int64), model=model,
      optimizer=optimizer, backbone=model.backbone)
  return checkpoint.save(str(directory / 'ckpt'))
