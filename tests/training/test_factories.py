"""The run's model and optimizer factories, called in-process.

The functions are called as plain Python functions with every argument that
matters passed explicitly, so gin bindings (and the configurables of the same
name that tf-models-official registers in this process) play no part.

Expected learning rates are worked out by hand from the documented schedule:
with peak rate L, W warmup steps and T total steps, the rate at step s is
L * s / W while s < W, then L * (a + (1 - a) * (1 + cos(pi * (s - W) /
(T - W))) / 2) with a = 1 for 'constant' and a = 0 for 'cosine', reaching 0 at
s = T for 'cosine'.
"""

import keras
import pytest

from trainer.model import MODEL_IDS
from trainer.training import factories

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


def _optimizer(**kwargs) -> keras.optimizers.Optimizer:
  """`build_optimizer` with every argument explicit (no gin defaults)."""
  arguments = dict(steps_per_epoch=10, total_steps=100, name='adam',
                   learning_rate=PEAK, schedule='constant', warmup_epochs=0.0,
                   weight_decay=None, momentum=0.9, clipnorm=None)
  arguments.update(kwargs)
  return factories.build_optimizer(**arguments)


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


@pytest.mark.parametrize('kwargs, message', [
    (dict(schedule='linear'),
     "build_optimizer.schedule='linear' is not one of constant, cosine"),
    (dict(learning_rate=0.0), 'build_optimizer.learning_rate=0.0 must be > 0'),
    (dict(learning_rate=-1e-3),
     'build_optimizer.learning_rate=-0.001 must be > 0'),
    (dict(warmup_steps=-1), r'warmup \(-1 steps\) >= 0'),
])
def test_schedule_rejects_bad_settings(kwargs, message):
  arguments = dict(learning_rate=PEAK, total_steps=10, schedule='cosine',
                   warmup_steps=0)
  arguments.update(kwargs)
  with pytest.raises(ValueError, match=message):
    factories.build_schedule(**arguments)


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


@pytest.mark.parametrize('name', factories.OPTIMIZERS)
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


@pytest.mark.parametrize('kwargs, message', [
    (dict(name='lamb'),
     "build_optimizer.name='lamb' is not one of adam, adamw, sgd, rmsprop"),
    (dict(schedule='step'), "build_optimizer.schedule='step'"),
    (dict(learning_rate=0.0), 'build_optimizer.learning_rate=0.0'),
])
def test_optimizer_errors_name_the_binding(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _optimizer(**kwargs)


def test_negative_warmup_error_names_warmup_epochs():
  with pytest.raises(ValueError, match='build_optimizer.warmup_epochs'):
    _optimizer(warmup_epochs=-1.0)


@pytest.mark.parametrize('model_id', MODEL_IDS)
def test_check_model_id_accepts_known_ids(model_id):
  factories.check_model_id(model_id)


@pytest.mark.parametrize('model_id', ['A0', 'a6', 'x3d', ''])
def test_check_model_id_names_the_binding_and_choices(model_id):
  with pytest.raises(ValueError) as error:
    factories.check_model_id(model_id)
  assert str(error.value) == (
      f'build_model.model_id={model_id!r} is not one of '
      'a0, a1, a2, a3, a4, a5, t0.')


def test_build_model_rejects_a_bad_id_by_name():
  with pytest.raises(ValueError, match="build_model.model_id='b0'"):
    factories.build_model(num_classes=3, model_id='b0')


def _head_paths(model):
  return sorted(w.path.split('/', 1)[1] for w in model.trainable_weights)


@pytest.fixture(scope='module')
def frozen_model():
  return factories.build_model(num_classes=3, model_id='a0', stream=False,
                               pretrained=None, freeze_backbone=True,
                               dropout_rate=0.3, use_sync_bn=False)


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
  model = factories.build_model(num_classes=4, model_id='a0', stream=True,
                                pretrained=None, freeze_backbone=False,
                                dropout_rate=0.2, use_sync_bn=False)
  assert model.backbone.trainable
  assert model.backbone.causal
  assert model.backbone.conv_type == '2plus1d'
  backbone_trainable = [w for w in model.backbone.weights if w.trainable]
  assert len(backbone_trainable) > 100
  assert len(model.trainable_weights) == len(backbone_trainable) + 4


def test_build_model_rejects_an_unknown_override_by_name():
  with pytest.raises(ValueError, match=r"argument\(s\) \['width'\]"):
    factories.build_model(num_classes=3, model_id='a0', width=2)


def test_missing_pretrained_checkpoint_names_the_binding(tmp_path):
  missing = str(tmp_path / 'no_such_checkpoint')
  with pytest.raises(ValueError) as error:
    factories.build_model(num_classes=3, model_id='a0', pretrained=missing)
  message = str(error.value)
  assert message.startswith(f'build_model.pretrained={missing!r}: ')
  assert 'does not exist' in message
