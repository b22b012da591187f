"""Typed settings: frozen dataclasses checked once, when they are made.

Every setting object of the package (the trainer's experiment config, the
data pipeline's `Sampling`, preparation's settings) checks its own values in
`__post_init__` and raises `SettingError`, whose message names the setting,
its value and what it must be: `InputsConfig.batch_size='four' must be an
int`. A command renames the owner to what its users type (`movinet-train`:
`build_inputs.batch_size='four' must be an int`).
"""

import dataclasses
import types
import typing
from typing import Any, Iterable, Union


class SettingError(ValueError):
  """A setting with a value it cannot have.

  Attributes:
    owner: what holds the setting (a class name, or the name users bind).
    name: the setting.
    value: its value.
    problem: what it must be instead, e.g. 'must be at least 1'.
  """

  def __init__(self, owner: str, name: str, value: Any, problem: str):
    super().__init__(owner, name, value, problem)
    self.owner, self.name, self.value, self.problem = (owner, name, value,
                                                       problem)

  def __str__(self) -> str:
    return f'{self.owner}.{self.name}={self.value!r} {self.problem}'

  def renamed(self, owner: str) -> 'SettingError':
    """The same error, with `owner` as the setting's owner."""
    renamed = SettingError(owner, self.name, self.value, self.problem)
    renamed.__cause__ = self.__cause__
    return renamed


def _describe(expected) -> str:
  """'an int', 'a float', 'a str or None', ... for an annotation."""
  if typing.get_origin(expected) in (Union, types.UnionType):
    return ' or '.join(_describe(a) for a in typing.get_args(expected))
  if expected is types.NoneType:
    return 'None'
  name = getattr(typing.get_origin(expected) or expected, '__name__',
                 str(expected))
  article = 'an' if name[0] in 'aeiou' else 'a'
  return f'{article} {name}'


def _is_instance(value, expected) -> bool:
  """Whether `value` is of the annotation `expected` (see `check_types`)."""
  if expected is Any:
    return True
  origin = typing.get_origin(expected)
  if origin in (Union, types.UnionType):
    return any(_is_instance(value, a) for a in typing.get_args(expected))
  if expected is types.NoneType:
    return value is None
  if expected is bool:
    return isinstance(value, bool)
  if expected is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if expected is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  return isinstance(value, origin or expected)


def check_types(instance) -> None:
  """Raises SettingError for the first field of the dataclass `instance`
  whose value is not of its annotated type (a bool is not an int; an int is
  a float)."""
  hints = typing.get_type_hints(type(instance))
  for field in dataclasses.fields(instance):
    value = getattr(instance, field.name)
    if not _is_instance(value, hints[field.name]):
      raise SettingError(type(instance).__name__, field.name, value,
                         f'must be {_describe(hints[field.name])}')


def check_choice(instance, name: str, choices: Iterable[str]) -> None:
  """Raises SettingError unless `instance.<name>` is one of `choices`."""
  choices = tuple(choices)
  value = getattr(instance, name)
  if value not in choices:
    raise SettingError(type(instance).__name__, name, value,
                       f'is not one of {", ".join(choices)}')


def check_at_least(instance, low, *names: str) -> None:
  """Raises SettingError for the first of `names` below `low` (None, for
  an optional setting, passes)."""
  for name in names:
    value = getattr(instance, name)
    if value is not None and value < low:
      raise SettingError(type(instance).__name__, name, value,
                         f'must be at least {low}')
