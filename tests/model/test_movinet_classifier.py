"""The Keras 3 MoViNet classifier: structure, streaming, config, freezing."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.model import (MODEL_IDS, MovinetBackbone, MovinetClassifier,
                           build_movinet_classifier)
from trainer.model.block_specs import CONV_TYPES

pytestmark = pytest.mark.slow(minutes=2)  # the module, on 2 cores

# Official parameter counts with 600 classes (tf-models-official 2.20.0).
OFFICIAL_PARAMETERS = {
    ('a0', False): 3126071, ('a1', False): 4717912, ('a2', False): 5280922,
    ('a3', False): 7443289, ('a4', False): 11422727, ('a5', False): 18763355,
    ('t0', False): 1740502,
    ('a0', True): 3765983, ('a1', True): 6481560, ('a2', True): 7366050,
    ('a3', True): 11043146, ('a4', True): 18228326, ('a5', True): 31636734,
    ('t0', True): 2385118,
}


def randomize(model, seed=0):
  """Draws every variable, so that zero-initialised ones matter too."""
  rng = np.random.default_rng(seed)
  for variable in model.variables:
    if len(variable.shape) == 0:
      value = rng.uniform(0.05, 0.2)
    elif 'variance' in variable.path or 'gamma' in variable.path:
      value = rng.uniform(0.5, 1.5, variable.shape)
    else:
      value = rng.normal(0.0, 0.2, variable.shape)
    variable.assign(np.asarray(value, np.float32))
  return model


def video(shape, seed=1):
  return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


@pytest.mark.parametrize('stream', [False, True], ids=['base', 'stream'])
@pytest.mark.parametrize('model_id', MODEL_IDS)
def test_parameter_count_equals_official(model_id, stream):
  model = build_movinet_classifier(model_id, 600, stream=stream)
  assert model.count_params() == OFFICIAL_PARAMETERS[model_id, stream]


@pytest.mark.parametrize('chunk', [1, 2, 4])
@pytest.mark.parametrize('conv_type', CONV_TYPES)
def test_streaming_in_chunks_equals_whole_clip(conv_type, chunk):
  model = randomize(build_movinet_classifier(
      'a0', 5, stream=True, conv_type=conv_type,
      use_positional_encoding=True))
  clip = video((2, 8, 32, 32, 3))
  whole = np.asarray(model(clip, training=False))
  states = model.init_states((2, chunk, 32, 32, 3))
  for start in range(0, clip.shape[1], chunk):
    logits, states = model({**states, 'image': clip[:, start:start + chunk]},
                           training=False)
  np.testing.assert_allclose(np.asarray(logits), whole, atol=1e-4, rtol=0)


def test_streaming_without_initial_states_starts_from_zero():
  model = randomize(build_movinet_classifier('t0', 3, stream=True))
  clip = video((1, 3, 32, 32, 3))
  from_zero, _ = model({'image': clip})
  explicit, _ = model({**model.init_states(clip.shape), 'image': clip})
  np.testing.assert_allclose(np.asarray(from_zero), np.asarray(explicit))


def _constructor_args(cls):
  return {name for name, parameter in
          inspect.signature(cls.__init__).parameters.items()
          if name != 'self'
          and parameter.kind is parameter.POSITIONAL_OR_KEYWORD}


def test_get_config_covers_every_argument_and_round_trips():
  model = build_movinet_classifier(
      'a1', 9, stream=True, dropout_rate=0.3, freeze_backbone=True,
      conv_type='3d_2plus1d', se_type='2d', stochastic_depth_drop_rate=0.1,
      norm_momentum=0.9, kernel_regularizer='l2')
  config = model.get_config()
  expected = (_constructor_args(MovinetClassifier) |
              _constructor_args(MovinetBackbone))
  assert expected <= set(config)
  clone = MovinetClassifier.from_config(config)
  clone.build((None, None, None, None, 3))
  assert clone.get_config() == config
  assert clone.count_params() == model.count_params()


def test_keras_format_save_and_load(tmp_path):
  model = randomize(build_movinet_classifier('t0', 4, stream=True))
  path = str(tmp_path / 'model.keras')
  model.save(path)
  restored = keras.models.load_model(path)
  clip = video((1, 2, 32, 32, 3))
  np.testing.assert_allclose(np.asarray(restored(clip)),
                             np.asarray(model(clip)), atol=1e-6)


def test_freeze_backbone_trains_the_head_only():
  model = build_movinet_classifier('t0', 3, freeze_backbone=True,
                                   dropout_rate=0.2)
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  before = {v.path: np.array(v) for v in model.weights}
  model.fit(video((4, 2, 32, 32, 3)), np.array([0, 1, 2, 0]), batch_size=4,
            epochs=1, verbose=0)
  changed = {v.path for v in model.weights
             if not np.array_equal(before[v.path], np.array(v))}
  head = {v.path for v in model.head.weights + model.classifier.weights}
  assert changed == head
  assert not model.backbone.trainable_variables


def test_stochastic_depth_drops_blocks_only_while_training():
  model = randomize(build_movinet_classifier(
      't0', 3, stochastic_depth_drop_rate=0.9))
  clip = video((4, 2, 32, 32, 3))
  inference = [np.asarray(model(clip, training=False)) for _ in range(2)]
  np.testing.assert_array_equal(inference[0], inference[1])
  # BatchNorm uses the batch statistics, the same for the same clip: any
  # difference comes from the blocks dropped at random.
  first, second = (np.asarray(model.backbone(clip, training=True)[0])
                   for _ in range(2))
  assert not np.allclose(first, second)


def test_training_updates_batch_norm_statistics():
  model = build_movinet_classifier('t0', 3)
  stats = list(model.backbone.non_trainable_variables)
  before = [np.array(v) for v in stats]
  model(video((2, 2, 32, 32, 3)), training=True)
  assert any(not np.array_equal(b, np.array(v)) for b, v in zip(before, stats))


@pytest.mark.parametrize('argument, value', [
    ('model_id', 'a9'),
    ('conv_type', '4d'),
    ('se_type', 'both'),
    ('activation', 'gelu_fast'),
    ('gating_activation', 'tanhh'),
    ('classifier_activation', 'nope'),
])
def test_unsupported_argument_is_named(argument, value):
  kwargs = {'model_id': 'a0', 'num_classes': 3, argument: value}
  with pytest.raises(ValueError, match=rf'{argument}=.*{value}.*choose'):
    build_movinet_classifier(**kwargs)


def test_unknown_keyword_is_refused():
  with pytest.raises(ValueError, match='conv_kind'):
    build_movinet_classifier('a0', 3, conv_kind='3d')


@pytest.mark.parametrize('shape', [(2, 32, 32, 3), (1, 2, 32, 32, 3, 1)])
def test_wrong_input_rank_is_refused(shape):
  model = build_movinet_classifier('t0', 3)
  with pytest.raises(ValueError, match='rank'):
    model(np.zeros(shape, np.float32))


@pytest.mark.parametrize('policy', ['mixed_bfloat16', 'mixed_float16'])
def test_mixed_precision_gives_float32_logits_and_gradients(policy):
  keras.mixed_precision.set_dtype_policy(policy)
  try:
    model = build_movinet_classifier('t0', 3, stream=True)
    with tf.GradientTape() as tape:
      logits = model(video((2, 3, 32, 32, 3)), training=True)
      loss = tf.reduce_mean(logits)
    gradients = tape.gradient(loss, model.trainable_variables)
  finally:
    keras.mixed_precision.set_dtype_policy('float32')
  assert logits.dtype == tf.float32
  assert all(g is not None and np.isfinite(np.asarray(g, np.float32)).all()
             for g in gradients)
