"""The tf.data pipeline reads prepared shards back into the right clips."""

import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.data.clips import collect
from tests.data.clips import frame
from tests.data.clips import frame_indices
from tests.data.clips import write_prepared
from trainer import settings
from trainer.data import schema
from trainer.data import shard_reader
from trainer.data.manifest import Manifest
from trainer.data.pipeline import eval_dataset
from trainer.data.pipeline import train_dataset
from trainer.data.sampling import Sampling

SIZE = 32


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """Two shards; clips of 20 frames except one short 7-frame clip (label 2)."""
  return Manifest.read(write_prepared(tmp_path_factory.mktemp('prepared'),
                                      [[20, 20, 7], [20, 20, 20]]))


def _sampling(**fields):
  return Sampling(**dict(dict(num_frames=4, frame_step=5, image_size=SIZE),
                         **fields))


@pytest.mark.parametrize('problem', ['no_dir', 'no_manifest', 'bad_manifest',
                                     'no_split', 'no_shard'])
def test_missing_inputs_name_path_and_fix(tmp_path, problem):
  data_dir = write_prepared(tmp_path / 'd', [[3], [3]])
  expected, fix = data_dir, 'movinet-prepare --output_dir='
  if problem == 'no_dir':
    data_dir = expected = str(tmp_path / 'absent')
  elif problem == 'no_manifest':
    os.remove(os.path.join(data_dir, schema.MANIFEST_NAME))
    expected = os.path.join(data_dir, schema.MANIFEST_NAME)
  elif problem == 'bad_manifest':
    expected = os.path.join(data_dir, schema.MANIFEST_NAME)
    with open(expected, 'w', encoding='utf-8') as f:
      f.write('{"labels": [')  # cut short, as by a full disk
  elif problem == 'no_split':
    fix = "it has ['train']"
  else:
    expected = os.path.join(data_dir, schema.shard_name('train', 1, 2))
    os.remove(expected)
    fix = 'new --output_dir'
  split = 'validation' if problem == 'no_split' else 'train'
  with pytest.raises(ValueError) as error:
    train_dataset(Manifest.read(data_dir), split, Sampling(), batch_size=1,
                  seed=0, epoch=0)
  assert expected in str(error.value) and fix in str(error.value)
  if problem == 'no_split':
    assert "split='validation'" in str(error.value)


@pytest.mark.parametrize('function, argument, value, problem', [
    (train_dataset, 'batch_size', 0, 'must be at least 1'),
    (train_dataset, 'shuffle_buffer', 0, 'must be at least 1'),
    (train_dataset, 'seed', '1', 'must be an int'),
    (train_dataset, 'epoch', -1, 'must be at least 0'),
    (train_dataset, 'skip_steps', -1, 'must be at least 0'),
    (eval_dataset, 'batch_size', 2.0, 'must be an int'),
    (eval_dataset, 'clips', 0, 'must be at least 1'),
])
def test_bad_arguments_are_named(prepared, function, argument, value,
                                 problem):
  kwargs = {'batch_size': 2, argument: value}
  if function is train_dataset:
    kwargs = {'seed': 1, 'epoch': 0, **kwargs}
  with pytest.raises(settings.SettingError) as error:
    function(prepared, 'train', Sampling(), **kwargs)
  assert str(error.value) == (
      f'{function.__name__}.{argument}={value!r} {problem}')


@pytest.mark.parametrize('flip', [False, True])
def test_train_batches_sample_spaced_frames_from_a_random_start(prepared, flip):
  dataset = train_dataset(prepared, 'train', _sampling(flip=flip),
                          batch_size=2, seed=3, epoch=0)
  assert dataset.element_spec[0].shape.as_list() == [2, 4, SIZE, SIZE, 3]
  videos, labels = collect(dataset)
  assert videos.dtype == np.float32 and labels.dtype == np.int32
  assert 0.0 <= videos.min() and videos.max() <= 1.0
  assert sorted(labels) == list(range(6))
  for video, label in zip(videos, labels):
    indices = frame_indices(video)
    if label == 2:  # 7 frames: start 0, looped
      np.testing.assert_array_equal(indices, [0, 5, 3, 1])
    else:  # span 16 of 20 frames: start in 0..4
      assert 0 <= indices[0] <= 4
      np.testing.assert_array_equal(indices, indices[0] + [0, 5, 10, 15])
    # Red grows to the right unless the clip was flipped; never per frame.
    slopes = np.sign(video[:, :, -1, 0].mean(-1) - video[:, :, 0, 0].mean(-1))
    assert len(set(slopes)) == 1
    if not flip:
      assert slopes[0] == 1


def test_train_resize_pad_is_the_tutorials_whole_padded_frame(prepared):
  # The tutorial's training input: each sampled frame through
  # tf.image.resize_with_pad, nothing cropped, nothing flipped.
  dataset = train_dataset(prepared, 'train',
                          _sampling(train_resize='pad', flip=False),
                          batch_size=6, seed=3, epoch=0)
  videos, labels = collect(dataset)
  assert videos.shape == (6, 4, SIZE, SIZE, 3)
  for video, label in zip(videos, labels):
    indices = frame_indices(video)
    if label != 2:
      assert 0 <= indices[0] <= 4
    frames = np.stack([frame(t) for t in indices])
    expected = tf.image.resize_with_pad(
        tf.image.convert_image_dtype(frames, tf.float32), SIZE, SIZE).numpy()
    # Equal up to JPEG rounding; 48x64 letterboxed: rows 0..3 black.
    np.testing.assert_allclose(video, expected, atol=6 / 255)
    assert video[:, :4].max() == 0 and video[:, -4:].max() == 0
    # The whole width is there: red runs from 0 to 255 in every frame.
    assert video[:, SIZE // 2, 0, 0].max() < 8 / 255
    assert video[:, SIZE // 2, -1, 0].min() > 247 / 255


@pytest.mark.parametrize('eval_resize', ['crop', 'pad'])
@pytest.mark.parametrize('num_clips,expected', [
    (1, [5, 8, 11, 14]),  # middle: span 10 of 20, start 5
    (3, [[1, 4, 7, 10], [5, 8, 11, 14], [8, 11, 14, 17]]),
])
def test_eval_takes_evenly_spaced_clips(prepared, eval_resize, num_clips,
                                        expected):
  dataset = eval_dataset(prepared, 'train',
                         _sampling(frame_step=3, eval_resize=eval_resize),
                         batch_size=4, clips=num_clips)
  videos, labels = collect(dataset)
  clip_shape = [4, SIZE, SIZE, 3]
  if num_clips > 1:
    clip_shape = [num_clips] + clip_shape
  assert videos.shape == tuple([6] + clip_shape)
  assert videos.dtype == np.float32 and 0 <= videos.min() <= videos.max() <= 1
  np.testing.assert_array_equal(labels, range(6))
  for video, label in zip(videos, labels):
    if label == 2:  # 7 frames, shorter than the span: every clip loops from 0
      np.testing.assert_array_equal(frame_indices(video)[..., 0], 0)
    else:
      np.testing.assert_array_equal(frame_indices(video), expected)
  # 'pad' letterboxes 48x64 into 32x32: rows 0..3 are black, 'crop' fills.
  top_rows = videos[..., :4, :, :2]
  assert (top_rows.max() == 0) == (eval_resize == 'pad')


@pytest.mark.parametrize('drop_remainder, batches', [(False, [4, 2]),
                                                     (True, [4])])
def test_eval_keeps_or_drops_the_last_partial_batch(prepared, drop_remainder,
                                                    batches):
  dataset = eval_dataset(prepared, 'train', _sampling(), batch_size=4,
                         drop_remainder=drop_remainder)
  assert [int(labels.shape[0]) for _, labels in dataset] == batches


def test_same_seed_repeats_and_other_seed_differs(prepared):
  build = lambda seed: collect(train_dataset(
      prepared, 'train', _sampling(num_frames=2, frame_step=3), batch_size=2,
      seed=seed, epoch=0, deterministic=True))
  first, again, other = build(1), build(1), build(2)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  assert not np.array_equal(first[0], other[0])


def _context(num_pipelines, pipeline_id):
  return tf.distribute.InputContext(
      num_input_pipelines=num_pipelines, input_pipeline_id=pipeline_id,
      num_replicas_in_sync=num_pipelines)


@pytest.mark.parametrize('shard_lengths, num_pipelines', [
    ([[3] * 4] * 3, 2),                 # 3 equal files, 2 workers
    ([[3] * 4] * 4 + [[3] * 2], 4),     # 5 files (the last short), 4 workers
    ([[3] * 5, [3] * 2], 2),            # 2 files of 5 and 2 clips
    ([[3] * 4, [3] * 3, [3] * 3], 4),   # fewer files than workers
    ([[3] * 7], 2),                     # one file
])
def test_every_training_pipeline_takes_the_same_steps(tmp_path, shard_lengths,
                                                      num_pipelines):
  # Workers whose pipelines gave different numbers of batches would fall out
  # of step at the end of an epoch (a collective op with no partner).
  manifest = Manifest.read(write_prepared(tmp_path, shard_lengths))
  num_clips = sum(map(len, shard_lengths))
  steps = num_clips // 4  # an epoch of global batches of 4, as on one worker
  seen = []
  for pipeline_id in range(num_pipelines):
    dataset = train_dataset(
        manifest, 'train', _sampling(num_frames=2, frame_step=1, image_size=8),
        batch_size=4, seed=1, epoch=0,
        input_context=_context(num_pipelines, pipeline_id))
    batches = [labels.numpy().tolist() for _, labels in dataset]
    assert len(batches) == steps and dataset.cardinality() == steps
    assert all(len(batch) == 4 // num_pipelines for batch in batches)
    seen.append(sum(batches, []))
  for pipeline_id, labels in enumerate(seen):  # no clip on two pipelines
    others = {label for i, other in enumerate(seen) if i != pipeline_id
              for label in other}
    assert not others & set(labels)
  # Each pipeline repeats a clip only when it has used up its own.
  loads = [sum(shard_reader.slice_size(len(shard_lengths[shard]), stride,
                                       offset)
               for shard, stride, offset in parts)
           for parts in shard_reader.assign_shards(
               list(map(len, shard_lengths)), num_pipelines)]
  assert [len(set(labels)) for labels in seen] == [
      min(load, steps * 4 // num_pipelines) for load in loads]


@pytest.mark.parametrize('deterministic', [True, False])
def test_an_epoch_is_fixed_and_skip_steps_resumes_it(tmp_path, deterministic):
  # Labels are unique per clip: a resumed epoch must hold exactly the clips
  # not yet trained on, each with the augmentation it had in the full epoch.
  manifest = Manifest.read(
      write_prepared(tmp_path, [[6] * 6, [6] * 6, [6] * 4]))
  build = lambda epoch, skip_steps=0: train_dataset(
      manifest, 'train', _sampling(num_frames=2, frame_step=2), batch_size=2,
      seed=7, epoch=epoch, skip_steps=skip_steps, deterministic=deterministic,
      shuffle_buffer=4)
  full = build(epoch=3)
  first, again = collect(full), collect(full)  # iterating twice: the same
  np.testing.assert_array_equal(first[1], again[1])
  assert sorted(first[1].tolist()) == list(range(16))
  assert collect(build(epoch=4))[1].tolist() != first[1].tolist()
  rest = collect(build(epoch=3, skip_steps=3))
  if deterministic:
    np.testing.assert_array_equal(rest[1], first[1][6:])
    np.testing.assert_array_equal(rest[0], first[0][6:])
  else:  # the decoding order may vary; the clips and their crops may not
    assert sorted(rest[1].tolist()) == sorted(first[1][6:].tolist())
    by_label = dict(zip(first[1].tolist(), first[0]))
    for video, label in zip(*rest):
      np.testing.assert_array_equal(video, by_label[label])


# What the pipeline gave before its split into `train_dataset` and
# `eval_dataset` (`build_dataset(..., training=True)`, pinned from it before
# it was removed), for the data of
# `test_resumed_epochs_give_the_clips_they_always_gave`: per clip, its label,
# frame indices, and the red of the left and right columns and the green of
# the top and bottom rows of its first frame (0..255), which place the crop
# box and say whether the clip was flipped. A resumed run must train on
# exactly these clips.
_PINNED = {
    # seed 7, epoch 3, one pipeline.
    (3, None): [
        (3, [10, 13, 16, 19], 218, 85, 42, 212),
        (0, [4, 7, 10, 13], 192, 38, 1, 253),
        (7, [10, 13, 16, 19], 10, 147, 27, 184),
        (9, [0, 3, 1, 4], 159, 47, 16, 216),
        (5, [5, 8, 11, 14], 185, 24, 2, 243),
        (6, [1, 4, 7, 10], 180, 34, 1, 206),
        (1, [8, 11, 14, 17], 226, 75, 34, 249),
        (2, [0, 3, 6, 2], 92, 210, 15, 183),
        (8, [7, 10, 13, 16], 194, 25, 1, 253),
        (4, [0, 3, 6, 0], 203, 95, 76, 221)],
    # seed 1, epoch 0, the second of two pipelines, no flips, one step
    # (a record per pipeline) skipped.
    (0, 1): [
        (7, [6, 9, 12, 15], 95, 249, 28, 232),
        (0, [1, 4, 7, 10], 39, 217, 10, 206),
        (2, [0, 3, 6, 2], 76, 234, 6, 238),
        (8, [3, 6, 9, 12], 24, 156, 82, 233)],
}


def _described(videos, labels):
  """`(label, frame indices, left red, right red, top green, bottom
  green)` of each clip, as `_PINNED` holds them."""
  described = []
  for video, label in zip(videos, labels):
    first = video[0] * 255
    edges = [first[:, 0, 0], first[:, -1, 0], first[0, :, 1],
             first[-1, :, 1]]
    described.append((int(label), frame_indices(video).tolist(),
                      *(int(round(edge.mean())) for edge in edges)))
  return described


@pytest.fixture
def fresh_global_seed():
  """No global TensorFlow seed, as in a fresh process.

  `tf.data` shuffles combine their own seed with the global one, which a
  run sets from its seed (the same on every resume); a test that trained
  before in this process may have left one set.
  """
  tf.random.set_seed(None)


@pytest.mark.usefixtures('fresh_global_seed')
@pytest.mark.parametrize('epoch, pipeline_id, skip_steps, first', [
    (3, None, 0, 0), (3, None, 2, 4), (0, 1, 1, 0)])
def test_resumed_epochs_give_the_clips_they_always_gave(
    tmp_path_factory, epoch, pipeline_id, skip_steps, first):
  manifest = Manifest.read(write_prepared(
      tmp_path_factory.mktemp('pinned'),
      [[20, 20, 7], [20, 9, 20, 12], [20, 20], [5]]))
  context = None if pipeline_id is None else _context(2, pipeline_id)
  dataset = train_dataset(
      manifest, 'train',
      _sampling(frame_step=3, min_crop_area=0.2, flip=context is None),
      batch_size=2, seed=1 if context else 7, epoch=epoch,
      skip_steps=skip_steps, shuffle_buffer=5, input_context=context)
  expected = _PINNED[epoch, pipeline_id][first:]
  found = _described(*collect(dataset))
  assert [clip[:2] for clip in found] == [clip[:2] for clip in expected]
  np.testing.assert_allclose([clip[2:] for clip in found],
                             [clip[2:] for clip in expected], atol=3)


# sha256 (first 16 hex digits) of every batch of each dataset below, its
# videos rounded to uint8 (`_fingerprint`), as the pipeline gave them before
# it was made faster: computed at commit 125a1b9. The same seed and epoch
# must give the same clips in any version, or a run resumed after an upgrade
# would train on other clips than it started with. The JPEGs are TensorFlow's
# (libjpeg-turbo); a TensorFlow that encodes or decodes them otherwise
# changes these values without a change of the pipeline.
_FINGERPRINTS = {
    'eval_crop': '3008d42343162211',
    'eval_pad_2_clips': '05c252f4ed060284',
    'train': 'a4b8c0b28e019ebd',
    'train_pad': 'e4975208ee3ae48f',
    'train_pipeline_1_of_2': '1e41e6447ef8655d',
    'train_skip_2': '77ed9169601c15c4',
}


def _fingerprint(dataset) -> str:
  """sha256 of a dataset's batches: videos as uint8, labels as int32."""
  digest = hashlib.sha256()
  for video, label in dataset:
    digest.update(np.round(video.numpy() * 255).astype(np.uint8).tobytes())
    digest.update(label.numpy().astype(np.int32).tobytes())
  return digest.hexdigest()[:16]


@pytest.fixture(scope='module')
def fingerprinted(tmp_path_factory):
  """Four shards of clips of 5..20 frames, labels 0..11."""
  return Manifest.read(write_prepared(
      tmp_path_factory.mktemp('fingerprinted'),
      [[20, 20, 7], [20, 9, 20, 12], [20, 20], [5]]))


def _fingerprinted_dataset(manifest, name):
  """The dataset `_FINGERPRINTS[name]` is of: eval with centre crops or two
  padded clips per video; train with crops and flips, a resumed epoch,
  padded frames, or the second of two input pipelines."""
  sampling = _sampling(frame_step=3, min_crop_area=0.2)
  if name.startswith('eval'):
    clips = 2 if name.endswith('2_clips') else 1
    if 'pad' in name:
      sampling = _sampling(frame_step=3, eval_resize='pad')
    return eval_dataset(manifest, 'train', sampling, batch_size=3,
                        clips=clips)
  kwargs = dict(batch_size=2, seed=7, epoch=3, shuffle_buffer=5)
  if name == 'train_skip_2':
    kwargs['skip_steps'] = 2
  elif name == 'train_pad':
    sampling = _sampling(frame_step=2, train_resize='pad', flip=False)
    kwargs.update(seed=1, epoch=0)
  elif name == 'train_pipeline_1_of_2':
    kwargs.update(seed=1, epoch=0, input_context=_context(2, 1))
  return train_dataset(manifest, 'train', sampling, **kwargs)


@pytest.mark.usefixtures('fresh_global_seed')
@pytest.mark.parametrize('name', sorted(_FINGERPRINTS))
def test_the_pipeline_gives_the_clips_it_always_gave(fingerprinted, name):
  found = _fingerprint(_fingerprinted_dataset(fingerprinted, name))
  assert found == _FINGERPRINTS[name]
