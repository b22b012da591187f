"""Keras 3 MoViNet: backbones a0-a5 / t0, classifier, official checkpoints."""

from trainer.model.block_specs import MODEL_IDS
from trainer.model.checkpoint_convert import load_official_checkpoint
from trainer.model.losses import SparseCrossentropy
from trainer.model.movinet_backbone import MovinetBackbone
from trainer.model.movinet_classifier import (MovinetClassifier,
                                              build_movinet_classifier)

__all__ = ['MODEL_IDS', 'MovinetBackbone', 'MovinetClassifier',
           'SparseCrossentropy', 'build_movinet_classifier',
           'load_official_checkpoint']
