"""`Sampling` checks every field where it is made."""

import pytest

from trainer.settings import SettingError
from trainer.data.sampling import Sampling


def test_defaults_are_the_recipes():
  assert Sampling() == Sampling(num_frames=8, frame_step=15, image_size=172,
                                train_resize='crop', eval_resize='crop',
                                min_crop_area=0.3, flip=True)


@pytest.mark.parametrize('field, value, message', [
    ('num_frames', 0, 'Sampling.num_frames=0 must be at least 1'),
    ('num_frames', '8', "Sampling.num_frames='8' must be an int"),
    ('frame_step', 2.0, 'Sampling.frame_step=2.0 must be an int'),
    ('image_size', -1, 'Sampling.image_size=-1 must be at least 1'),
    ('flip', 1, 'Sampling.flip=1 must be a bool'),
    ('train_resize', 'x', "Sampling.train_resize='x' is not one of crop, pad"),
    ('eval_resize', 'stretch',
     "Sampling.eval_resize='stretch' is not one of crop, pad"),
    ('min_crop_area', 0.0, 'Sampling.min_crop_area=0.0 must lie in (0, 1]'),
    ('min_crop_area', 1.5, 'Sampling.min_crop_area=1.5 must lie in (0, 1]'),
    ('min_crop_area', '0.3', "Sampling.min_crop_area='0.3' must be a float"),
])
def test_a_bad_field_is_named_with_its_value(field, value, message):
  with pytest.raises(SettingError) as error:
    Sampling(**{field: value})
  assert str(error.value) == message
  assert (error.value.name, error.value.value) == (field, value)


def test_an_int_crop_area_is_a_float():
  assert Sampling(min_crop_area=1).min_crop_area == 1
