"""The classifier's training loss, registered for `keras.saving`.

It lives beside the model so that a saved `.keras` model, which names its
compiled loss, loads with `import trainer.model` alone.
"""

import keras


@keras.saving.register_keras_serializable(package='movinet_trainer')
class SparseCrossentropy(keras.losses.Loss):
  """Cross-entropy of integer labels and logits, with label smoothing."""

  def __init__(self, num_classes: int, label_smoothing: float = 0.0,
               name: str = 'sparse_crossentropy', **kwargs):
    super().__init__(name=name, **kwargs)
    self.num_classes = num_classes
    self.label_smoothing = label_smoothing

  def call(self, y_true, y_pred):
    one_hot = keras.ops.one_hot(keras.ops.cast(y_true, 'int32'),
                                self.num_classes)
    return keras.losses.categorical_crossentropy(
        one_hot, keras.ops.cast(y_pred, 'float32'), from_logits=True,
        label_smoothing=self.label_smoothing)

  def get_config(self):
    return {**super().get_config(), 'num_classes': self.num_classes,
            'label_smoothing': self.label_smoothing}
