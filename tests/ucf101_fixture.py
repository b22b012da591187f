"""UCF101 zips laid out as the real ones are, holding real XviD videos.

Where each shape comes from:
- `UCF101_videos.zip`, the TensorFlow video tutorials' download and the
  default `--ucf101_url`, lists a directory entry `UCF101/` and then every
  video flat in it: `UCF101/v_ApplyEyeMakeup_g01_c01.avi`, ... (the listing
  those tutorials print; they take the class from the file name).
- The official `UCF101.rar` unpacks to one folder per class,
  `UCF-101/<Class>/v_<Class>_g<NN>_c<NN>.avi`. The one irregular class is
  `HandstandPushups` (`ucfTrainTestlist/classInd.txt`, line 37), whose files
  are named `v_HandStandPushups_g<NN>_c<NN>.avi`.
- The 101 class names are those of `classInd.txt`; groups run g01..g25, each
  with clips c01..c04 or more.
- The videos are AVI files of XviD (MPEG-4 Part 2, fourcc `XVID`), 320 x 240
  at 25 fps, as UCF101's are; here encoded by OpenCV's FFmpeg from the
  synthetic renderer's moving shapes, so each class has its own motion.
"""

import pathlib
import tempfile
import zipfile

import cv2

from trainer.data import synthetic

UCF101_CLASSES = (
    'ApplyEyeMakeup', 'ApplyLipstick', 'Archery', 'BabyCrawling',
    'BalanceBeam', 'BandMarching', 'BaseballPitch', 'Basketball',
    'BasketballDunk', 'BenchPress', 'Biking', 'Billiards', 'BlowDryHair',
    'BlowingCandles', 'BodyWeightSquats', 'Bowling', 'BoxingPunchingBag',
    'BoxingSpeedBag', 'BreastStroke', 'BrushingTeeth', 'CleanAndJerk',
    'CliffDiving', 'CricketBowling', 'CricketShot', 'CuttingInKitchen',
    'Diving', 'Drumming', 'Fencing', 'FieldHockeyPenalty', 'FloorGymnastics',
    'FrisbeeCatch', 'FrontCrawl', 'GolfSwing', 'Haircut', 'Hammering',
    'HammerThrow', 'HandstandPushups', 'HandstandWalking', 'HeadMassage',
    'HighJump', 'HorseRace', 'HorseRiding', 'HulaHoop', 'IceDancing',
    'JavelinThrow', 'JugglingBalls', 'JumpingJack', 'JumpRope', 'Kayaking',
    'Knitting', 'LongJump', 'Lunges', 'MilitaryParade', 'Mixing',
    'MoppingFloor', 'Nunchucks', 'ParallelBars', 'PizzaTossing',
    'PlayingCello', 'PlayingDaf', 'PlayingDhol', 'PlayingFlute',
    'PlayingGuitar', 'PlayingPiano', 'PlayingSitar', 'PlayingTabla',
    'PlayingViolin', 'PoleVault', 'PommelHorse', 'PullUps', 'Punch',
    'PushUps', 'Rafting', 'RockClimbingIndoor', 'RopeClimbing', 'Rowing',
    'SalsaSpin', 'ShavingBeard', 'Shotput', 'SkateBoarding', 'Skiing',
    'Skijet', 'SkyDiving', 'SoccerJuggling', 'SoccerPenalty', 'StillRings',
    'SumoWrestling', 'Surfing', 'Swing', 'TableTennisShot', 'TaiChi',
    'TennisSwing', 'ThrowDiscus', 'TrampolineJumping', 'Typing', 'UnevenBars',
    'VolleyballSpiking', 'WalkingWithDog', 'WallPushups', 'WritingOnBoard',
    'YoYo')
# The tutorial's ten: the first ten classes in sorted order.
TUTORIAL_CLASSES = UCF101_CLASSES[:10]
# Folder name -> the class as its files spell it, where the two differ.
_FILE_CLASS = {'HandstandPushups': 'HandStandPushups'}

FLAT = 'flat'          # UCF101_videos.zip
FOLDERS = 'folders'    # UCF101.rar, unpacked and zipped
LAYOUTS = (FLAT, FOLDERS)

SIZE = (240, 320)      # height, width in px
FPS = 25.0

# Three classes, the irregular one among them; per class, (group, clip)
# pairs: fold 1 tests on g01-g07, so 3 test and 4 training videos a class.
SMALL_CLASSES = ('ApplyEyeMakeup', 'Archery', 'HandstandPushups')
SMALL_CLIPS = ((1, 1), (1, 2), (2, 1), (8, 1), (8, 2), (9, 1), (25, 1))


def file_class(folder_class: str) -> str:
  """The class as a UCF101 file name spells it."""
  return _FILE_CLASS.get(folder_class, folder_class)


def member_name(layout: str, folder_class: str, group: int, clip: int) -> str:
  """The zip member of one video in `layout`."""
  filename = f'v_{file_class(folder_class)}_g{group:02d}_c{clip:02d}.avi'
  if layout == FLAT:
    return f'UCF101/{filename}'
  return f'UCF-101/{folder_class}/{filename}'


def xvid_video(class_index: int, index: int, num_frames: int = 40) -> bytes:
  """An XviD AVI of 320 x 240 at 25 fps; its motion is `class_index % 4`."""
  rng = synthetic.video_rng(0, class_index, index)
  frames = synthetic.frames_for(class_index % 4, rng, num_frames, SIZE)
  with tempfile.TemporaryDirectory() as folder:
    path = str(pathlib.Path(folder) / 'video.avi')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'XVID'), FPS,
                             (SIZE[1], SIZE[0]))
    assert writer.isOpened(), 'OpenCV cannot write XviD here'
    for frame in frames:
      writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return pathlib.Path(path).read_bytes()


def write_zip(path, members: dict[str, bytes]) -> pathlib.Path:
  """Writes `members` in order, each folder's directory entry before its
  first member, as zip tools do; members alternate stored and deflated."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  written = set()
  with zipfile.ZipFile(path, 'w') as archive:
    for index, (name, data) in enumerate(members.items()):
      parts = name.split('/')
      for depth in range(1, len(parts)):
        folder = '/'.join(parts[:depth]) + '/'
        if folder not in written and folder != name:
          written.add(folder)
          archive.writestr(zipfile.ZipInfo(folder, (2012, 1, 1, 0, 0, 0)), b'')
      if name.endswith('/'):
        written.add(name)
        continue
      info = zipfile.ZipInfo(name, date_time=(2012, 1, 1, 0, 0, 0))
      info.compress_type = (zipfile.ZIP_DEFLATED if index % 2
                            else zipfile.ZIP_STORED)
      archive.writestr(info, data)
  return path


def small_members(layout: str) -> dict[str, bytes]:
  """`SMALL_CLASSES` x `SMALL_CLIPS`, distinct videos, sorted names."""
  members = {}
  for class_index, folder_class in enumerate(SMALL_CLASSES):
    for index, (group, clip) in enumerate(SMALL_CLIPS):
      members[member_name(layout, folder_class, group, clip)] = xvid_video(
          class_index, index)
  return dict(sorted(members.items()))


def all_class_members(layout: str, clips=((1, 1), (8, 1))) -> dict[str, bytes]:
  """Every UCF101 class with `clips`; one short real video for all of them
  (the tests that use it are about names, not pixels)."""
  video = xvid_video(0, 0, num_frames=8)
  return dict(sorted(
      (member_name(layout, folder_class, group, clip), video)
      for folder_class in UCF101_CLASSES for group, clip in clips))


def expected_groups(split: str) -> set[str]:
  """The groups of `SMALL_CLIPS` in `split` of fold 1."""
  return {f'g{group:02d}' for group, _ in SMALL_CLIPS
          if (group <= 7) == (split == 'test')}


def decode_frame_count(data: bytes) -> int:
  """Frames OpenCV decodes from `data` (an AVI's bytes)."""
  with tempfile.TemporaryDirectory() as folder:
    path = str(pathlib.Path(folder) / 'video.avi')
    pathlib.Path(path).write_bytes(data)
    capture = cv2.VideoCapture(path)
    count = 0
    while capture.read()[0]:
      count += 1
    capture.release()
  return count
