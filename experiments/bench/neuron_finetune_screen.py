"""Screen fine-tuning recipes for neuron Table 1 on VALIDATION error (single seed, in one process).

Not a reproduction and not the pipeline: a lean loop (whole-batch tensors, no Lightning) that reuses
the pipeline's parent (from the parent cache), data split and pruning (``compress_mlp`` with the
seed stream of ``coresetlab.tasks.neuron.pruning``) to compare recipes cheaply on a shared CPU. The
chosen recipe is then run through ``run.py`` (the numbers that count). Selection uses the validation
error of the best-validation checkpoint only; the test error is printed for the record.

    PYTHONPATH=src python experiments/bench/neuron_finetune_screen.py --seed 0 --out /tmp/screen.jsonl \
        --variants base incoming none ...   # names of VARIANTS; --method uniform|scratch for the baselines

The selection behind conf/experiment/lenet_neuron_coreset.yaml (the seed's parent must be cached: run
the experiment once for that seed) screened every variant below on seed 0 (about 0.5-1.5 CPU-minutes
each with torch_threads=1) and checked the top ones on seed 1; the validation errors are in the note of
experiments/neuron_table1.yaml. The chosen recipe is ``plateau_in_lr1e-2_wd3e-4``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import coresetlab.resolvers  # noqa: F401
from coresetlab.lit.finetune import distillation_loss
from coresetlab.lit.parents import parent_key, parent_recipe
from coresetlab.methods.neuron.scratch import scratch_mlp
from coresetlab.methods.shared.mlp_surgery import compress_mlp, hidden_widths_for_compression
from coresetlab.tasks.neuron.common import layer_input_betas

REPO = Path(__file__).resolve().parents[2]
BASE = {"opt": "adam", "lr": 1e-3, "wd": 1e-4, "sched": None, "epochs": 100, "patience": 10,
        "monitor": "val_loss", "reweight": "outgoing", "alpha": 0.0, "T": 4.0, "bs": 128, "method": "coreset"}
VARIANTS: dict[str, dict] = {
    "base": {},                                                      # the previous default
    "incoming": {"reweight": "incoming"},
    "none": {"reweight": "none"},
    "acc_p20": {"monitor": "val_acc", "patience": 20},
    "cos40": {"sched": "cosine", "epochs": 40, "patience": None, "monitor": "val_acc", "wd": 0.0},
    "cos40_in": {"sched": "cosine", "epochs": 40, "patience": None, "monitor": "val_acc", "wd": 0.0,
                 "reweight": "incoming"},
    "cos40_wd": {"sched": "cosine", "epochs": 40, "patience": None, "monitor": "val_acc"},
    "cos40_in_wd": {"sched": "cosine", "epochs": 40, "patience": None, "monitor": "val_acc", "reweight": "incoming"},
    "plateau": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss"},
    "plateau_in": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss", "reweight": "incoming"},
    "sgd_cos40": {"opt": "sgd", "lr": 0.05, "wd": 0.0, "sched": "cosine", "epochs": 40, "patience": None,
                  "monitor": "val_acc"},
    "sgd_cos40_in": {"opt": "sgd", "lr": 0.05, "wd": 0.0, "sched": "cosine", "epochs": 40, "patience": None,
                     "monitor": "val_acc", "reweight": "incoming"},
    "plateau_in_lr3": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss", "reweight": "incoming",
                       "lr": 3e-3},
    "plateau_in_lr1e-2": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                          "reweight": "incoming", "lr": 1e-2},
    "plateau_in_lr3e-2": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                          "reweight": "incoming", "lr": 3e-2},
    "plateau_in_lr1e-2_wd3e-4": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                                 "reweight": "incoming", "lr": 1e-2, "wd": 3e-4},
    "plateau_in_lr1e-2_wd3e-5": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                                 "reweight": "incoming", "lr": 1e-2, "wd": 3e-5},
    "plateau_in_lr1e-2_wd1e-3": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                                 "reweight": "incoming", "lr": 1e-2, "wd": 1e-3},
    "plateau_in_lr1e-2_wd3e-3": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                                 "reweight": "incoming", "lr": 1e-2, "wd": 3e-3},
    "plateau_lr1e-2_wd3e-4": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                              "lr": 1e-2, "wd": 3e-4},
    "plateau_none_lr1e-2_wd3e-4": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                                   "reweight": "none", "lr": 1e-2, "wd": 3e-4},
    "cos40_in_lr1e-2_wd3e-4": {"sched": "cosine", "epochs": 40, "patience": None, "monitor": "val_loss",
                               "reweight": "incoming", "lr": 1e-2, "wd": 3e-4},
    "chosen_distill": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                       "reweight": "incoming", "lr": 1e-2, "wd": 3e-4, "alpha": 0.9},
    "plateau_lr1e-2": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss", "lr": 1e-2},
    "plateau_lr3": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss", "lr": 3e-3},
    "plateau_in_lr3_wd0": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                           "reweight": "incoming", "lr": 3e-3, "wd": 0.0},
    "plateau_in_lr3_acc": {"sched": "plateau", "epochs": 100, "patience": 20, "monitor": "val_acc",
                           "reweight": "incoming", "lr": 3e-3},
    "plateau_in_lr3_distill": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                               "reweight": "incoming", "lr": 3e-3, "alpha": 0.9},
    "plateau_acc_in": {"sched": "plateau", "epochs": 100, "patience": 20, "monitor": "val_acc", "reweight": "incoming"},
    "plateau_in_distill": {"sched": "plateau", "epochs": 60, "patience": 15, "monitor": "val_loss",
                           "reweight": "incoming", "alpha": 0.9},
    "cos40_lr3e-4": {"sched": "cosine", "epochs": 40, "patience": None, "monitor": "val_acc", "wd": 0.0, "lr": 3e-4},
    "cos40_in_distill": {"sched": "cosine", "epochs": 40, "patience": None, "monitor": "val_acc", "wd": 0.0,
                         "reweight": "incoming", "alpha": 0.9},
}


def setup(seed: int):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(config_name="config", overrides=["+experiment=lenet_neuron_coreset", f"seed={seed}"])
    dm = instantiate(cfg.dataset)
    dm.setup()
    key = parent_key(parent_recipe(cfg.model, cfg.dataset, cfg.task.parent, seed))
    parent = instantiate(cfg.model)
    path = Path(cfg.paths.cache_dir) / "parents" / key / "model.pt"
    if not path.exists():
        raise SystemExit(f"parent {key} not in the cache: run `python run.py +experiment=lenet_neuron_coreset "
                         f"seed={seed} task.finetune.epochs=0` first")
    parent.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    parent.eval()
    return cfg, dm, parent


def split(dm, name):
    ds = dm.dataset(name)
    return ds.x.flatten(1), ds.y


@torch.no_grad()
def evaluate(model, x, y):
    model.eval()
    out = model(x)
    return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).double().mean())


def small_model(cfg, parent, dm, seed: int, v: dict):
    hidden = hidden_widths_for_compression(parent.widths, float(cfg.task.compression.rate),
                                           cfg.task.compression.prune_layers)
    if v["method"] == "scratch":
        return scratch_mlp(parent, hidden, seed * 1_000_003 + 7919)
    sel = instantiate(cfg.coreset_method if v["method"] == "coreset" else
                      {**cfg.coreset_method, "method": "uniform", "name": "neuron_uniform"})
    betas = layer_input_betas(parent, split(dm, "train_eval")[0])
    g = torch.Generator().manual_seed(seed * 1_000_003)  # the pipeline's stream (offset 0)
    small, _ = compress_mlp(parent, hidden, sel, "top_down", generator=g, betas=betas, reweight=v["reweight"])
    return small


def train(model, parent, data, v: dict, seed: int):
    (xt, yt), (xv, yv) = data["train"], data["val"]
    params = list(model.parameters())
    opt = (torch.optim.Adam(params, lr=v["lr"], weight_decay=v["wd"]) if v["opt"] == "adam" else
           torch.optim.SGD(params, lr=v["lr"], momentum=0.9, nesterov=True, weight_decay=v["wd"]))
    sched = None
    if v["sched"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=v["epochs"])
    elif v["sched"] == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.2, patience=3)
    g = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, hist = None, None, -1, []
    for epoch in range(v["epochs"]):
        model.train()
        for idx in torch.randperm(len(xt), generator=g).split(v["bs"]):
            xb, yb = xt[idx], yt[idx]
            out = model(xb)
            if v["alpha"] > 0:
                with torch.no_grad():
                    tl = parent(xb)
                loss = distillation_loss(out, tl, yb, v["alpha"], v["T"])
            else:
                loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        vl, va = evaluate(model, xv, yv)
        hist.append(round(va, 4))
        score = vl if v["monitor"] == "val_loss" else -va
        if best is None or score < best:
            best, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
        if sched is not None:
            sched.step(vl) if v["sched"] == "plateau" else sched.step()
        if v["patience"] is not None and epoch - best_epoch >= v["patience"]:
            break
    model.load_state_dict(best_state)
    return best_epoch, epoch + 1, hist


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=["base"])
    ap.add_argument("--method", default="coreset", choices=["coreset", "uniform", "scratch"])
    ap.add_argument("--out", default="neuron_finetune_screen.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, dm, parent = setup(args.seed)
    data = {s: split(dm, s) for s in ("train", "val", "test")}
    for name in args.variants:
        v = {**BASE, **VARIANTS[name], "method": args.method}
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)
        model = small_model(cfg, parent, dm, args.seed, v)
        before = evaluate(model, *data["val"])[1]
        best_epoch, run, hist = train(model, parent, data, v, args.seed)
        rec = {"variant": name, "seed": args.seed, **v, "val_acc_before": before,
               "val_err": 1 - evaluate(model, *data["val"])[1], "test_err": 1 - evaluate(model, *data["test"])[1],
               "best_epoch": best_epoch, "epochs_run": run, "seconds": round(time.perf_counter() - t0, 1),
               "val_acc_history": hist}
        print(json.dumps({k: rec[k] for k in ("variant", "method", "val_err", "test_err", "best_epoch",
                                              "epochs_run", "seconds")}), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
