"""`recsys bench scan`: our scans against the sequential reference and the public CPU peers.

Each (layer, impl, B, L) is measured in a fresh Python subprocess so that peak memory is
honest: `peak_mb` is how far one forward + backward pass raises the process's peak resident
set above its resident set after the inputs were built and one warm-up pass ran (Linux:
VmHWM reset through /proc/self/clear_refs, then read from /proc/self/status). It sees
everything torch allocates, whatever the allocator, and none of the import footprint.
`fwd_bwd_ms` is the median wall time of `repeats` forward + backward passes after a warm-up,
all implementations of one (layer, L) timed in one subprocess with the default allocator,
their passes interleaved round-robin so that a busy machine slows them alike.
Peers: mambapy's `pscan` (the selective scan) and s5-pytorch's `S5` with a per-step
`step_scale` (the time-aware S5); both are the `bench` extra.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

SELECTIVE = {"d_inner": 128, "d_state": 32}  # SS4Rec: d_model 64, expand 2, d_state 32
TIME_AWARE = {"d_model": 64, "d_state": 32}
IMPLS = {
    "selective": ("ours", "reference", "mambapy"),
    "time_aware": ("ours", "reference", "s5-pytorch"),
}
# glibc: every allocation over 64 KiB is its own mmap, returned to the OS when freed, so the
# resident set follows live tensors (the default threshold adapts upward and keeps freed memory)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
PEER_PACKAGE = {"mambapy": "mambapy", "s5-pytorch": "s5"}


def _mambapy_selective(u, delta, A, B, C, D):
    """mambapy's selective scan (mambapy.mamba.MambaBlock.selective_scan) on its pscan."""
    from mambapy.pscan import pscan

    decay = torch.exp(delta.unsqueeze(-1) * A)  # (B, L, D, N)
    inputs = delta.unsqueeze(-1) * B.unsqueeze(2) * u.unsqueeze(-1)  # (B, L, D, N)
    return (pscan(decay, inputs) @ C.unsqueeze(-1)).squeeze(3) + D * u


def _selective_case(impl: str, batch: int, length: int) -> tuple[Callable, list[torch.Tensor]]:
    from recsys.models.scans import selective_scan, selective_scan_reference

    d_inner, d_state = SELECTIVE["d_inner"], SELECTIVE["d_state"]
    u = torch.randn(batch, length, d_inner)
    delta = torch.nn.functional.softplus(torch.randn(batch, length, d_inner) - 2)
    A = -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    B, C = torch.randn(batch, length, d_state), torch.randn(batch, length, d_state)
    inputs = [t.requires_grad_() for t in (u, delta, A, B, C, torch.ones(d_inner))]
    fn = {"ours": selective_scan, "reference": selective_scan_reference}.get(impl)
    return fn or _mambapy_selective, inputs


def _time_aware_case(impl: str, batch: int, length: int) -> tuple[Callable, list[torch.Tensor]]:
    from recsys.models.scans import diagonal_scan_reference
    from recsys.models.ssm import TimeAwareS5

    d_model, d_state = TIME_AWARE["d_model"], TIME_AWARE["d_state"]
    x = torch.randn(batch, length, d_model, requires_grad=True)
    step = 1 + torch.log1p(torch.rand(batch, length) * 48)  # normalised gaps
    if impl == "s5-pytorch":
        from s5 import S5

        peer = S5(d_model, d_state)
        return lambda x, step: peer(x, step_scale=step), [x, step]
    layer = TimeAwareS5(d_model, d_state, 0.001, 0.1)
    if impl == "reference":
        layer.scan = diagonal_scan_reference
    mask = torch.ones(batch, length, dtype=torch.bool)
    return lambda x, step: layer(x, step, mask), [x, step]


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc/self/status, in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


def _fwd_bwd_timer(layer: str, impl: str, batch: int, length: int) -> Callable[[], float]:
    """A function running one forward + backward pass of a case, returning its ms."""
    torch.manual_seed(0)
    case = _selective_case if layer == "selective" else _time_aware_case
    fn, inputs = case(impl, batch, length)
    grad_out = None

    def fwd_bwd() -> float:
        nonlocal grad_out
        start = time.perf_counter()
        out = fn(*inputs)
        grad_out = torch.randn_like(out) if grad_out is None else grad_out
        out.backward(grad_out)
        for t in inputs:
            t.grad = None
        return (time.perf_counter() - start) * 1000

    return fwd_bwd


def measure_memory(layer: str, impl: str, batch: int, length: int) -> dict:
    """Rise of peak RSS during one pass after a warm-up (run in a fresh interpreter)."""
    fwd_bwd = _fwd_bwd_timer(layer, impl, batch, length)
    fwd_bwd()  # warm-up: thread pools and lazy initialisation
    _reset_peak_rss()
    baseline = _status_mb("VmRSS")
    fwd_bwd()
    return {"peak_mb": round(_status_mb("VmHWM") - baseline, 1)}


def measure_times(layer: str, batch: int, length: int, repeats: dict[str, int]) -> dict:
    """Median ms per implementation, passes interleaved round-robin so all see the same load."""
    timers = {impl: _fwd_bwd_timer(layer, impl, batch, length) for impl in repeats}
    for fwd_bwd in timers.values():
        fwd_bwd()  # warm-up
    times: dict[str, list[float]] = {impl: [] for impl in repeats}
    for round_ in range(max(repeats.values())):
        for impl, fwd_bwd in timers.items():
            if round_ < repeats[impl]:
                times[impl].append(fwd_bwd())
    return {impl: {"fwd_bwd_ms": round(statistics.median(t), 2), "repeats": len(t),
                   "threads": torch.get_num_threads()} for impl, t in times.items()}  # fmt: skip


def _subprocess(call: str, env: dict[str, str]) -> dict:
    """`recsys.bench.<call>` in a fresh interpreter; RuntimeError with its last error line."""
    code = f"import json, recsys.bench.scan as b; print(json.dumps(b.{call}))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=1800, env=env
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError("timed out after 1800 s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit {done.returncode}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _length_records(layer: str, batch: int, length: int, repeats: dict[str, int]) -> list[dict]:
    """Records of every implementation at one (layer, B, L); failures become error records."""
    base = {"layer": layer, "B": batch, "L": length}
    missing = {impl for impl in repeats if _peer_missing(impl)}
    present = {impl: n for impl, n in repeats.items() if impl not in missing}
    try:
        times = _subprocess(
            f"measure_times({layer!r}, {batch}, {length}, {present!r})", dict(os.environ)
        )
    except RuntimeError as err:
        return [{"impl": impl, **base, "error": str(err)} for impl in repeats]
    records = []
    for impl in repeats:
        record = {"layer": layer, "impl": impl, "B": batch, "L": length}
        if impl in missing:
            records.append(record | {"error": "not installed (pip install .[bench])"})
            continue
        try:
            call = f"measure_memory({layer!r}, {impl!r}, {batch}, {length})"
            memory = _subprocess(call, os.environ | MALLOC_ENV)
        except RuntimeError as err:
            records.append(record | {"error": str(err)})
            continue
        timing = times[impl]
        records.append(record | {"fwd_bwd_ms": timing.pop("fwd_bwd_ms"), **memory, **timing})
    return records


def _peer_missing(impl: str) -> bool:
    import importlib.util

    return impl in PEER_PACKAGE and importlib.util.find_spec(PEER_PACKAGE[impl]) is None


def scan_benchmark(
    batch: int = 256,
    lengths: tuple[int, ...] = (50, 200),
    repeats: int = 5,
    reference_repeats: int = 1,
    reference_max_length: int = 50,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Records for every layer, implementation and length (reference only up to a length)."""
    records = []
    for layer, impls in IMPLS.items():
        for length in lengths:
            if progress:
                progress(f"{layer} B={batch} L={length}")
            counts = {
                impl: reference_repeats if impl == "reference" else repeats
                for impl in impls
                if impl != "reference" or length <= reference_max_length
            }
            records += _length_records(layer, batch, length, counts)
    return records


def render_table(records: list[dict]) -> str:
    """A plain-text table; time/ours and mem/ours: how many times ours each one takes."""
    ours = {(r["layer"], r["L"]): r for r in records if r["impl"] == "ours" and "error" not in r}
    lines = [f"{'layer':<11}{'impl':<12}{'B':>5}{'L':>5}{'fwd+bwd ms':>12}{'peak MB':>10}"
             f"{'time/ours':>11}{'mem/ours':>10}"]  # fmt: skip
    for r in records:
        head = f"{r['layer']:<11}{r['impl']:<12}{r['B']:>5}{r['L']:>5}"
        if "error" in r:
            lines.append(f"{head}  {r['error']}")
            continue
        base = ours.get((r["layer"], r["L"]))
        speed = f"{r['fwd_bwd_ms'] / base['fwd_bwd_ms']:.2f}x" if base else "-"
        memory = f"{r['peak_mb'] / max(base['peak_mb'], 0.1):.2f}x" if base else "-"
        lines.append(f"{head}{r['fwd_bwd_ms']:>12.1f}{r['peak_mb']:>10.1f}{speed:>11}{memory:>10}")
    return "\n".join(lines)
