"""A TFLite model with integer input and output tensors, run with float
ones: the runner quantizes and dequantizes with the tensors' own scale and
zero point."""

import numpy as np
import tensorflow as tf

from trainer.inference import runners

SHAPE = (1, 2, 4, 4, 3)  # a base model's (batch, frames, height, width, 3)


def _integer_model(path) -> tf.types.experimental.ConcreteFunction:
  """Writes a tiny real int8 TFLite model (uint8 `image` in, int8 `logits`
  out) to `path/model.tflite`; returns its float function."""
  weights = tf.constant(np.random.default_rng(0).normal(size=(3, 3)),
                        tf.float32)

  @tf.function(input_signature=[tf.TensorSpec(SHAPE, tf.float32,
                                              name='image')])
  def serve(image):
    return {'logits': tf.matmul(tf.reduce_mean(image, [1, 2, 3]), weights)}

  module = tf.Module()
  module.serve = serve
  tf.saved_model.save(module, str(path / 'saved'), signatures={
      'serving_default': serve.get_concrete_function()})
  converter = tf.lite.TFLiteConverter.from_saved_model(str(path / 'saved'))
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = lambda: (
      {'image': np.random.default_rng(seed).uniform(size=SHAPE).astype(
          np.float32)} for seed in range(8))
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = tf.uint8
  converter.inference_output_type = tf.int8
  (path / 'model.tflite').write_bytes(converter.convert())
  return serve


def test_integer_tensors_are_hidden_behind_float_ones(tmp_path):
  serve = _integer_model(tmp_path)
  runner = runners.TfliteBase(str(tmp_path / 'model.tflite'))
  assert runner.inputs['image']['dtype'] == np.uint8
  assert runner.outputs['logits']['dtype'] == np.int8
  assert runner.num_frames == 2
  clip = np.random.default_rng(9).uniform(size=SHAPE).astype(np.float32)
  logits = runner.logits(clip)
  assert logits.dtype == np.float32 and logits.shape == (3,)
  scale = runner.outputs['logits']['quantization'][0]
  np.testing.assert_allclose(logits, serve(clip)['logits'].numpy()[0],
                             atol=4 * scale)


def test_quantize_rounds_and_clips_to_the_tensor_s_type():
  detail = {'dtype': np.int8, 'quantization': (0.5, -3)}
  values = np.array([-1.0, 0.0, 2.5, 1000.0], np.float32)
  quantized = runners.quantize(values, detail)
  assert quantized.dtype == np.int8
  assert quantized.tolist() == [-5, -3, 2, 127]  # 1000 clipped to int8
  assert runners.dequantize(quantized, detail).tolist() == [
      -1.0, 0.0, 2.5, 65.0]
  counter = {'dtype': np.int32, 'quantization': (0.0, 0)}  # not quantized
  assert runners.quantize(np.array([4]), counter).dtype == np.int32
