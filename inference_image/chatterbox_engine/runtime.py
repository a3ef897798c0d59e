"""One home for how the engine uses the CPU: OpenMP waiting, thread count, per-stage precision and prepacked
linear weights.

Importing this module sets `OMP_WAIT_POLICY=PASSIVE` unless the environment already chose: torch's OpenMP
runtime reads it once, when torch loads, so `chatterbox_engine` imports this before torch. With the default
(spinning) policy, each parallel region's threads busy-wait for the slowest one; on a CPU shared with other
busy processes, that made a 2-thread S3Gen estimator step 7-25x slower than 1 thread (passive: on a par).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402 (after the wait policy, see above)
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpu_budget(cpu_max: Path = _CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a pod's CPU limit)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return available
    if quota == "max":
        return available
    return max(1, min(available, math.ceil(int(quota) / int(period))))


def intra_op_threads() -> int:
    """The intra-op threads for the engine's model work: the calling thread's torch count (the process's
    choice: OMP_NUM_THREADS, or torch.set_num_threads before the engine is built), lowered to the CPU budget.

    Torch counts the node's cores; in a pod limited to 2 CPUs on a 64-core node, 64 threads would fight over
    2 CPUs' worth of quota. The engine reads this once where it is built and sets it in each thread that runs
    its models (`use_threads`): under OpenMP the count is per OS thread."""
    return min(torch.get_num_threads(), cpu_budget())


def limit_threads_to_cpu_budget() -> int:
    """Lower the calling thread's intra-op threads to `intra_op_threads` (never raise them: a caller may have
    chosen fewer). Returns the thread count in effect."""
    use_threads(intra_op_threads())
    return torch.get_num_threads()


def use_threads(count: int) -> None:
    """Set the calling thread's intra-op thread count. Under OpenMP the count is per OS thread (a thread
    started later begins with the last count set anywhere), so each engine thread sets its own."""
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


# T3s narrower than this decode on one intra-op thread on a CPU (`decode_threads`).
ONE_THREAD_DECODE_BELOW_WIDTH = 1024


def decode_threads(device, threads: int, hidden_size: int) -> int:
    """Intra-op threads for T3's decode steps (one token per row) where the engine's model work has `threads`:
    one on a CPU for a T3 narrower than ONE_THREAD_DECODE_BELOW_WIDTH (Nano), all otherwise.

    A Nano decode step is ~70 small parallel regions (49 one-row products of ~0.3 ms, 12 attention calls). With
    passive OpenMP waits (above) a second thread sleeps between them, and waking it took ~85 us per region on a
    2-vCPU VM whose idle vCPUs halt: as much as it saves. Measured end to end there (150 tokens, S3Gen on its
    worker meanwhile), one decode thread was 2-9% faster in wall time than two, in bf16 and float32; the Llama
    T3 (1024 wide, CFG pair, larger products) decoded 1.2-2x faster on two. Spinning workers would halve Nano's
    step (24 -> 15.5 ms), but libgomp stops spinning once a process runs more OpenMP threads than CPUs, and
    spinning loses badly under load. The count is fixed per engine: float32 logits differ by ~1e-6 between 1
    and 2 threads, so a seed's tokens must not depend on a choice made at run time."""
    narrow = hidden_size < ONE_THREAD_DECODE_BELOW_WIDTH
    return 1 if torch.device(device).type == "cpu" and narrow else threads


_NATIVE_CPU_PROBES = {
    torch.bfloat16: ("_is_amx_tile_supported", "_is_avx512_bf16_supported"),
    torch.float16: ("_is_amx_fp16_supported",),
}


@functools.cache
def cpu_computes_natively(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies `dtype` in hardware (bf16: AMX tiles or AVX-512 BF16; fp16: AMX-FP16)."""
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in _NATIVE_CPU_PROBES.get(dtype, ()))


@dataclass(frozen=True)
class StageDtypes:
    """The precision each stage runs in for a requested dtype."""

    t3: torch.dtype
    s3gen: torch.dtype

    def describe(self) -> dict[str, str]:
        return {stage: str(dtype).removeprefix("torch.") for stage, dtype in vars(self).items()}


def stage_dtypes(device, dtype: torch.dtype, native: bool | None = None) -> StageDtypes:
    """Per-stage precision for a requested dtype on a device (`native`: override the CPU probe).

    On a CPU, T3's one-token decode reads every weight per token, but reading half the bytes only pays where
    its products use oneDNN-prepacked weights (`prepacks_linear`: bf16 on a CPU with bf16 hardware): there,
    Nano's decode step took 28 ms of CPU in bf16 against 40 ms in fp32; plain bf16 products of one row were
    slower than fp32 even on that CPU (33 vs 26 ms for Nano's 48 projections), so elsewhere T3 runs float32.
    S3Gen is compute bound (a 56-block estimator over every frame), so it runs the dtype only where the CPU
    has hardware arithmetic for it: emulated half precision would only slow it down."""
    if dtype == torch.float32 or torch.device(device).type != "cpu":
        return StageDtypes(dtype, dtype)
    if native is None:
        native = cpu_computes_natively(dtype)
    prepacked = native and dtype == torch.bfloat16 and _ONEDNN_PREPACKED_LINEAR
    return StageDtypes(dtype if prepacked else torch.float32, dtype if native else torch.float32)


_ONEDNN_PREPACKED_LINEAR = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_reorder_linear_weight"
)


def prepacks_linear(weight: Tensor) -> bool:
    """Whether a linear layer runs faster from a oneDNN-prepacked copy of its weight: bfloat16 on a CPU that
    multiplies it natively. Plain bf16 products of a few rows (T3's one-token decode) repack the weight on
    every call: measured on GPT-2 small's 49 products per token (2 threads, AMX), 21 ms of CPU from the
    packed copy vs 31-34 ms from the plain weight, with equal results for 1-4 rows."""
    return (
        _ONEDNN_PREPACKED_LINEAR
        and weight.device.type == "cpu"
        and weight.dtype == torch.bfloat16
        and cpu_computes_natively(torch.bfloat16)
    )


def version_of(tensor: Tensor) -> int:
    """The tensor's in-place change counter (0 for an inference tensor, which has none)."""
    try:
        return tensor._version
    except RuntimeError:  # an inference tensor has no version counter, and cannot be changed in place
        return 0


def linear(
    owner: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None, *, in_out: bool = False
) -> Tensor:
    """x (..., in) times `owner`'s weight plus bias -> (..., out); the weight is stored (out, in) as nn.Linear's,
    or (in, out) with in_out (HF GPT-2's Conv1D). Where `prepacks_linear` says so, the product reads a
    prepacked copy kept on `owner`, rebuilt whenever the weight is replaced, moved, cast or changed in place."""
    if not prepacks_linear(weight):
        if not in_out:
            return F.linear(x, weight, bias)
        return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], -1)
    key = (weight.data_ptr(), version_of(weight))
    cached = owner.__dict__.get("_prepacked_weight")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            source = weight.detach()  # kept alive with the copy, so no other tensor can reuse its address
            packed = torch.ops.mkldnn._reorder_linear_weight(
                (source.t() if in_out else source).contiguous(), 1
            )
        cached = (key, source, packed)
        owner.__dict__["_prepacked_weight"] = cached  # a plain attribute: never saved, moved or cast
    rows = x.reshape(-1, x.shape[-1])
    return torch.ops.mkldnn._linear_pointwise(rows, cached[2], bias, "none", [], "").view(*x.shape[:-1], -1)
