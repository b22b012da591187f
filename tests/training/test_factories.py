"""The run's model and optimizer factories, from typed configs.

Expected learning rates are worked out by hand from the documented schedule:
with peak rate L, W warmup steps and T total steps, the rate at step s is
L * s / W while s < W, then L * (a + (1 - a) * (1 + cos(pi * (s - W) /
(T - W))) / 2) with a = 1 for 'constant' and a = 0 for 'cosine', reaching 0 at
s = T for 'cosine'.
"""

import keras
import pytest

from trainer.training import factories
from trainer.training.config import ModelConfig
from trainer.training.config import OptimizerConfig

PEAK = 0.1

# (schedule, total steps, warmup steps, {step: learning rate by hand}).
SCHEDULE_CASES = [
    # Warmup of 4 steps, then 6 steps of decay (s - W over T - W).
    ('cosine', 10, 4, {
        0: 0.0,                   # warmup starts from 0
        2: 0.05,                  # mid-warmup: 0.1 * 2 / 4
        4: 0.1,                   # end of warmup: the peak
        7: 0.05,                  # mid-decay: 0.1 * (1 + cos(pi / 2)) / 2
        9: 0.00669872981,         # last step: 0.1 * (1 - sqrt(3) / 2) / 2
        10: 0.0,                  # decayed to zero at total_steps
        12: 0.0,                  # and stays there
    }),
    ('constant', 10, 4, {
        0: 0.0, 2: 0.05, 3: 0.075, 4: 0.1, 7: 0.1, 9: 0.1, 10: 0.1}),
    # No warmup: cosine from the peak over all 8 steps.
    ('cosine', 8, 0, {
        0: 0.1,
        2: 0.0853553391,          # 0.1 * (1 + cos(pi / 4)) / 2
        4: 0.05,                  # 0.1 * (1 + cos(pi / 2)) / 2
        7: 0.00380602337,         # 0.1 * (1 + cos(7 pi / 8)) / 2
        8: 0.0,
    }),
    # A warmup longer than the run is cut to leave one step at the peak.
    ('cosine', 3, 5, {0: 0.0, 1: 0.05, 2: 0.1, 3: 0.0}),
    ('constant', 3, 5, {0: 0.0, 1: 0.05, 2: 0.1, 3: 0.1}),
]


def _rate_at(schedule, step: int) -> float:
  return float(keras.ops.convert_to_numpy(schedule(step)))


def _optimizer(steps_per_epoch=10, total_steps=100,
               **kwargs) -> keras.optimizers.Optimizer:
  """`build_optimizer` at the peak rate `PEAK`, settings as given."""
  config = OptimizerConfig(**{'learning_rate': PEAK, **kwargs})
  return factories.build_optimizer(config, steps_per_epoch, total_steps)


def _rate_of(optimizer, iteration: int) -> float:
  """The rate `optimizer` applies in the update after `iteration` updates."""
  optimizer.iterations.assign(iteration)
  return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


@pytest.mark.parametrize(
    'schedule, total_steps, warmup_steps, expected', SCHEDULE_CASES,
    ids=[f'{case[0]}-T{case[1]}-W{case[2]}' for case in SCHEDULE_CASES])
def test_schedule_rate_at_each_step(schedule, total_steps, warmup_steps,
                                    expected):
  rate = factories.build_schedule(PEAK, total_steps, schedule, warmup_steps)
  got = {step: _rate_at(rate, step) for step in expected}
  assert got == pytest.approx(expected, abs=1e-7)


def test_constant_schedule_without_warmup_is_the_plain_rate():
  assert factories.build_schedule(0.25, 10, 'constant', 0) == 0.25


@pytest.mark.parametrize('name, optimizer_class', [
    ('adam', keras.optimizers.Adam),
    ('adamw', keras.optimizers.AdamW),
    ('sgd', keras.optimizers.SGD),
    ('rmsprop', keras.optimizers.RMSprop),
])
def test_optimizer_class_per_name(name, optimizer_class):
  optimizer = _optimizer(name=name, learning_rate=0.02)
  # `type(...) is`: AdamW is a subclass of Adam.
  assert type(optimizer) is optimizer_class  # pylint: disable=unidiomatic-typecheck
  assert _rate_of(optimizer, 0) == pytest.approx(0.02)
  assert _rate_of(optimizer, 99) == pytest.approx(0.02)


@pytest.mark.parametrize('name', ['adam', 'adamw', 'sgd', 'rmsprop'])
def test_weight_decay_and_clipnorm_reach_the_optimizer(name):
  optimizer = _optimizer(name=name, weight_decay=1e-4, clipnorm=1.5)
  assert optimizer.weight_decay == pytest.approx(1e-4)
  assert optimizer.clipnorm == 1.5


@pytest.mark.parametrize('name, weight_decay', [
    ('adam', None), ('adamw', 0.004), ('sgd', None), ('rmsprop', None)])
def test_default_weight_decay_and_clipnorm(name, weight_decay):
  optimizer = _optimizer(name=name)
  assert optimizer.weight_decay == weight_decay
  assert optimizer.clipnorm is None


@pytest.mark.parametrize('name', ['sgd', 'rmsprop'])
def test_momentum_reaches_the_optimizer(name):
  assert _optimizer(name=name, momentum=0.5).momentum == 0.5


@pytest.mark.parametrize('warmup_epochs, steps_per_epoch, warmup_steps', [
    (0.5, 8, 4),
    (0.3, 5, 2),   # 1.5 steps: rounded up
    (1, 3, 3),
    (2, 3, 6),
])
def test_warmup_epochs_become_steps(warmup_epochs, steps_per_epoch,
                                    warmup_steps):
  optimizer = _optimizer(steps_per_epoch=steps_per_epoch, total_steps=50,
                         warmup_epochs=warmup_epochs)
  assert _rate_of(optimizer, 0) == 0.0
  assert _rate_of(optimizer, warmup_steps - 1) == pytest.approx(
      PEAK * (warmup_steps - 1) / warmup_steps)
  assert _rate_of(optimizer, warmup_steps) == pytest.approx(PEAK)
  assert _rate_of(optimizer, 50) == pytest.approx(PEAK)  # constant after


def test_cosine_optimizer_decays_over_total_steps():
  # 2 warmup steps (0.5 epochs of 4), then cosine over 10 - 2 = 8 steps.
  optimizer = _optimizer(steps_per_epoch=4, total_steps=10, schedule='cosine',
                         warmup_epochs=0.5)
  got = [_rate_of(optimizer, step) for step in (0, 1, 2, 6, 10)]
  assert got == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.0], abs=1e-7)


def test_warmup_epochs_to_steps_is_exact_for_decimal_fractions():
  optimizer = _optimizer(steps_per_epoch=50, total_steps=200,
                         warmup_epochs=1.1)
  assert _rate_of(optimizer, 55) == pytest.approx(PEAK)


def _head_paths(model):
  return sorted(w.path.split('/', 1)[1] for w in model.trainable_weights)


@pytest.fixture(scope='module')
def frozen_model():
  return factories.build_model(
      ModelConfig(model_id='a0', freeze_backbone=True, dropout_rate=0.3),
      num_classes=3)


def test_build_model_sizes_the_head_and_sets_dropout(frozen_model):
  assert frozen_model.backbone.model_id == 'a0'
  assert frozen_model.num_classes == 3
  assert frozen_model.classifier.conv.kernel.shape[-1] == 3
  assert frozen_model.dropout.rate == 0.3
  assert not frozen_model.backbone.causal  # the base variant


def test_freeze_backbone_leaves_only_the_head_trainable(frozen_model):
  assert not frozen_model.backbone.trainable
  assert _head_paths(frozen_model) == [
      'classifier/conv/bias', 'classifier/conv/kernel',
      'head/conv/bias', 'head/conv/kernel']
  assert all(not w.trainable for w in frozen_model.backbone.weights)
  assert len(frozen_model.backbone.weights) > 300


def test_stream_variant_trains_the_backbone():
  model = factories.build_model(ModelConfig(model_id='a0', stream=True),
                                num_classes=4)
  assert model.backbone.trainable
  assert model.backbone.causal
  assert model.backbone.conv_type == '2plus1d'
  backbone_trainable = [w for w in model.backbone.weights if w.trainable]
  assert len(backbone_trainable) > 100
  assert len(model.trainable_weights) == len(backbone_trainable) + 4


def test_backbone_settings_reach_the_backbone():
  model = factories.build_model(
      ModelConfig(model_id='a0', norm_momentum=0.9, norm_epsilon=1e-5),
      num_classes=3)
  norms = [layer for layer in model.backbone._flatten_layers()
           if isinstance(layer, keras.layers.BatchNormalization)]
  assert norms
  assert {(n.momentum, n.epsilon) for n in norms} == {(0.9, 1e-5)}


def test_missing_pretrained_checkpoint_names_the_setting(tmp_path):
  missing = str(tmp_path / 'no_such_checkpoint')
  with pytest.raises(ValueError) as error:
    factories.build_model(ModelConfig(pretrained=missing), num_classes=3)
  message = str(error.value)
  assert message.startswith(
      f'ModelConfig.pretrained={missing!r} cannot be loaded: ')
  assert 'does not exist' in message
