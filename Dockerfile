# GPU image of the MoViNet trainer: `movinet-train` is the entry point, so
# everything after the image name is passed to it as flags.
#
#   docker build -t movinet-trainer .
#   docker run --gpus all -v $PWD/runs:/runs movinet-trainer --model_dir=/runs/quickstart
#
# Without flags it prints `movinet-train --help` (and exits 1, as absl does
# after --help). Further `docker run` options:
#   --user "$(id -u):$(id -g)"        write files into the mounted dir as you,
#                                     not as root (the image's default user).
#   -v movinet-cache:/var/cache/movinet-trainer
#                                     keep prepared datasets and downloaded
#                                     checkpoints between runs.
#   --gin_file=ucf101_a0_transfer.gin --gin_file=platforms/multi_gpu.gin ...
#                                     the files of gin/ are found by name.
#
# Base image: the official TensorFlow 2.20.0 GPU image, pinned by tag (no
# `latest`). It is Ubuntu 22.04 with CUDA 12.3 and Python 3.11 (built from
# tensorflow/build's tensorflow_runtime_dockerfiles/gpu.Dockerfile,
# PYTHON_VERSION=python3.11; Ubuntu's package, which reports itself as
# 3.11.0rc1: tensorflow/tensorflow#82529), the one minor version setup.py
# accepts (python_requires >=3.11,<3.12). Its tensorflow is 2.20.0, the
# version setup.py pins, so pip keeps it instead of installing it again.
FROM tensorflow/tensorflow:2.20.0-gpu

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRAINER_CACHE_DIR=/var/cache/movinet-trainer

WORKDIR /opt/movinet-trainer

# Installed the way the README says (`pip install -e .`), in two steps so that
# the heavy layer, the dependencies, is rebuilt only when setup.py changes:
# 1. setup.py and README.md alone: the package directory is not there yet, so
#    this installs the dependencies and an empty editable distribution.
# 2. Then the sources, and the editable install again, without dependencies:
#    it maps `trainer` to /opt/movinet-trainer/trainer, and main.py finds the
#    gin files in /opt/movinet-trainer/gin next to it. Checked right away,
#    through the installed mapping (-I keeps the working dir off sys.path),
#    since .dockerignore decides what `COPY . .` brings.
# The cache dir is world-writable so that `--user` runs can prepare data too.
COPY setup.py README.md ./
RUN pip install --no-cache-dir -e . \
    && install -d -m 1777 "${TRAINER_CACHE_DIR}"

COPY . .
RUN pip install --no-cache-dir --no-deps -e . \
    && python3 -I -c "import os, trainer.main as m; assert os.path.isfile(os.path.join(m.GIN_DIR, m.DEFAULT_GIN_FILE)), m.GIN_DIR"

# The image stays root, like the TensorFlow image it is built on: --model_dir
# is usually a bind-mounted host dir (which Docker creates root-owned when it
# does not exist, so a fixed non-root user could not write to it) or a gs://
# path, and whoever wants the files owned by them passes `--user` (above).
ENTRYPOINT ["movinet-train"]
CMD ["--help"]
