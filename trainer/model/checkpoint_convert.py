"""Loads official MoViNet checkpoints (tf-models-official) into this model.

The official checkpoints are object-based TensorFlow checkpoints of a tf_keras
`MovinetClassifier`, saved as `tf.train.Checkpoint(model=model)` (keys
`model/layer_with_weights-0/...` for the backbone, `model/layer_with_weights-1/`
for the classifier head). Checkpoints written by the Model Garden trainer
also track the backbone on its own, so its variables are stored under
`backbone/...`. Both are read here with TensorFlow's checkpoint reader alone:
tf-models-official is not needed.

Every variable of this model is paired with one key, whose shape must be
equal; every model variable of the checkpoint must be used (the head's may be
left out on purpose with `include_head=False`). Nothing is assigned unless the
whole pairing holds.
"""

from typing import Dict, Iterator, List, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from trainer import files
from trainer.model.checkpoint_source import resolve_checkpoint
from trainer.model.conv_block import ConvBlock
from trainer.model.movinet_classifier import MovinetClassifier

BACKBONE_ROOTS = ('model/layer_with_weights-0/', 'backbone/')
HEAD_ROOT = 'model/layer_with_weights-1/'
VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
BATCH_NORM_WEIGHTS = ('gamma', 'beta', 'moving_mean', 'moving_variance')
_MAX_NAMES = 12

Pairs = Iterator[Tuple[str, object]]


def _conv_block_pairs(block: ConvBlock, path: str) -> Pairs:
  """Official paths of a `ConvBlock`'s variables, below `path`."""
  wrapped = block.conv_type == '2plus1d'  # official MobileConv2D nests _conv
  for conv, attr in ((block.conv, '_conv'),
                     (block.conv_temporal, '_conv_temporal')):
    if conv is None:
      continue
    prefix = f'{path}{attr}/' + ('_conv/' if wrapped else '')
    kernel = 'depthwise_kernel' if wrapped and conv.depthwise else 'kernel'
    yield prefix + kernel, conv.kernel
    if conv.bias is not None:
      yield prefix + 'bias', conv.bias
  for bn, attr in ((block.bn, '_batch_norm'),
                   (block.bn_temporal, '_batch_norm_temporal')):
    if bn is not None:
      for weight in BATCH_NORM_WEIGHTS:
        yield f'{path}{attr}/{weight}', getattr(bn, weight)


def backbone_pairs(backbone) -> Pairs:
  """Official paths (below the backbone root) of the backbone's variables."""
  yield from _conv_block_pairs(backbone.stem, 'layer_with_weights-0/_stem/')
  for index, block in enumerate(backbone.blocks, start=1):
    path = f'layer_with_weights-{index}/'
    yield from _conv_block_pairs(block.expansion, path + '_expansion/')
    yield from _conv_block_pairs(block.feature, path + '_feature/')
    if block.attention is not None:
      se = block.attention
      yield from _conv_block_pairs(se.se_reduce,
                                   path + '_attention/_se_reduce/')
      yield from _conv_block_pairs(se.se_expand,
                                   path + '_attention/_se_expand/')
      if se.pos_encoding is not None:
        yield (path + '_attention/_pos_encoding/_rezero/scale',
               se.pos_encoding.scale)
    yield from _conv_block_pairs(block.projection, path + '_projection/')
    yield path + '_mobile_bottleneck/_rezero/scale', block.rezero
    if block.skip is not None:
      yield from _conv_block_pairs(block.skip, path + '_skip/_projection/')
  head_path = f'layer_with_weights-{len(backbone.blocks) + 1}/_project/'
  yield from _conv_block_pairs(backbone.head_project, head_path)


def head_pairs(model: MovinetClassifier) -> Pairs:
  """Official paths (below `HEAD_ROOT`) of the classifier head's variables."""
  yield from _conv_block_pairs(model.head, '_head/')
  yield from _conv_block_pairs(model.classifier, '_classifier/')


def _is_model_variable(key: str) -> bool:
  return (key.startswith(BACKBONE_ROOTS + (HEAD_ROOT,)) and
          key.endswith(VALUE_SUFFIX) and '.OPTIMIZER_SLOT' not in key)


def _listing(names: List[str]) -> str:
  shown = ', '.join(names[:_MAX_NAMES])
  more = len(names) - _MAX_NAMES
  return shown + (f' (and {more} more)' if more > 0 else '')


def _pair_with_checkpoint(model, shapes: Dict[str, List[int]],
                          include_head: bool):
  """Returns `[(key, variable)]`, or raises ValueError naming the problems."""
  pairs, missing, mismatched = [], [], []  # names of the problem variables
  for path, variable in backbone_pairs(model.backbone):
    keys = [root + path + VALUE_SUFFIX for root in BACKBONE_ROOTS]
    found = [key for key in keys if key in shapes]
    if not found:
      missing.append(BACKBONE_ROOTS[0] + path)
      continue
    pairs.append((found[0], variable))
  if include_head:
    for path, variable in head_pairs(model):
      key = HEAD_ROOT + path + VALUE_SUFFIX
      if key not in shapes:
        missing.append(HEAD_ROOT + path)
        continue
      pairs.append((key, variable))
  for key, variable in pairs:
    if tuple(shapes[key]) != tuple(variable.shape):
      mismatched.append(f'{key[:-len(VALUE_SUFFIX)]} {tuple(shapes[key])} '
                        f'vs model {tuple(variable.shape)}')

  used = {key for key, _ in pairs}
  unused = sorted(
      key[:-len(VALUE_SUFFIX)] for key in shapes
      if _is_model_variable(key) and key not in used and
      (include_head or not key.startswith(HEAD_ROOT)))
  head_only = all(name.startswith(HEAD_ROOT)
                  for name in missing + mismatched + unused)
  problems = []
  if missing:
    problems.append(f'{len(missing)} model variable(s) missing from the '
                    f'checkpoint: {_listing(missing)}')
  if mismatched:
    problems.append(f'{len(mismatched)} shape mismatch(es): '
                    f'{_listing(mismatched)}')
  if unused:
    problems.append(f'{len(unused)} checkpoint variable(s) unused by the '
                    f'model: {_listing(unused)}')
  return pairs, problems, head_only


def load_official_checkpoint(model: MovinetClassifier,
                             source: str,
                             include_head: bool = True,
                             cache_dir: str = None) -> MovinetClassifier:
  """Copies an official MoViNet checkpoint's weights into `model`.

  Args:
    model: a built `MovinetClassifier` of the same model id and variant
      (base or stream) as the checkpoint.
    source: a checkpoint prefix or directory, a `.tar.gz` archive such as the
      official `movinet_a0_base.tar.gz`, or an http(s) URL of one (downloaded
      once into the cache).
    include_head: also load the classifier head; False loads the backbone
      only, to fine-tune a new head on new classes.
    cache_dir: where downloads and extracted archives are kept.

  Returns:
    `model`, with the weights loaded.

  Raises:
    ValueError: the source cannot be read, or it does not match the model
      (missing, unused or differently shaped variables, all named); the model
      is then left unchanged.
  """
  if not model.built:
    raise ValueError('Build the model before loading a checkpoint '
                     '(build_movinet_classifier returns a built model).')
  prefix = resolve_checkpoint(source, cache_dir=cache_dir)
  try:
    reader = files.checkpoint_reader(prefix)
    shapes = reader.get_variable_to_shape_map()
  except (tf.errors.OpError, ValueError) as error:
    raise ValueError(f'Cannot read checkpoint {source!r} ({prefix}): '
                     f'{error}') from error
  pairs, problems, head_only = _pair_with_checkpoint(model, shapes,
                                                     include_head)
  if problems:
    hint = (' Only the classifier head differs: pass include_head=False to '
            'load the backbone and train a new head.' if head_only else
            ' Build the model with the model_id, variant (base or '
            'stream=True) and overrides (conv_type, se_type, ...) that the '
            'checkpoint was trained with.')
    raise ValueError(
        f'Checkpoint {source!r} does not match MoViNet '
        f'{model.backbone.model_id!r} (conv_type={model.backbone.conv_type!r},'
        f' causal={model.backbone.causal}): ' + '; '.join(problems) + '.' +
        hint)
  try:
    values = [reader.get_tensor(key) for key, _ in pairs]
  except (tf.errors.OpError, IndexError, ValueError, OSError) as error:
    # A truncated data file surfaces as IndexError from the reader.
    raise ValueError(f'Checkpoint {source!r} is corrupt: {error}') from error
  for (_, variable), value in zip(pairs, values):
    variable.assign(np.asarray(value, dtype=variable.dtype))
  logging.info('Loaded %d variables from %s%s.', len(pairs), prefix,
               '' if include_head else ' (backbone only)')
  return model
