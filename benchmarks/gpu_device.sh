#!/usr/bin/env bash
# Runs benchmarks/gpu_check.py on a lent GPU machine whose image has PyTorch but none of our other
# dependencies and no package index (the workplace's `device` tool). Two steps:
#
#   here:            bash benchmarks/gpu_device.sh fetch     # cp312 wheels of what the image lacks -> .whl/
#   on the device:   bash benchmarks/gpu_device.sh run [gpu_check.py args]   (carry: [".whl"])
#
# `run` installs the carried wheels into /tmp/site, runs the CUDA-graph tests and gpu_check.py with the
# image's python3.
set -euo pipefail
cd "$(dirname "$0")/.."

# What inference_image/chatterbox_engine and the upstream baseline import beyond the image's packages
# (torch, torchaudio, numpy, scipy, safetensors, tokenizers, huggingface_hub, einops, onnx, numba, ...).
WHEELS=(
  librosa==0.11.0 soundfile==0.14.0 soxr==1.1.0 audioread==3.1.0 pooch==1.9.0 platformdirs==4.14.8
  decorator==5.3.1 cffi==2.1.1 pycparser==3.12 s3tokenizer==0.3.0 pyloudnorm==0.2.0
  chatterbox-tts==0.1.7 diffusers==0.29.0 conformer==0.3.2 omegaconf==2.4.0
  resemble-perth==1.0.1 importlib-metadata==10.2.0
)

case "${1:-}" in
  fetch)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${WHEELS[@]}"
    du -sh .whl
    ;;
  run)
    shift
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD/inference_image:$PWD/benchmarks" PYTHONUNBUFFERED=1
    # The CUDA-graph replay must equal the eager step (skipped on CPU machines), then the figures.
    tests=0
    python3 -m pytest -q -p no:cacheprovider tests/engine/test_cuda_graphs.py || tests=$?
    PYTHON=python3 bash benchmarks/gpu_check.sh "$@"
    exit "$tests"
    ;;
  *)
    echo "usage: $0 fetch | run [gpu_check.py args]" >&2
    exit 2
    ;;
esac
