"""Classifying videos with a trained or exported MoViNet.

`StreamClassifier` (frame by frame, states inside) and `ClipClassifier`
(clips as evaluation takes them) over any model `load_model` reads: an
export's TFLite models or SavedModel, or a Keras model.
"""

from trainer.inference.classifiers import ClipClassifier
from trainer.inference.classifiers import StreamClassifier
from trainer.inference.models import LoadedModel
from trainer.inference.models import load_model

__all__ = ['ClipClassifier', 'LoadedModel', 'StreamClassifier',
           'load_model']
