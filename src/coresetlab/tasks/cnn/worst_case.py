"""Is the filter coreset data independent? Worst-case vs average error of pruned conv layers (beyond the paper).

The structured-coreset paper (Mussay et al. 2020, abstract) claims a guarantee "for any input x, including an
adversarial one". For layers ``task.layers`` of the trained VGG-19 parent (conv indices, each directly read by
the next conv), every method in ``task.methods`` (filter coreset, uniform channels, L1-norm filters) keeps the
same number of channels (``task.keeps``), and we compare, on the consumer conv's output
(:func:`coresetlab.methods.structured.worst_case_conv.conv_layer_errors`, relative error normalised by the
sum of absolute contributions):

* ``err_avg`` / ``err_max_data``: mean / max over real inputs of the layer — one random ``crop × crop`` window of
  the layer's input for each of ``task.images`` test images (propagated through the parent);
* ``err_worst``: projected gradient ascent over the ball ``‖x‖ ≤ β`` (β = the largest norm of those windows),
  from random sphere points and the worst data windows (a lower bound on the true worst case);
* ``worst_over_avg``: their ratio.

Windows keep the search cheap; the consumer conv zero-pads the window's border (still a point of the ball).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from coresetlab.errors import ConfigError
from coresetlab.methods.structured.worst_case_conv import conv_layer_errors
from coresetlab.tasks.cnn.common import setup_data, shared_parent


def conv_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None, nn.Conv2d | None]]:
    """(conv, its BN, the conv that directly reads its activation or None) for every conv of a chain model."""
    mods = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d,
                                                          nn.Linear))]
    out = []
    for i, m in enumerate(mods):
        if not isinstance(m, nn.Conv2d):
            continue
        bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
        j = i + (2 if bn is not None else 1)
        nxt = mods[j] if j < len(mods) and isinstance(mods[j], nn.Conv2d) else None
        out.append((m, bn, nxt))
    return out


def layer_windows(model: nn.Module, conv: nn.Conv2d, x: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """One random ``crop × crop`` window of ``conv``'s input per image of ``x`` (the parent run in eval mode)."""
    seen: list[torch.Tensor] = []
    hook = conv.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0].detach()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        hook.remove()
    a = seen[0].double()
    n, _, h, w = a.shape
    c = min(int(crop), h, w)
    ys = torch.randint(0, h - c + 1, (n,), generator=gen)
    xs = torch.randint(0, w - c + 1, (n,), generator=gen)
    return torch.stack([a[i, :, ys[i]:ys[i] + c, xs[i]:xs[i] + c] for i in range(n)])


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    with ctx.stage("data"):
        dm = setup_data(cfg)
    with ctx.stage("parent"):
        parent, pinfo = shared_parent(ctx, dm, cfg)
    parent = parent.cpu().float().eval()
    pairs = conv_pairs(parent)
    for li in t.layers:
        if not 0 <= int(li) < len(pairs) or pairs[int(li)][2] is None:
            ok = [i for i, p in enumerate(pairs) if p[2] is not None]
            raise ConfigError(f"task.layers: conv {li} is not directly read by a conv; choose among {ok}")
    x = next(iter(dm.loader("test", int(t.images))))[0][: int(t.images)].float()
    gen = torch.Generator().manual_seed(int(ctx.seed))
    rows: list[dict[str, Any]] = []
    grid = [(int(li), float(k), rep) for li in t.layers for k in t.keeps for rep in range(int(t.reps))]
    with ctx.stage("search"):
        windows = {li: layer_windows(parent, pairs[li][0], x, int(t.crop), gen) for li in {int(v) for v in t.layers}}
        for li, keep, rep in ctx.progress(grid, desc="layer x keep x draw"):
            conv, bn, consumer = pairs[li]
            data = windows[li]
            beta = float(data.reshape(len(data), -1).norm(dim=1).max())
            res = conv_layer_errors(conv, bn, consumer, keep, list(t.methods), beta, int(t.steps), gen,
                                    input_shape=tuple(data.shape[1:]), restarts=int(t.restarts), lr=float(t.lr),
                                    data=data, init_top=int(t.init_top))
            for method, r in res.items():
                rows.append({"layer": li, "channels": conv.out_channels, "keep": keep, "rep": rep, "method": method,
                             "beta": beta, **r})
    metrics: dict[str, float] = {}
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        for key in ("err_avg", "err_worst", "worst_over_avg"):
            metrics[f"{key}_{method}"] = sum(r[key] for r in mine) / len(mine)
    return {
        "method": "+".join(sorted({r["method"] for r in rows})),
        "model": str(getattr(parent, "name", cfg.model.name)),
        "dataset": dm.name,
        "metrics": metrics,
        "table": rows,
        "extra": {"parent": {k: pinfo.get(k) for k in ("key", "cached", "test_acc")}, "crop": int(t.crop),
                  "images": len(x)},
    }
