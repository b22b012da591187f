"""The activations MoViNet uses, computed as the official code does."""

from keras import ops

ACTIVATIONS = ('swish', 'hard_swish', 'sigmoid', 'hard_sigmoid', 'relu',
               'relu6', 'linear')


def hard_swish(x):
  """`x * relu6(x + 3) / 6`, the MobileNetV3 swish approximation."""
  return x * ops.relu6(x + 3.0) * (1.0 / 6.0)


def hard_sigmoid(x):
  """`relu6(x + 3) * 0.16667`; the official constant, not exactly 1/6."""
  return ops.relu6(x + 3.0) * 0.16667


_FUNCTIONS = {
    'swish': lambda x: x * ops.sigmoid(x),
    'hard_swish': hard_swish,
    'sigmoid': ops.sigmoid,
    'hard_sigmoid': hard_sigmoid,
    'relu': ops.relu,
    'relu6': ops.relu6,
    'linear': lambda x: x,
}


def get_activation(name: str, argument: str = 'activation'):
  """Returns the function for activation `name`.

  Args:
    name: one of `ACTIVATIONS`.
    argument: the constructor argument that carried `name`, for the error.

  Raises:
    ValueError: `name` is not supported.
  """
  if name not in _FUNCTIONS:
    raise ValueError(
        f'{argument}={name!r} is not supported; choose one of {ACTIVATIONS}.')
  return _FUNCTIONS[name]

