"""Neuron coresets on the dense head of VGG-16 (Mussay et al., ICLR 2020, Table 1 row 2): ``vgg16_neuron_coreset``.

1. the VGG-16 parent with a dense head (``conf/model/vgg16_head.yaml``: 512 → 950 → 950 → 10, 1,400,310 dense
   parameters — the paper's 1.4M; derivation in that file) from the parent cache (``task.parent``);
2. target hidden widths removing ``task.compression.rate`` (0.75) of the **dense** parameters, both hidden
   layers shrunk by one factor (:func:`~coresetlab.methods.shared.mlp_surgery.hidden_widths_for_compression`:
   950-950 → 385-385, 349,975 parameters);
3. per dense layer, in ``task.compression.order`` (``top_down``: the ICLR paper's order), the neurons chosen by
   ``coreset_method`` (:class:`~coresetlab.methods.neuron.coreset.NeuronSelector`: ``neuron_coreset`` =
   Algorithm 2's sensitivity sampling, ``neuron_uniform`` = uniform; the kept neurons' outgoing weights
   reweighted as in Algorithm 2), by the same surgery as the MLP experiments
   (:func:`~coresetlab.methods.shared.mlp_surgery.compress_mlp` on ``model.classifier``). β of each dense layer
   = the largest ‖[a; 1]‖ of its inputs over ``task.beta_images`` training images (null = all); with ReLU,
   sup_{|t|≤β‖p‖}|φ(t)| = β‖p‖, so β scales every sensitivity alike and does not change the sampling;
4. fine-tuning of the whole network (``task.finetune``; the paper does not say which layers it fine-tunes),
   best validation accuracy kept;
5. the CNN record (:func:`~coresetlab.tasks.cnn.common.cnn_record`) plus the dense part's counts:
   ``dense_params_before``/``dense_params_after``/``dense_compression`` and ``head_width_l1``, ``head_width_l2``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from coresetlab.errors import ConfigError
from coresetlab.methods.neuron.coreset import NeuronSelector
from coresetlab.methods.shared.mlp_surgery import check_reweight, compress_mlp, hidden_widths_for_compression
from coresetlab.tasks.cnn.common import (
    cnn_record,
    eval_splits,
    finetune_and_measure,
    open_parent,
    validate_task,
)


def dense_params(model: torch.nn.Module) -> int:
    """Parameters of every ``nn.Linear`` of ``model`` (the dense part)."""
    return sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters())


@torch.no_grad()
def head_input_betas(model: torch.nn.Module, dm, n_images: int | None, batch: int = 500) -> dict[int, float]:
    """``β_i = max ‖[a_i; 1]‖`` of the input ``a_i`` of every dense layer ``i`` of ``model.classifier``, over the
    first ``n_images`` (None = all) un-augmented training images."""
    model = model.eval()
    head = model.classifier
    best: dict[int, float] = {}
    seen = 0
    for x, _ in dm.loader("train_eval", batch):
        if n_images is not None and seen >= n_images:
            break
        x = x[: None if n_images is None else n_images - seen]
        seen += len(x)
        h = model.pool(model.features(x.float())).flatten(1)
        for i, layer in enumerate(head.layers):
            best[i] = max(best.get(i, 0.0), float(torch.sqrt(h.square().sum(1) + 1.0).max()))
            h = layer(h)
            if i < len(head.layers) - 1:
                h = head.act(h)
    return best


def run(cfg: DictConfig, ctx) -> dict[str, Any]:
    t = cfg.task
    validate_task(t, ("finetune",))
    sel = instantiate(cfg.coreset_method)
    if not isinstance(sel, NeuronSelector):
        raise ConfigError(f"coreset_method {cfg.coreset_method.get('name')!r} is not a neuron selector "
                          "(coresetlab.methods.neuron.coreset.NeuronSelector: neuron_coreset, neuron_uniform, ...)")
    comp = t.compression
    rate, reweight = float(comp.rate), str(comp.get("reweight", "outgoing"))
    check_reweight(reweight, "relu")
    if not cfg.model.get("head"):
        raise ConfigError("vgg16_neuron_coreset needs a model with a dense head (model.head: hidden widths)")
    dm, parent, pinfo, cost_parent = open_parent(cfg, ctx)

    head = parent.classifier
    hidden = hidden_widths_for_compression(head.widths, rate)
    with ctx.stage("betas"):
        n = t.get("beta_images")
        betas = head_input_betas(parent, dm, None if n is None else int(n))
    with ctx.stage("prune"):
        gen = torch.Generator().manual_seed(int(ctx.seed))
        new_head, info = compress_mlp(head, hidden, sel, str(comp.order), generator=gen, betas=betas,
                                      reweight=reweight)
        small = copy.deepcopy(parent)
        small.classifier = new_head
        small.name = f"{getattr(parent, 'name', 'vgg16')}_{sel.name}_dense{round(100 * (1 - rate))}"
        before = eval_splits(small, dm)
    fits: dict[str, Any] = {"finetune": None}
    fits["finetune"], after, cost_small = finetune_and_measure(ctx, dm, small, t)

    d0, d1 = dense_params(parent), dense_params(small)
    metrics: dict[str, float] = {
        "dense_params_before": d0, "dense_params_after": d1, "dense_compression": 1.0 - d1 / d0,
        "compression_rate": rate, "draws": sum(int(r["draws"]) for r in info),
        **{f"head_width_l{i + 1}": int(w) for i, w in enumerate(new_head.widths[1:-1])},
    }
    rec = cnn_record(
        method=sel.name, parent=parent, small=small, pinfo=pinfo, before=before, after=after,
        cost_parent=cost_parent, cost_small=cost_small, dataset=dm.name, fits=fits, metrics=metrics,
        extra={"neuron": {"layers": info, "hidden_before": list(head.widths[1:-1]), "hidden_after": hidden,
                          "betas": betas, "order": str(comp.order), "reweight": reweight}},
    )
    rec["model"] = str(getattr(parent, "name", "vgg16"))
    return rec
