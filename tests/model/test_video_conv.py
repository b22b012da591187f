"""VideoConv's inference forms compute what its training forms do."""

import numpy as np
import pytest

from trainer.model import activations
from trainer.model.video_conv import VideoConv

# (kernel_size, strides, depthwise, temporal_padding, use_bias)
_CONVS = [
    ((1, 1, 1), (1, 1, 1), False, 'same', True),    # pointwise, matmul
    ((1, 1, 1), (1, 1, 1), True, 'same', False),    # pointwise depthwise
    ((1, 3, 3), (1, 2, 2), True, 'same', False),    # spatial depthwise
    ((3, 1, 1), (1, 1, 1), True, 'causal', False),  # temporal depthwise
    ((3, 1, 1), (1, 1, 1), True, 'valid', True),    # ... after a buffer
    ((3, 1, 1), (2, 1, 1), True, 'same', False),    # ... strided in time
    ((3, 3, 3), (1, 2, 2), False, 'same', False),   # full 3D
]


@pytest.mark.parametrize('kernel_size,strides,depthwise,padding,use_bias',
                         _CONVS)
def test_folded_inference_matches_training_form(kernel_size, strides,
                                                depthwise, padding,
                                                use_bias):
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(2, 5, 7, 6, 4)).astype(np.float32)
  conv = VideoConv(6, kernel_size, strides=strides, depthwise=depthwise,
                   temporal_padding=padding, use_bias=use_bias)
  conv.build(inputs.shape)
  if use_bias:
    conv.bias.assign(rng.normal(size=conv.bias.shape).astype(np.float32))
  channels = 4 if depthwise else 6
  scale = rng.uniform(0.5, 1.5, channels).astype(np.float32)
  offset = rng.normal(size=channels).astype(np.float32)
  activation = activations.get_activation('hard_swish')

  folded = conv(inputs, scale=scale, offset=offset, activation=activation,
                training=False)
  expected = activation(conv(inputs, training=True) * scale + offset)
  np.testing.assert_allclose(np.asarray(folded), np.asarray(expected),
                             atol=1e-5)
