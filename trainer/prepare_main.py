r"""movinet-prepare: videos -> TFRecord shards + `manifest.json`.

  movinet-prepare --output_dir=/data/synthetic                  # 4 classes
  movinet-prepare --source=folder --video_dir=/videos --output_dir=/data/mine
  movinet-prepare --source=ucf101 --num_classes=10 --split_by=group \
      --output_dir=/data/ucf101_10
  movinet-prepare --verify --output_dir=/data/mine   # shards vs manifest

List the source, pick classes, split, then cut each split into shards of
`--shard_clips` videos, written by `--workers` processes
(`trainer.data.prepare`). Videos are decoded by OpenCV, else by PyAV (AV1),
as a stream: a video longer than `--max_seconds` becomes consecutive
records, and a worker's memory does not grow with a video's length; the
manifest names the decoder of each video, and each video left out with its
reason ('codec av1: no decoder', 'truncated after frame 37', ...).
Rerunning the same command resumes, and gives bytes identical to an
uninterrupted run; other flags into the same `--output_dir` are refused.
Only the command's own files are written or deleted: the shards,
`manifest.json`, `.prepare/` and (synthetic) `source_videos/`; a non-empty
`--output_dir` that is not a previous preparation is refused unless
`--overwrite`.

Exit status: 0 done (or, with --verify, every shard matches); 1 bad flags, a
source that cannot be read, or (with --verify) shards that do not match
their manifest: one line on stderr says what to change.
"""

import dataclasses
import sys

from absl import flags
from absl import logging

from trainer import command_line
from trainer.data import prepare as prepare_lib
from trainer.data import prepare_settings
from trainer.data import sources
from trainer.data.prepare_settings import PrepareError
from trainer.data.prepare_settings import PrepareSettings


def _define_flags() -> None:
  """Defines the flags; called by `run` only, so importing defines none."""
  f = flags
  f.DEFINE_enum('source', 'synthetic', prepare_settings.SOURCES,
                'Where videos come from.')
  f.DEFINE_string('output_dir', None, 'Folder for shards and manifest.json.')
  f.mark_flag_as_required('output_dir')
  f.DEFINE_bool('verify', False, 'Only check the shards of --output_dir '
                'against its manifest (sha256) and exit non-zero naming the '
                'bad ones; prepares nothing.')
  f.DEFINE_string('video_dir', None,
                  '--source=folder: video_dir/<class>/<video>.')
  f.DEFINE_string('ucf101_url', sources.DEFAULT_UCF101_URL,
                  '--source=ucf101: zip URL; must answer HTTP Range requests.')
  f.DEFINE_integer('num_classes', None,
                   'Classes to keep (first N sorted); synthetic: 4 (2..6), '
                   'else all.')
  f.DEFINE_string('splits', None,
                  'Videos per class per split, seeded. Default train:48,'
                  'test:16 for synthetic (learnable, honest test), else '
                  'train:30,test:20. Ignored with --split_by=group.')
  f.DEFINE_enum('split_by', 'count', prepare_settings.SPLIT_BY,
                'count: --splits per class; group: official UCF101 fold, '
                'no group in two splits.')
  f.DEFINE_integer('fold', 1, '--split_by=group: UCF101 fold 1..3.')
  f.DEFINE_integer('seed', 0, 'Seed for splits, shard order, synthetic.')
  f.DEFINE_float('fps', 0,
                 'Keep this many frames per second (0: the source rate); '
                 'frame_step counts them (UCF101 recipes: 5, every 3rd).')
  f.DEFINE_integer('short_side', None,
                   'Downscale so the short side is at most this many px; '
                   'never upscale (a smaller video keeps its size); 0 keeps '
                   'every size. Default 256 for all sources: MoViNet trains '
                   'on 172-320 px crops and random-resized crops need '
                   'margin; upscaling adds bytes, not information.')
  f.DEFINE_integer('jpeg_quality', 90, 'JPEG quality 1..100.')
  f.DEFINE_integer('shard_clips', 64, 'Videos per shard (with their records).')
  f.DEFINE_integer('num_shards', None, 'Shards per split (overrides '
                   '--shard_clips).')
  f.DEFINE_integer('workers', None, 'Processes; default os.cpu_count().')
  f.DEFINE_integer('min_frames', 8,
                   'Skip videos with fewer frames (after --fps); shorter '
                   'clips still work, the pipeline loops them.')
  f.DEFINE_float('max_seconds', prepare_settings.DEFAULT_MAX_SECONDS,
                 'Cut longer videos into consecutive records (video/segment '
                 '0, 1, ...; a rest under --min_frames joins the last), all '
                 'in one split. 0: one record per video, however long.')
  f.DEFINE_string('synthetic_dir', None, 'Cache of generated videos; '
                  'default output_dir/source_videos.')
  f.DEFINE_integer('synthetic_frames', prepare_settings.SYNTHETIC_FRAMES,
                   'Frames per synthetic video.')
  f.DEFINE_list('synthetic_size',
                [str(v) for v in prepare_settings.SYNTHETIC_SIZE],
                'Synthetic height,width in px.')
  f.DEFINE_float('synthetic_fps', prepare_settings.SYNTHETIC_FPS,
                 'Synthetic frame rate.')
  f.DEFINE_boolean('overwrite', False,
                   'Prepare into a non-empty --output_dir that is not a '
                   'previous preparation: its entries stay (none is '
                   'deleted), files named as a shard are replaced.')


def _verify_main(output_dir: str) -> None:
  """`--verify`: exits non-zero naming the bad shards, else logs success."""
  try:
    problems = prepare_lib.verify(output_dir)
  except PrepareError as e:
    sys.exit(f'movinet-prepare: error: {e}')
  if problems:
    sys.exit(f'movinet-prepare: error: {len(problems)} shard(s) of '
             f'{output_dir} do not match its manifest: '
             f'{", ".join(problems)}; rerun movinet-prepare with the same '
             'flags into a new --output_dir to repair them.')
  logging.info('Every shard of %s matches its manifest.', output_dir)


def main(argv):
  del argv
  values = flags.FLAGS
  if values.verify:
    _verify_main(values.output_dir)
    return
  settings = {field.name: values[field.name].value
              for field in dataclasses.fields(PrepareSettings)}
  try:
    prepare_lib.prepare(**settings)
  except (PrepareError, sources.RemoteArchiveError) as e:
    sys.exit(f'movinet-prepare: error: {e}')


def run():
  """The `movinet-prepare` console script."""
  _define_flags()
  command_line.run_command(main, __name__)


if __name__ == '__main__':
  run()
