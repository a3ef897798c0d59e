#!/usr/bin/env bash
# GPU figures for benchmarks/RESULTS.md: it/s (CUDA graphs vs eager, batch 1 and 8), TTFA and RTF.
# Usage: benchmarks/gpu_check.sh [--dtype bfloat16|float16] [--tokens 200]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
