from setuptools import find_packages, setup

setup(
    name="hidden2stream",
    version="0.1.0",
    description="Hidden two-stream action recognition: MotionNet learns flow without labels, end to end.",
    # experiments/ installs as hidden2stream_experiments, so that a plain `pip install .` has the
    # scripts behind the `hidden2stream` command (experiments/command.py).
    packages=find_packages(include=["hidden2stream", "hidden2stream.*"]) + ["hidden2stream_experiments"],
    package_dir={"hidden2stream_experiments": "experiments"},
    entry_points={"console_scripts": ["hidden2stream=hidden2stream_experiments.command:main"]},
    package_data={"hidden2stream": ["weights/*.pt", "weights/MANIFEST.json"]},
    python_requires=">=3.10",
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "kornia>=0.7",
        "numpy",
        "av>=12",
        "pytorch-msssim>=1.0",
        "opencv-contrib-python-headless>=4.8",
        "tensorboard",
        "tqdm",
    ],
    extras_require={
        "test": ["pytest>=8"],
        # ONNX export (experiments/export.py) and the ONNX Runtime rows of the speed benchmarks;
        # torch.onnx.export(dynamo=True) needs onnxscript.
        "export": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.2"],
    },
)
