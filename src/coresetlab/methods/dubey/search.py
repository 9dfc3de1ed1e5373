"""Searches for the smallest passing size (AP's ``N*_k``, the coreset rank ``N̂_k``; §3.2, §3.6)."""

from __future__ import annotations

from collections.abc import Callable

Trace = list[tuple[int, bool]]


def smallest_passing(
    lo: int, hi: int, passes: Callable[[int], bool], hi_known_to_pass: bool = False, mode: str = "binary"
) -> tuple[int | None, Trace]:
    """Smallest ``k ∈ [lo, hi]`` with ``passes(k)``, assuming ``passes`` is monotone (True from some k on).

    ``mode='binary'`` bisects ``[lo, hi]`` (the paper's binary search). ``mode='exponential'`` first
    brackets the answer by doubling from ``lo`` (``lo, lo+1, lo+3, lo+7, …``) and then bisects the
    bracket — the same answer for a monotone ``passes``, but the expensive large sizes (e.g. Coreset-S's
    sparse PCA with hundreds of components) are only tried when the small ones fail.

    Returns ``(k, trace)`` with every ``(k, passed)`` evaluated; ``k`` is ``None`` when even ``hi`` fails.
    ``hi_known_to_pass`` skips evaluating ``hi`` (e.g. nothing pruned).
    """
    if lo > hi:
        raise ValueError(f"empty search range [{lo}, {hi}]")
    if mode not in ("binary", "exponential"):
        raise ValueError(f"mode must be 'binary' or 'exponential', got {mode!r}")
    trace: Trace = []

    def check(k: int) -> bool:
        ok = bool(passes(k))
        trace.append((k, ok))
        return ok

    if mode == "exponential":
        step = 1
        while lo < hi:
            probe = min(lo + step - 1, hi)
            if probe == hi and hi_known_to_pass:
                break
            if check(probe):
                hi, hi_known_to_pass = probe, True
                break
            lo, step = probe + 1, step * 2
    if not hi_known_to_pass and not check(hi):
        return None, trace
    while lo < hi:
        mid = (lo + hi) // 2
        if check(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi, trace
