"""movinet-train under mixed precision, in subprocesses, on tiny data.

Each policy trains 4 steps (float16 in two runs, resuming at 2): the layers
compute in float16 / bfloat16, the logits, loss and predictions stay
float32, and the optimizer's state (for float16 the loss scale and its step
counter) survives the checkpoint.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from tests.training import run_helpers as runs
from trainer.model import build_movinet_classifier
from trainer.training import evaluation

pytestmark = pytest.mark.slow(minutes=2)  # the module, on 2 cores

LOW_PRECISION = {'mixed_float16': 'float16', 'mixed_bfloat16': 'bfloat16'}
VIDEO = np.random.default_rng(0).uniform(size=(2, 4, 32, 32, 3)).astype(
    np.float32)


@pytest.mark.parametrize('stream', [False, True])
def test_a_model_loaded_under_float32_keeps_its_policy_in_every_layer(
    tmp_path, stream):
  # The root cause of a loaded model computing in float32: sublayers made
  # in `__init__`/`build` took the global policy instead of their parent's.
  model = build_movinet_classifier('a0', 3, stream=stream,
                                   dtype='mixed_bfloat16')
  path = tmp_path / 'model.keras'
  model.save(path)
  for candidate in (model, keras.saving.load_model(path)):
    layers = list(candidate._flatten_layers())
    assert {layer.dtype_policy.name for layer in layers} == {
        'mixed_bfloat16'}
    assert candidate(VIDEO).dtype == 'float32'
    assert candidate.backbone(VIDEO)[0].dtype == 'bfloat16'


def _bindings(data_dir, policy, train_steps):
  # SGD with momentum: optimizer state to round-trip, as Adam's, and a first
  # step that traces in ~9 s instead of Adam's ~15 (a0, measured here).
  return runs.tiny_bindings(data_dir, **{
      'build_optimizer.name': "'sgd'",
      'run.mixed_precision': repr(policy),
      'run.train_steps': train_steps,
      'run.checkpoint_every_steps': 1,
      'run.summary_every_steps': 1,
  })


@pytest.fixture(scope='module', params=sorted(LOW_PRECISION))
def policy_run(request, tmp_path_factory, data_dir, env):
  """(policy, model_dir, checkpoint values at step 2 or None, last stderr).

  mixed_float16, whose loss scale is optimizer state of its own, trains 2
  steps, then a rerun resumes to 4; mixed_bfloat16 trains 4 steps in one run.
  Neither validates: the predictions are checked in the tests.
  """
  policy = request.param
  model_dir = tmp_path_factory.mktemp(policy)
  first = None
  if policy == 'mixed_float16':
    result = runs.train(model_dir, _bindings(data_dir, policy, 2) + [
        'run.validate = False'], '--mode=train', env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    first = runs.final_variables(model_dir)
  result = runs.train(model_dir, _bindings(data_dir, policy, 4) + [
      'run.validate = False'], '--mode=train', env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  return policy, model_dir, first, result.stderr


def _losses(directory):
  accumulator = event_accumulator.EventAccumulator(
      str(directory), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return {event.step: float(tensor_util.make_ndarray(event.tensor_proto))
          for event in accumulator.Tensors('loss')}


def test_training_loss_is_finite_through_the_resume(policy_run):
  _, model_dir, first, stderr = policy_run
  if first is not None:
    assert 'Resuming at epoch 1, step 2 of it (global step 2)' in stderr
  losses = _losses(model_dir / 'train')
  assert sorted(losses) == [1, 2, 3, 4]
  assert all(np.isfinite(value) and value > 0 for value in losses.values())


def test_layers_compute_low_precision_and_logits_are_float32(policy_run):
  policy, model_dir, _, _ = policy_run
  low = LOW_PRECISION[policy]
  # Loaded in a process whose global policy is float32: the saved policy
  # must still reach every layer, not only the outer model.
  assert keras.config.dtype_policy().name == 'float32'
  model = keras.saving.load_model(model_dir / 'final_model.keras')
  assert model.dtype_policy.name == policy
  layers = list(model._flatten_layers(include_self=False))
  convs = [layer for layer in layers if type(layer).__name__ == 'VideoConv']
  assert convs and all(conv.compute_dtype == low for conv in convs)
  assert {layer.dtype_policy.name for layer in layers} == {policy}
  assert all(weight.dtype == 'float32' for weight in model.weights)
  features, _ = model.backbone(VIDEO)
  assert features.dtype == low
  logits = model(VIDEO)
  assert logits.dtype == 'float32'
  assert model.predict(VIDEO, verbose=0).dtype == np.float32
  assert np.all(np.isfinite(logits))


def test_predictions_are_float32(policy_run):
  _, model_dir, _, _ = policy_run
  model = keras.saving.load_model(model_dir / 'final_model.keras')
  dataset = tf.data.Dataset.from_tensor_slices(
      (VIDEO, np.array([0, 1], np.int32))).batch(2)
  probabilities, labels = evaluation.predict_clips(model, dataset)
  assert probabilities.dtype == np.float32 and labels.tolist() == [0, 1]
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)



def test_optimizer_state_round_trips_through_the_checkpoint(policy_run):
  policy, model_dir, first, _ = policy_run
  checkpoints = os.listdir(model_dir / 'checkpoints')
  assert 'ckpt-2.index' in checkpoints and 'ckpt-4.index' in checkpoints
  last = runs.final_variables(model_dir)
  model = keras.saving.load_model(model_dir / 'final_model.keras')
  optimizer = model.optimizer
  # The checkpoint stores the optimizer's variables by position: the
  # resumed run's order must be the saved model's, value for value.
  saved = [last[f'optimizer/{i:05d}/.ATTRIBUTES/VARIABLE_VALUE']
           for i in range(len(optimizer.variables))]
  for variable, value in zip(optimizer.variables, saved):
    np.testing.assert_array_equal(variable.numpy(), value, variable.path)
  assert f'optimizer/{len(saved):05d}/.ATTRIBUTES/VARIABLE_VALUE' not in last
  assert int(optimizer.iterations.numpy()) == 4  # (float16: resumed at 2)
  if policy == 'mixed_float16':
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert int(optimizer.inner_optimizer.iterations.numpy()) == 4
    # Restored, not reset to 0 (or swapped with another scalar): 2 steps
    # before the resume plus 2 after.
    assert int(optimizer.step_counter.numpy()) == 4
    scale = float(optimizer.dynamic_scale.numpy())
    assert scale >= 1.0 and np.log2(scale) == int(np.log2(scale))
    index = [v.path for v in optimizer.variables].index(
        optimizer.step_counter.path)
    assert first[f'optimizer/{index:05d}/.ATTRIBUTES/VARIABLE_VALUE'] == 2
  else:
    assert not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
