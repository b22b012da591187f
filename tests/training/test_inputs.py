"""A run's inputs check the rate the data was prepared at."""

import json
import logging
import os

import pytest

from tests.data.clips import write_prepared
from trainer import settings
from trainer.data import schema
from trainer.data.manifest import Manifest
from trainer.data.sampling import Sampling
from trainer.training import inputs
from trainer.training.config import InputsConfig


def _prepared_at(root, fps) -> Manifest:
  """A one-clip directory whose manifest says it kept `fps` (None: each
  video's own rate)."""
  data_dir = write_prepared(root, [[3]])
  path = os.path.join(data_dir, schema.MANIFEST_NAME)
  with open(path, encoding='utf-8') as f:
    manifest = json.load(f)
  manifest['frames']['fps'] = fps
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(manifest, f)
  return Manifest.read(data_dir)


@pytest.mark.parametrize('expected, fps, logged', [
    (5.0, 5.0, 'Clips: 8 frames 3 apart at 5 fps: 0.60 s between frames, '
     '4.20 s from first to last.'),
    (None, 5.0, 'at 5 fps: 0.60 s between frames'),
    (None, None, "Clips: 8 frames 3 apart at each video's own rate (e.g. at "
     '25 fps: 0.12 s between frames, 0.84 s from first to last).'),
])
def test_the_clips_span_is_logged(tmp_path, caplog, expected, fps, logged):
  config = InputsConfig(str(tmp_path), prepared_fps=expected,
                        sampling=Sampling(frame_step=3))
  with caplog.at_level(logging.INFO):
    inputs.check_frame_rate(config, _prepared_at(tmp_path, fps))
  assert any(logged in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize('fps, found', [
    (None, "prepared at each video's own rate (movinet-prepare --fps=0)"),
    (10.0, 'prepared at 10 fps (movinet-prepare --fps=10)'),
])
def test_data_prepared_at_another_rate_stops_the_run(tmp_path, fps, found):
  config = InputsConfig(str(tmp_path), prepared_fps=5,
                        sampling=Sampling(frame_step=3))
  with pytest.raises(settings.SettingError) as error:
    inputs.check_frame_rate(config, _prepared_at(tmp_path, fps))
  message = str(error.value)
  assert message.startswith(
      f'InputsConfig.prepared_fps=5 does not match {tmp_path}, {found}: '
      'frame_step=3 counts prepared frames')
  assert 'movinet-prepare --fps=5 into a new --output_dir' in message


@pytest.mark.parametrize('value, problem', [
    (0.0, 'must be a positive rate in frames per second, or None'),
    ('5', 'must be a float or None'),
])
def test_prepared_fps_is_checked(value, problem):
  with pytest.raises(settings.SettingError) as error:
    InputsConfig('d', prepared_fps=value)
  assert str(error.value) == f'InputsConfig.prepared_fps={value!r} {problem}'
