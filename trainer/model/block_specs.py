"""MoViNet architectures as data: the official block specs of a0-a5 and t0.

Each model is a stem, five stages of bottleneck layers, and a head. A kernel or
stride is written `(frames, height, width)`.
"""

import dataclasses
from typing import Tuple

KernelSize = Tuple[int, int, int]

# K<t><s>: a (t, s, s) kernel; S<t><s>: a (t, s, s) stride.
K13: KernelSize = (1, 3, 3)
K15: KernelSize = (1, 5, 5)
K33: KernelSize = (3, 3, 3)
K53: KernelSize = (5, 3, 3)
S11: KernelSize = (1, 1, 1)
S12: KernelSize = (1, 2, 2)


@dataclasses.dataclass(frozen=True)
class StemSpec:
  """The first convolution: `filters` outputs, `kernel_size`, `strides`."""
  filters: int
  kernel_size: KernelSize
  strides: KernelSize


@dataclasses.dataclass(frozen=True)
class StageSpec:
  """A stage of bottleneck layers sharing `base_filters` output channels.

  Layer `i` expands to `expand_filters[i]` channels and runs a depthwise
  convolution of `kernel_sizes[i]` with `strides[i]`.
  """
  base_filters: int
  expand_filters: Tuple[int, ...]
  kernel_sizes: Tuple[KernelSize, ...]
  strides: Tuple[KernelSize, ...]

  def __post_init__(self):
    lengths = {len(self.expand_filters), len(self.kernel_sizes),
               len(self.strides)}
    if len(lengths) != 1:
      raise ValueError(
          f'StageSpec fields must have one entry per layer; got '
          f'{len(self.expand_filters)} expand_filters, '
          f'{len(self.kernel_sizes)} kernel_sizes, '
          f'{len(self.strides)} strides.')

  @property
  def layers(self):
    """Yields `(expand_filters, kernel_size, strides)` per layer."""
    return zip(self.expand_filters, self.kernel_sizes, self.strides)


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """Pointwise projection to `project_filters`; classifier hidden width."""
  project_filters: int
  head_filters: int


@dataclasses.dataclass(frozen=True)
class ArchitectureSpec:
  stem: StemSpec
  stages: Tuple[StageSpec, ...]
  head: HeadSpec

  @property
  def num_layers(self) -> int:
    return sum(len(stage.expand_filters) for stage in self.stages)


def _stage(base_filters, expand_filters, kernel_sizes, strides):
  return StageSpec(base_filters, tuple(expand_filters), tuple(kernel_sizes),
                   tuple(strides))


def _rest(count):
  """`count` layers of stride 1 after a stage's first layer."""
  return (S11,) * count


ARCHITECTURES = {
    'a0': ArchitectureSpec(
        StemSpec(8, K13, S12),
        (
            _stage(8, (24,), (K15,), (S12,)),
            _stage(32, (80, 80, 80), (K33, K33, K33), (S12,) + _rest(2)),
            _stage(56, (184, 112, 184), (K53, K33, K33), (S12,) + _rest(2)),
            _stage(56, (184, 184, 184, 184), (K53, K33, K33, K33), _rest(4)),
            _stage(104, (384, 280, 280, 344), (K53, K15, K15, K15),
                   (S12,) + _rest(3)),
        ),
        HeadSpec(480, 2048)),
    'a1': ArchitectureSpec(
        StemSpec(16, K13, S12),
        (
            _stage(16, (40, 40), (K15, K33), (S12,) + _rest(1)),
            _stage(40, (96, 120, 96, 96), (K33,) * 4, (S12,) + _rest(3)),
            _stage(64, (216, 128, 216, 168, 216), (K53,) + (K33,) * 4,
                   (S12,) + _rest(4)),
            _stage(64, (216, 216, 216, 128, 128, 216),
                   (K53, K33, K33, K33, K15, K33), _rest(6)),
            _stage(136, (456, 360, 360, 360, 456, 456, 544),
                   (K53, K15, K15, K15, K15, K33, K13), (S12,) + _rest(6)),
        ),
        HeadSpec(600, 2048)),
    'a2': ArchitectureSpec(
        StemSpec(16, K13, S12),
        (
            _stage(16, (40, 40, 64), (K15, K33, K33), (S12,) + _rest(2)),
            _stage(40, (96, 120, 96, 96, 120), (K33,) * 5, (S12,) + _rest(4)),
            _stage(72, (240, 160, 240, 192, 240), (K53,) + (K33,) * 4,
                   (S12,) + _rest(4)),
            _stage(72, (240, 240, 240, 240, 144, 240),
                   (K53, K33, K33, K33, K15, K33), _rest(6)),
            _stage(144, (480, 384, 384, 480, 480, 480, 576),
                   (K53, K15, K15, K15, K15, K33, K13), (S12,) + _rest(6)),
        ),
        HeadSpec(640, 2048)),
    'a3': ArchitectureSpec(
        StemSpec(16, K13, S12),
        (
            _stage(16, (40, 40, 64, 40), (K15, K33, K33, K33),
                   (S12,) + _rest(3)),
            _stage(48, (112, 144, 112, 112, 144, 144),
                   (K33, K33, K33, K15, K33, K33), (S12,) + _rest(5)),
            _stage(80, (240, 152, 240, 192, 240), (K53,) + (K33,) * 4,
                   (S12,) + _rest(4)),
            _stage(88, (264, 264, 264, 264, 160, 264, 264, 264),
                   (K53, K33, K33, K33, K15, K33, K33, K33), _rest(8)),
            _stage(168, (560, 448, 448, 560, 560, 560, 448, 448, 560, 672),
                   (K53, K15, K15, K15, K15, K33, K15, K15, K33, K13),
                   (S12,) + _rest(9)),
        ),
        HeadSpec(744, 2048)),
    'a4': ArchitectureSpec(
        StemSpec(24, K13, S12),
        (
            _stage(24, (64, 64, 96, 64, 96, 64), (K15,) + (K33,) * 5,
                   (S12,) + _rest(5)),
            _stage(56, (168, 168, 136, 136, 168, 168, 168, 136, 136),
                   (K33,) * 7 + (K15, K33), (S12,) + _rest(8)),
            _stage(96, (320, 160, 320, 192, 320, 160, 320, 256, 320),
                   (K53,) + (K33,) * 8, (S12,) + _rest(8)),
            _stage(96, (320, 320, 320, 320, 192, 320, 320, 192, 320, 320),
                   (K53, K33, K33, K33, K15) + (K33,) * 5, _rest(10)),
            _stage(192, (640, 512, 512, 640, 640, 640, 512, 512, 640, 768,
                         640, 640, 768),
                   (K53, K15, K15, K15, K15, K33, K15, K15, K15, K15, K15,
                    K33, K33), (S12,) + _rest(12)),
        ),
        HeadSpec(856, 2048)),
    'a5': ArchitectureSpec(
        StemSpec(24, K13, S12),
        (
            _stage(24, (64, 64, 96, 64, 96, 64), (K15, K15) + (K33,) * 4,
                   (S12,) + _rest(5)),
            _stage(64, (192, 152, 152, 152, 192, 192, 192, 152, 152, 192,
                        192), (K53,) + (K33,) * 10, (S12,) + _rest(10)),
            _stage(112, (376, 224, 376, 376, 296, 376, 224, 376, 376, 296,
                         376, 376, 376), (K53,) + (K33,) * 12,
                   (S12,) + _rest(12)),
            _stage(120, (376, 376, 376, 376, 224, 376, 376, 224, 376, 376,
                         376), (K53, K33, K33, K33, K15) + (K33,) * 6,
                   _rest(11)),
            _stage(224, (744, 744, 600, 600, 744, 744, 744, 896, 600, 600,
                         896, 744, 744, 896, 600, 600, 744, 744),
                   (K53, K33, K15, K15, K15, K15, K33, K15, K15, K15, K15,
                    K15, K33, K15, K15, K15, K15, K33), (S12,) + _rest(17)),
        ),
        HeadSpec(992, 2048)),
    't0': ArchitectureSpec(
        StemSpec(8, K13, S12),
        (
            _stage(8, (16,), (K15,), (S12,)),
            _stage(32, (72, 72), (K33, K15), (S12,) + _rest(1)),
            _stage(56, (112, 112, 112), (K53, K15, K33), (S12,) + _rest(2)),
            _stage(56, (184, 184, 184, 184), (K53, K15, K33, K33), _rest(4)),
            _stage(104, (344, 344, 344, 344), (K53, K15, K15, K33),
                   (S12,) + _rest(3)),
        ),
        HeadSpec(240, 1024)),
}

MODEL_IDS = tuple(ARCHITECTURES)
CONV_TYPES = ('3d', '2plus1d', '3d_2plus1d')
SE_TYPES = ('3d', '2d', '2plus3d', 'none')
POOLING_TYPES = ('3d', '2d', 'none')


def check_choice(name: str, value, allowed) -> None:
  """Raises ValueError naming argument `name` unless `value` is in `allowed`."""
  if value not in allowed:
    raise ValueError(
        f'{name}={value!r} is not supported; choose one of {tuple(allowed)}.')


def get_architecture(model_id: str) -> ArchitectureSpec:
  """Returns the spec of `model_id` ('a0'..'a5', 't0')."""
  check_choice('model_id', model_id, MODEL_IDS)
  return ARCHITECTURES[model_id]
