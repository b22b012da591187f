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
# 3.11.0rc1: tensorflow/tensorflow#82529), the Python that constraints.txt is
# tested on. Its tensorflow is 2.20.0, the version constraints.txt pins, so
# pip keeps it instead of installing it again.
FROM tensorflow/tensorflow:2.20.0-gpu

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRAINER_CACHE_DIR=/var/cache/movinet-trainer

WORKDIR /opt/movinet-trainer

# Installed as a package (not editable), with the exact versions of
# constraints.txt, as the README says: the gin files ship inside it. The
# heavy dependency, tensorflow, is the base image's, so a change to the
# sources reinstalls only the light ones. Checked right away with -I, which
# keeps the working dir (the sources) off sys.path: the installed package
# finds its gin files, since .dockerignore decides what `COPY . .` brings.
# The cache dir is world-writable so that `--user` runs can prepare data too.
COPY . .
RUN pip install --no-cache-dir -c constraints.txt . \
    && python3 -I -c "import os, trainer.main as m; assert os.path.isfile(os.path.join(m.GIN_DIR, m.DEFAULT_GIN_FILE)), m.GIN_DIR" \
    && install -d -m 1777 "${TRAINER_CACHE_DIR}"

# The image stays root, like the TensorFlow image it is built on: --model_dir
# is usually a bind-mounted host dir (which Docker creates root-owned when it
# does not exist, so a fixed non-root user could not write to it) or a gs://
# path, and whoever wants the files owned by them passes `--user` (above).
ENTRYPOINT ["movinet-train"]
CMD ["--help"]
