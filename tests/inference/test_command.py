"""movinet-classify on real videos: files, folders, URLs, a camera; its
outputs; inputs that fail while the others are classified."""

import io
import json
import shutil
import socket
import subprocess

import cv2
import numpy as np
import pytest

from tests import local_http
from tests.shared_export import EXPORT_GROUP
from tests.shared_export import LABELS
from tests.shared_export import VIDEO_FRAMES
from tests.shared_export import VIDEO_HW
from trainer import classify_main
from trainer.inference import batch
from trainer.inference import load_model
from trainer.inference import sources

XDIST_GROUP = EXPORT_GROUP


def classify(names, **settings):
  """`(exit status, stdout lines, stderr lines)` of the command, run
  in-process."""
  out, err = io.StringIO(), io.StringIO()
  status = classify_main.classify(
      [str(name) for name in names], classify_main.Settings(**settings),
      out=out, err=err)
  return status, out.getvalue().splitlines(), err.getvalue().splitlines()


def test_the_command_classifies_the_good_input_and_exits_1(stream_export,
                                                          videos):
  # A real process: its exit status and its stderr (started by conftest).
  stdout, stderr = stream_export.command.communicate(timeout=300)
  assert stream_export.command.returncode == 1, stderr
  assert stdout.splitlines()[0] == str(videos.a)
  assert stdout.splitlines()[1].split() == ['label', 'probability']
  assert len(stdout.splitlines()) == 4  # name, header, top 2
  errors = [line for line in stderr.splitlines()
            if line.startswith('movinet-classify: error:')]
  assert errors == [
      f'movinet-classify: error: {stream_export.missing}: no such file',
      f'movinet-classify: error: 1 of 2 inputs failed: '
      f'{stream_export.missing}']
  assert stderr.splitlines()[-1] == errors[-1]


def test_streaming_writes_json_plot_and_video(stream_export, videos,
                                              tmp_path):
  status, out, err = classify(
      [videos.a], model=stream_export.path, stream=True, top_k=2,
      output_json=str(tmp_path / 'out.json'),
      plot=str(tmp_path / 'plot.png'),
      output_video=str(tmp_path / 'annotated.mp4'))
  assert (status, err) == (0, [])
  record = json.loads((tmp_path / 'out.json').read_text())
  (video,) = record['videos']
  # 20 frames at 30 fps, every 3rd frame (frame_step) goes to the model.
  assert [step['source_frame'] for step in video['stream']] == list(
      range(0, VIDEO_FRAMES, 3))
  assert video['model_fps'] == 10.0
  assert len(out) == len(video['stream'])
  assert {entry['label'] for entry in video['top_k']} <= set(LABELS)
  assert video['top_k'] == video['stream'][-1]['top_k']
  assert (tmp_path / 'plot.png').read_bytes()[:4] == b'\x89PNG'
  capture = cv2.VideoCapture(str(tmp_path / 'annotated.mp4'))
  assert (capture.get(cv2.CAP_PROP_FRAME_COUNT),
          capture.get(cv2.CAP_PROP_FRAME_HEIGHT),
          capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == (VIDEO_FRAMES,
                                                    *VIDEO_HW)
  capture.release()
  assert sorted(path.name for path in tmp_path.iterdir()) == [
      'annotated.mp4', 'out.json', 'plot.png']  # no temporaries left


def test_a_folder_gives_its_videos_sorted_and_skips_other_files(
    stream_export, videos, tmp_path):
  folder = tmp_path / 'folder'
  shutil.copytree(videos.root, folder)
  (folder / 'notes.txt').write_text('not a video')
  (folder / 'more').mkdir()
  shutil.copy(videos.a, folder / 'more' / 'c.mp4')
  status, out, err = classify(
      [folder], model=stream_export.path, clips=2, top_k=1,
      output_json=str(tmp_path / 'out.json'),
      output_video=str(tmp_path / 'out.gif'))
  assert (status, err) == (0, [])
  names = [str(folder / 'a.mp4'), str(folder / 'b.mp4'),
           str(folder / 'more' / 'c.mp4')]
  assert out[0::3] == names  # a table of 3 lines per video
  record = json.loads((tmp_path / 'out.json').read_text())
  assert [video['input'] for video in record['videos']] == names
  assert all(len(video['clip_frames']) == 2 for video in record['videos'])
  for stem in ('a', 'b', 'c'):
    assert (tmp_path / f'out-{stem}.gif').read_bytes()[:3] == b'GIF'


def _closed_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def test_a_url_is_downloaded_and_one_that_does_not_answer_is_named(
    stream_export, videos):
  server = local_http.LocalHttpServer(videos.root)
  silent = f'http://127.0.0.1:{_closed_port()}/a.mp4'
  absent = f'{server.url}/absent.mp4'
  try:
    status, out, err = classify([f'{server.url}/a.mp4', silent, absent],
                                model=stream_export.path, top_k=1)
  finally:
    server.stop()
  assert status == 1
  assert out[0] == f'{server.url}/a.mp4'
  assert err[0].startswith(f'movinet-classify: error: {silent}: cannot '
                           'download it (')
  assert err[1] == (f'movinet-classify: error: {absent}: cannot download '
                    'it (HTTP 404 File not found)')
  assert err[-1] == ('movinet-classify: error: 2 of 3 inputs failed: '
                     f'{silent}, {absent}')


def test_what_is_no_video_is_named(stream_export, tmp_path):
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'notes.avi').write_text('not a video')
  status, out, err = classify([tmp_path / 'empty', tmp_path / 'notes.avi'],
                              model=stream_export.path)
  assert (status, out) == (1, [])
  assert err[0].startswith(f'movinet-classify: error: {tmp_path / "empty"}: '
                           'a folder with no videos in it (files ending in')
  assert err[1] == (f'movinet-classify: error: {tmp_path / "notes.avi"}: '
                    'not readable as a video (cannot open)')


def test_an_av1_video_is_read_as_preparation_reads_it(stream_export,
                                                     videos, tmp_path):
  """AV1 (what YouTube serves; OpenCV's FFmpeg has no decoder for it) is
  classified: the frames come through PyAV, as in `movinet-prepare`. The
  fixture is a real encode of `videos.a` by Debian's ffmpeg (libaom)."""
  av1 = tmp_path / 'a_av1.mp4'
  subprocess.run([shutil.which('ffmpeg') or 'ffmpeg', '-v', 'error', '-i',
                  str(videos.a), '-c:v', 'libaom-av1', '-usage', 'realtime',
                  '-cpu-used', '8', '-crf', '20', '-pix_fmt', 'yuv420p',
                  str(av1)], check=True)
  with sources.open_video(sources.VideoInput(str(av1), str(av1))) as video:
    frames = np.stack(list(video.frames()))
  with sources.open_video(sources.VideoInput('a', str(videos.a))) as video:
    reference = np.stack(list(video.frames()))
  assert frames.shape == reference.shape == (VIDEO_FRAMES, *VIDEO_HW, 3)
  # Two lossy encodes of the same frames (mp4v, then AV1 of its decode).
  assert np.abs(frames.astype(int) - reference).mean() < 6
  status, out, err = classify([av1], model=stream_export.path, top_k=1)
  assert (status, err, out[0]) == (0, [], str(av1))


def test_max_frames_ends_a_stream(stream_export, videos, tmp_path):
  status, out, _ = classify([videos.a], model=stream_export.path,
                            stream=True, max_frames=7,
                            output_json=str(tmp_path / 'out.json'))
  (video,) = json.loads((tmp_path / 'out.json').read_text())['videos']
  assert (status, video['source_frames']) == (0, 7)
  assert [step['source_frame'] for step in video['stream']] == [0, 3, 6]
  assert [line.split()[1] for line in out] == ['0.00s', '0.10s', '0.20s']


def test_a_camera_that_cannot_be_opened_is_one_line(stream_export):
  status, out, err = classify([], model=stream_export.path, camera=9,
                              stream=True)
  assert (status, out) == (1, [])
  assert err == [
      'movinet-classify: error: camera:9: the camera cannot be opened; '
      'check --camera=9 (0 is the first camera)',
      'movinet-classify: error: 1 of 1 inputs failed: camera:9']


def test_streaming_needs_a_stream_model(base_model, videos):
  model = load_model(base_model)
  with pytest.raises(ValueError, match='is a base model'):
    batch.classify_all(model, sources.expand_inputs([videos.a]),
                       batch.Options(stream=True), print, print)
