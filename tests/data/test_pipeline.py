"""The tf.data pipeline reads prepared shards back into the right clips."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.data import clips
from trainer.data import pipeline
from trainer.data import schema

HEIGHT, WIDTH = 48, 64
SIZE = 32
INDEX_SCALE = 10  # blue channel = 10 * frame index


def _frame(index):
  """Red grows along x, green along y (same in every frame), blue = index."""
  y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
  return np.stack([x * 255 // (WIDTH - 1), y * 255 // (HEIGHT - 1),
                   np.full_like(x, INDEX_SCALE * index)], -1).astype(np.uint8)


def _write_prepared(root, shard_lengths, *, split='train', labels=None):
  """Writes shards of clips whose lengths are `shard_lengths[shard][clip]`.

  Clip number k (counting over all shards) has label k, so tests can tell
  which records a pipeline read.
  """
  os.makedirs(root, exist_ok=True)
  num_clips = sum(len(s) for s in shard_lengths)
  entries, label = [], 0
  for i, lengths in enumerate(shard_lengths):
    name = schema.shard_name(split, i, len(shard_lengths))
    with tf.io.TFRecordWriter(os.path.join(root, name)) as writer:
      for length in lengths:
        jpegs = [clips.encode_jpeg(_frame(t), 95) for t in range(length)]
        writer.write(clips.encode_clip(jpegs, label, f'c{label}',
                                        f'v{label}.avi'))
        label += 1
    entries.append({'file': name, 'num_clips': len(lengths), 'sha256': ''})
  manifest = {
      'labels': labels or [f'c{k}' for k in range(num_clips)],
      'splits': {split: {'num_clips': num_clips, 'shards': entries}},
      'frames': {'fps': None, 'short_side': None, 'jpeg_quality': 95},
      'skipped': [],
  }
  with open(os.path.join(root, schema.MANIFEST_NAME), 'w',
            encoding='utf-8') as f:
    json.dump(manifest, f)
  return str(root)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """Two shards; clips of 20 frames except one short 7-frame clip (label 2)."""
  return _write_prepared(tmp_path_factory.mktemp('prepared'),
                         [[20, 20, 7], [20, 20, 20]])


def _frame_indices(video):
  """Frame index of every frame of float video `(..., h, w, 3)`.

  Reads the central half of rows, which 'pad' letterboxing leaves intact.
  """
  video = np.asarray(video)
  height = video.shape[-3]
  blue = video[..., height // 4:-height // 4, :, 2].mean(axis=(-2, -1))
  return np.rint(blue * 255 / INDEX_SCALE).astype(int)


def _collect(dataset):
  videos, labels = zip(*[(video.numpy(), label.numpy())
                         for video, label in dataset])
  return np.concatenate(videos), np.concatenate(labels)


def _in_dataset(fn, *args):
  """Runs `fn(*args)` inside Dataset.map (graph mode)."""
  dataset = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
  return next(iter(dataset)).numpy()


def test_read_manifest(prepared):
  manifest = pipeline.read_manifest(prepared)
  assert manifest['splits']['train']['num_clips'] == 6
  assert manifest['labels'] == [f'c{k}' for k in range(6)]


@pytest.mark.parametrize('problem', ['no_dir', 'no_manifest', 'no_split',
                                     'no_shard', 'bad_manifest'])
def test_missing_inputs_name_path_and_fix(tmp_path, problem):
  data_dir = _write_prepared(tmp_path / 'd', [[3], [3]])
  expected = data_dir
  if problem == 'no_dir':
    data_dir = expected = str(tmp_path / 'absent')
  elif problem == 'no_manifest':
    os.remove(os.path.join(data_dir, schema.MANIFEST_NAME))
    expected = os.path.join(data_dir, schema.MANIFEST_NAME)
  elif problem == 'no_shard':
    expected = os.path.join(data_dir, schema.shard_name('train', 1, 2))
    os.remove(expected)
  elif problem == 'bad_manifest':
    expected = os.path.join(data_dir, schema.MANIFEST_NAME)
    with open(expected, 'w', encoding='utf-8') as f:
      f.write('{"labels": [')  # cut short, as by a full disk
  split = 'validation' if problem == 'no_split' else 'train'
  with pytest.raises(ValueError) as error:
    pipeline.build_dataset(data_dir, split, training=True, batch_size=1)
  assert expected in str(error.value)
  assert 'movinet-prepare --output_dir=' in str(error.value)
  if problem == 'no_split':
    assert 'validation' in str(error.value)


@pytest.mark.parametrize('argument,value', [('batch_size', 0),
                                            ('eval_resize', 'stretch'),
                                            ('train_resize', 'stretch'),
                                            ('min_crop_area', 0.0)])
def test_bad_arguments_are_named(prepared, argument, value):
  kwargs = {'training': False, 'batch_size': 2, argument: value}
  with pytest.raises(ValueError, match=f'{argument}={value!r}'):
    pipeline.build_dataset(prepared, 'train', **kwargs)


@pytest.mark.parametrize('num_available,start,expected', [
    (20, 2, [2, 5, 8, 11]),  # frame_step spacing
    (7, 0, [0, 3, 6, 2]),  # short video loops
    (20, [0, 9], [[0, 3, 6, 9], [9, 12, 15, 18]]),  # several clips
])
def test_sample_frame_indices_eager_and_in_dataset(num_available, start,
                                                    expected):
  fn = lambda n, s: pipeline.sample_frame_indices(n, 4, 3, s)
  eager = pipeline.sample_frame_indices(num_available, 4, 3, start).numpy()
  np.testing.assert_array_equal(eager, expected)
  np.testing.assert_array_equal(
      _in_dataset(fn, num_available, tf.constant(start)), expected)


def test_decode_frames_decodes_the_gathered_frames():
  jpegs = tf.constant([clips.encode_jpeg(_frame(t), 95) for t in range(10)])
  indices = tf.constant([7, 2, 2, 9])
  eager = pipeline.decode_frames(jpegs, indices).numpy()
  assert eager.shape == (4, HEIGHT, WIDTH, 3) and eager.dtype == np.uint8
  np.testing.assert_array_equal(_frame_indices(eager / 255), [7, 2, 2, 9])
  np.testing.assert_array_equal(
      _in_dataset(pipeline.decode_frames, jpegs, indices), eager)


@pytest.mark.parametrize('seed', [(0, 1), (5, 7)])
def test_random_resized_crop_uses_one_box_per_clip(seed):
  jpegs = tf.constant([clips.encode_jpeg(_frame(t), 95) for t in range(4)])
  fn = lambda j, s: pipeline.decode_random_crop_clip(j, tf.range(4), s,
                                                     size=SIZE)
  eager = fn(jpegs, tf.constant(seed)).numpy()
  assert eager.shape == (4, SIZE, SIZE, 3) and eager.dtype == np.float32
  assert 0.0 <= eager.min() and eager.max() <= 1.0
  # Red and green encode position only: equal across frames iff the box is
  # (up to JPEG's rounding, which the blue channel's change moves a little).
  for t in range(1, 4):
    difference = np.abs(eager[t, ..., :2] - eager[0, ..., :2])
    assert difference.max() < 4 / 255 and difference.mean() < 1 / 255
  np.testing.assert_array_equal(_frame_indices(eager), [0, 1, 2, 3])
  np.testing.assert_allclose(_in_dataset(fn, jpegs, tf.constant(seed)), eager,
                             atol=1e-6)
  other = fn(jpegs, tf.constant([seed[0] + 100, seed[1]])).numpy()
  assert not np.allclose(other, eager, atol=4 / 255)


def _reference_crop(jpegs, indices, seed, size, min_crop_area):
  """The crop as it was before `decode_random_crop_clip`: full decode first.

  Samples the box with the same call, decodes whole frames, converts them to
  float, slices the box and resizes.
  """
  frames = tf.image.convert_image_dtype(
      tf.stack([tf.io.decode_jpeg(jpegs[i], channels=3) for i in indices]),
      tf.float32)
  begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(frames)[1:],
      bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=[3 / 4, 4 / 3],
      area_range=[min_crop_area, 1.0], max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  cropped = tf.slice(frames, tf.concat([[0], begin[:2], [0]], 0),
                     tf.concat([[-1], box_size[:2], [-1]], 0))
  return tf.clip_by_value(tf.image.resize(cropped, [size, size]), 0, 1).numpy()


def _textured_frame(index, height=120, width=160):
  """Gradient frame plus fixed noise, so crop edges and chroma matter."""
  rng = np.random.default_rng(0)
  noise = rng.integers(-40, 41, (height, width, 3))
  y, x = np.mgrid[0:height, 0:width]
  base = np.stack([x * 255 // (width - 1), y * 255 // (height - 1),
                   np.full_like(x, INDEX_SCALE * index)], -1)
  return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize('make_frame', [_frame, _textured_frame])
@pytest.mark.parametrize('seed,min_crop_area', [((0, 1), 0.3), ((5, 7), 0.3),
                                                ((2, 9), 0.08), ((3, 3), 1.0)])
def test_decode_random_crop_matches_full_decode_then_crop(make_frame, seed,
                                                          min_crop_area):
  jpegs = tf.constant([clips.encode_jpeg(make_frame(t), 95)
                       for t in range(6)])
  indices = tf.constant([4, 1, 1, 5])
  fn = lambda j, i, s: pipeline.decode_random_crop_clip(
      j, i, s, size=SIZE, min_crop_area=min_crop_area)
  eager = fn(jpegs, indices, tf.constant(seed)).numpy()
  assert eager.shape == (4, SIZE, SIZE, 3) and eager.dtype == np.float32
  assert 0.0 <= eager.min() and eager.max() <= 1.0
  reference = _reference_crop(jpegs, [4, 1, 1, 5], seed, SIZE, min_crop_area)
  # Same box; decoding only the box rounds differently at its edges.
  assert np.abs(eager - reference).mean() < 1e-3
  np.testing.assert_allclose(eager, reference, atol=16 / 255)
  np.testing.assert_allclose(
      _in_dataset(fn, jpegs, indices, tf.constant(seed)), eager, atol=1e-6)


def test_center_crop_keeps_the_middle():
  frames = np.stack([_frame(t) for t in range(2)])
  fn = lambda f: pipeline.center_crop_clip(f, size=SIZE)
  eager = fn(frames).numpy()
  assert eager.shape == (2, SIZE, SIZE, 3)
  # 48x64 -> 32x43, then columns 5..36: red spans the middle of the gradient.
  red = eager[0, 0, :, 0] * 255
  assert red[0] == pytest.approx(255 * 5.5 / 43, abs=4)
  assert red[-1] == pytest.approx(255 * 36.5 / 43, abs=4)
  np.testing.assert_allclose(_in_dataset(fn, frames), eager, atol=1e-6)


@pytest.mark.parametrize('flip', [False, True])
def test_train_batches_sample_spaced_frames_from_a_random_start(prepared, flip):
  dataset = pipeline.build_dataset(
      prepared, 'train', training=True, batch_size=2, num_frames=4,
      frame_step=5, image_size=SIZE, seed=3, flip=flip)
  assert dataset.element_spec[0].shape.as_list() == [2, 4, SIZE, SIZE, 3]
  videos, labels = _collect(dataset)
  assert videos.dtype == np.float32 and labels.dtype == np.int32
  assert 0.0 <= videos.min() and videos.max() <= 1.0
  assert sorted(labels) == list(range(6))
  for video, label in zip(videos, labels):
    indices = _frame_indices(video)
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
  dataset = pipeline.build_dataset(
      prepared, 'train', training=True, batch_size=6, num_frames=4,
      frame_step=5, image_size=SIZE, seed=3, train_resize='pad', flip=False)
  videos, labels = _collect(dataset)
  assert videos.shape == (6, 4, SIZE, SIZE, 3)
  for video, label in zip(videos, labels):
    indices = _frame_indices(video)
    if label != 2:
      assert 0 <= indices[0] <= 4
    frames = np.stack([_frame(t) for t in indices])
    expected = tf.image.resize_with_pad(
        tf.image.convert_image_dtype(frames, tf.float32), SIZE, SIZE).numpy()
    # Equal up to JPEG rounding; 48x64 letterboxed: rows 0..3 black.
    np.testing.assert_allclose(video, expected, atol=6 / 255)
    assert video[:, :4].max() == 0 and video[:, -4:].max() == 0
    # The whole width is there: red runs from 0 to 255 in every frame.
    assert video[:, SIZE // 2, 0, 0].max() < 8 / 255
    assert video[:, SIZE // 2, -1, 0].min() > 247 / 255


@pytest.mark.parametrize('eval_resize', ['crop', 'pad'])
@pytest.mark.parametrize('eval_clips,expected', [
    (1, [5, 8, 11, 14]),  # middle: span 10 of 20, start 5
    (3, [[1, 4, 7, 10], [5, 8, 11, 14], [8, 11, 14, 17]]),
])
def test_eval_takes_evenly_spaced_clips(prepared, eval_resize, eval_clips,
                                        expected):
  dataset = pipeline.build_dataset(
      prepared, 'train', training=False, batch_size=4, num_frames=4,
      frame_step=3, image_size=SIZE, eval_clips=eval_clips,
      eval_resize=eval_resize)
  videos, labels = _collect(dataset)
  clip_shape = [4, SIZE, SIZE, 3] if eval_clips == 1 else [3, 4, SIZE, SIZE, 3]
  assert videos.shape == tuple([6] + clip_shape)
  assert videos.dtype == np.float32 and 0 <= videos.min() <= videos.max() <= 1
  np.testing.assert_array_equal(labels, range(6))
  for video, label in zip(videos, labels):
    if label == 2:  # 7 frames, shorter than the span: every clip loops from 0
      np.testing.assert_array_equal(_frame_indices(video)[..., 0], 0)
    else:
      np.testing.assert_array_equal(_frame_indices(video), expected)
  # 'pad' letterboxes 48x64 into 32x32: rows 0..3 are black, 'crop' fills.
  top_rows = videos[..., :4, :, :2]
  assert (top_rows.max() == 0) == (eval_resize == 'pad')


def test_same_seed_repeats_and_other_seed_differs(prepared):
  build = lambda seed: _collect(pipeline.build_dataset(
      prepared, 'train', training=True, batch_size=2, num_frames=2,
      frame_step=3, image_size=SIZE, seed=seed, deterministic=True))
  first, again, other = build(1), build(1), build(2)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  assert not np.array_equal(first[0], other[0])


def _context(num_pipelines, pipeline_id):
  return tf.distribute.InputContext(
      num_input_pipelines=num_pipelines, input_pipeline_id=pipeline_id,
      num_replicas_in_sync=num_pipelines)


@pytest.mark.parametrize('shard_lengths, num_pipelines', [
    ([[3, 3], [3], [3, 3], [3]], 2),   # by file
    ([[3, 3, 3, 3, 3]], 2),            # by record: one file
    ([[3, 3], [3], [3, 3]], 4),        # by record: fewer files than pipelines
])
def test_evaluation_pipelines_read_disjoint_parts(tmp_path, shard_lengths,
                                                  num_pipelines):
  data_dir = _write_prepared(tmp_path, shard_lengths)
  seen = []
  for pipeline_id in range(num_pipelines):
    dataset = pipeline.build_dataset(
        data_dir, 'train', training=False, batch_size=4, num_frames=2,
        frame_step=1, image_size=8, input_context=_context(num_pipelines,
                                                           pipeline_id))
    assert dataset.element_spec[1].shape.as_list() == [None]
    _, labels = _collect(dataset)
    assert max(len(batch) for batch, _ in dataset) == 4 // num_pipelines
    seen.append(labels.tolist())
  # Every clip exactly once across the pipelines: disjoint and complete.
  everything = [label for labels in seen for label in labels]
  assert sorted(everything) == list(range(sum(map(len, shard_lengths))))
  if len(shard_lengths) == 4:  # by file: shards 0 and 1 go to pipeline 0
    assert set(seen[0]) == {0, 1, 2}


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
  data_dir = _write_prepared(tmp_path, shard_lengths)
  num_clips = sum(map(len, shard_lengths))
  steps = num_clips // 4  # an epoch of global batches of 4, as on one worker
  seen = []
  for pipeline_id in range(num_pipelines):
    dataset = pipeline.build_dataset(
        data_dir, 'train', training=True, batch_size=4, num_frames=2,
        frame_step=1, image_size=8, seed=1, epoch=0,
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
  loads = [sum(len(range(offset, len(shard_lengths[shard]), stride))
               for shard, stride, offset in parts)
           for parts in pipeline.assign_shards(list(map(len, shard_lengths)),
                                               num_pipelines)]
  assert [len(set(labels)) for labels in seen] == [
      min(load, steps * 4 // num_pipelines) for load in loads]


def test_shards_are_dealt_out_whole_and_the_rest_shared():
  # 3 files of 64 clips on 2 workers (the quickstart's training split).
  assert pipeline.assign_shards([64, 64, 64], 2) == [
      [(0, 1, 0), (2, 2, 0)], [(1, 1, 0), (2, 2, 1)]]
  # 5 files on 4 workers as `--shard_clips=64` writes 264 clips.
  slices = pipeline.assign_shards([64, 64, 64, 64, 8], 4)
  assert slices == [[(pipeline, 1, 0), (4, 4, pipeline)]
                    for pipeline in range(4)]
  # 5 files as `--num_shards=5` writes 21 clips: one clip apart is even.
  assert pipeline.assign_shards([4, 4, 4, 4, 5], 4) == [
      [(4, 1, 0), (3, 4, 0)], [(0, 1, 0), (3, 4, 1)],
      [(1, 1, 0), (3, 4, 2)], [(2, 1, 0), (3, 4, 3)]]
  # Shared shards count as one sequence: 3 files of 2, 1 and 2 records on 4.
  assert pipeline.assign_shards([2, 1, 2], 4) == [
      [(0, 4, 0), (1, 4, 0)], [(0, 4, 1)], [(2, 4, 0)], [(2, 4, 1)]]


@pytest.mark.parametrize('seed', range(20))
def test_every_record_goes_to_one_pipeline(seed):
  rng = np.random.default_rng(seed)
  num_pipelines = int(rng.choice([2, 3, 4, 8]))
  full, last = int(rng.integers(1, 200)), int(rng.integers(1, 200))
  clips = [full] * int(rng.integers(0, 20)) + [min(last, full)]
  if seed % 2:  # shards of any size, e.g. of a folder with skipped videos
    clips = rng.integers(1, 100, size=rng.integers(1, 30)).tolist()
  slices = pipeline.assign_shards(clips, num_pipelines)
  owners = [[] for _ in clips]
  for pipeline_id, parts in enumerate(slices):
    for shard, stride, offset in parts:
      for record in range(offset, clips[shard], stride):
        owners[shard].append((record, pipeline_id))
  for shard, records in enumerate(owners):
    assert sorted(r for r, _ in records) == list(range(clips[shard])), shard
  loads = [sum(len(range(o, clips[s], n)) for s, n, o in parts)
           for parts in slices]
  if seed % 2 == 0:  # as prepared: at most the last round is shared
    assert max(loads) - min(loads) <= max(1, clips[0] - clips[-1]), clips


@pytest.mark.parametrize('deterministic', [True, False])
def test_an_epoch_is_fixed_and_skip_steps_resumes_it(tmp_path, deterministic):
  # Labels are unique per clip: a resumed epoch must hold exactly the clips
  # not yet trained on, each with the augmentation it had in the full epoch.
  data_dir = _write_prepared(tmp_path, [[6] * 6, [6] * 6, [6] * 4])
  build = lambda epoch, skip_steps=0: pipeline.build_dataset(
      data_dir, 'train', training=True, batch_size=2, num_frames=2,
      frame_step=2, image_size=SIZE, seed=7, epoch=epoch,
      skip_steps=skip_steps, deterministic=deterministic, shuffle_buffer=4)
  full = build(epoch=3)
  first, again = _collect(full), _collect(full)  # iterating twice: the same
  np.testing.assert_array_equal(first[1], again[1])
  assert sorted(first[1].tolist()) == list(range(16))
  assert _collect(build(epoch=4))[1].tolist() != first[1].tolist()
  rest = _collect(build(epoch=3, skip_steps=3))
  if deterministic:
    np.testing.assert_array_equal(rest[1], first[1][6:])
    np.testing.assert_array_equal(rest[0], first[0][6:])
  else:  # the decoding order may vary; the clips and their crops may not
    assert sorted(rest[1].tolist()) == sorted(first[1][6:].tolist())
    by_label = dict(zip(first[1].tolist(), first[0]))
    for video, label in zip(*rest):
      np.testing.assert_array_equal(video, by_label[label])


@pytest.mark.parametrize('kwargs, message', [
    (dict(skip_steps=2), 'needs an `epoch`'),
    (dict(epoch=0, seed=None), 'needs training=True and a seed'),
    (dict(epoch=0, training=False), 'needs training=True and a seed'),
    (dict(epoch=-1), 'must be >= 0'),
])
def test_resume_arguments_are_checked(prepared, kwargs, message):
  arguments = dict(training=True, batch_size=2, seed=1) | kwargs
  with pytest.raises(ValueError, match=message):
    pipeline.build_dataset(prepared, 'train', **arguments)
