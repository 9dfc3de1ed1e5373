"""The Lightning training loop: step-for-step equivalence of its speed options, bf16 numerics, augmentation."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from coresetlab.data.cifar10 import random_crop_flip
from coresetlab.errors import ConfigError
from coresetlab.lit import ClassifierModule, evaluate, fit_module
from coresetlab.lit.modules import uses_channels_last
from coresetlab.runner import RunContext

LENET = ["dataset=mnist", "model=lenet300", "optimizer=sgd", "scheduler=multistep", "scheduler.milestones=[1]",
         "dataset.train_subset=640", "dataset.val_subset=200", "logger=none", "trainer.enable_progress_bar=false"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fit(cfg, tmp_path: Path, epochs: int, callbacks=(), model=None):
    dm = instantiate(cfg.dataset)
    pl.seed_everything(0, verbose=False)
    model = model if model is not None else instantiate(cfg.model)
    scheduler = instantiate(cfg.scheduler) if cfg.scheduler else None
    module = ClassifierModule(model, instantiate(cfg.optimizer), scheduler)
    ctx = RunContext(cfg=cfg, out_dir=tmp_path, cache_dir=Path(cfg.paths.cache_dir),
                     data_root=Path(cfg.paths.data_root), seed=0, profile="smoke")
    fit = fit_module(ctx, module, dm.loader("train"), dm.loader("val"), "p", epochs, callbacks=list(callbacks))
    return model, module, fit, dm


class _CountBackward(pl.Callback):
    """Overrides a per-step hook, which forces the Lightning (manual_backward) step path."""

    def __init__(self) -> None:
        self.calls = 0

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls += 1


def test_batches_per_step_and_step_paths_are_step_for_step_identical(compose, tmp_path):
    """k mini-batches per training_step, and the plain vs hooked step path, train the very same weights."""
    states, steps = [], []
    hooks = _CountBackward()
    for i, (k, cbs) in enumerate([(1, ()), (4, ()), (3, (hooks,))]):
        cfg = compose(*LENET, f"trainer.batches_per_step={k}")
        model, module, fit, _ = _fit(cfg, tmp_path / str(i), epochs=2, callbacks=cbs)
        states.append(model.state_dict())
        steps.append(module.trainer.global_step)
        lr = module.trainer.optimizers[0].param_groups[0]["lr"]
        assert lr == pytest.approx(0.01), "the epoch scheduler (milestone 1, gamma 0.1) stepped once per epoch"
    assert hooks.calls == 2 * 10  # 640 samples / batch 64 = 10 mini-batches per epoch, one backward each
    assert steps == [20, 20, 20]  # every mini-batch is one optimizer step for global_step
    for other in states[1:]:
        assert all(torch.equal(states[0][n], other[n]) for n in states[0])


def test_speed_options_are_checked(compose, tmp_path):
    cfg = compose(*LENET, "trainer.batches_per_step=0")
    with pytest.raises(ConfigError, match="batches_per_step"):
        _fit(cfg, tmp_path, epochs=1)


class _EpochLosses(pl.Callback):
    """The epoch-mean ``train_loss`` of every epoch (logged by the module at the end of each epoch)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            self.losses.append(float(trainer.callback_metrics["train_loss"]))

    def on_fit_end(self, trainer, pl_module) -> None:
        self.losses.append(float(trainer.callback_metrics["train_loss"]))


def test_bf16_channels_last_cnn_still_learns(compose, tmp_path):
    """bf16 autocast + channels-last on a small VGG (CIFAR-10 subset): the loss goes down as in fp32."""
    runs = {}
    for precision, cl in (("32-true", "false"), ("bf16-mixed", "true")):
        cfg = compose("dataset=cifar10", "model=vgg19", "model.cfg=[16,M,32,M,32,M,64,M,64]", "optimizer=adam",
                      "dataset.train_subset=512", "dataset.val_subset=128", "dataset.augment=false",
                      f"trainer.precision={precision}", f"trainer.channels_last={cl}", "logger=none",
                      "trainer.enable_progress_bar=false")
        losses = _EpochLosses()
        model, module, _, dm = _fit(cfg, tmp_path / precision, epochs=3, callbacks=[losses])
        runs[precision] = losses.losses
    assert module.channels_last and uses_channels_last(model)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed precision keeps fp32 weights
    bf16 = runs["bf16-mixed"]
    assert len(bf16) == 3 and bf16[0] > bf16[1] > bf16[2] and bf16[2] < bf16[0] - 0.03, runs
    assert bf16 == pytest.approx(runs["32-true"], abs=0.01), runs
    # evaluation follows the model's memory format; contiguous inputs give the same numbers
    assert evaluate(model, dm.loader("val"))["loss"] == pytest.approx(
        evaluate(model, dm.loader("val"), channels_last=False)["loss"], abs=1e-4)


def test_channels_last_leaves_mlps_alone(compose, tmp_path):
    cfg = compose(*LENET, "trainer.channels_last=true")
    model, module, _, _ = _fit(cfg, tmp_path, epochs=1)
    assert not module.channels_last and not uses_channels_last(model)


def _crop_flip_reference(x: torch.Tensor, gen: torch.Generator, pad: int) -> torch.Tensor:
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    out = torch.stack([xp[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    return torch.stack([o.flip(-1) if f else o for o, f in zip(out, flip)])


def test_random_crop_flip_matches_a_per_sample_reference():
    x = torch.rand(16, 3, 8, 8)
    for pad in (0, 1, 4):
        got = random_crop_flip(x, torch.Generator().manual_seed(pad), pad=pad)
        assert torch.equal(got, _crop_flip_reference(x, torch.Generator().manual_seed(pad), pad))


def test_matching_module_switches_student_and_parent_layout():
    from coresetlab.lit import MatchingModule
    from coresetlab.models.vgg import VGG

    small, parent = VGG(cfg=[8, "M", 8, "M", 8, "M", 8, "M", 8]), VGG(cfg=[16, "M", 16, "M", 16, "M", 16, "M", 16])
    module = MatchingModule(small, parent, lambda p: torch.optim.SGD(p, lr=0.1), channels_last=True)
    assert module.channels_last and uses_channels_last(small) and uses_channels_last(parent)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = module._loss(x, y)
    assert torch.isfinite(loss) and loss.requires_grad
    module.set_channels_last(False)
    assert not uses_channels_last(small) and not uses_channels_last(parent)


def test_plateau_schedule_steps_on_the_validation_metric(compose, tmp_path):
    """FineTuneModule's ReduceLROnPlateau is stepped with val_loss after each validation (manual optimization
    steps no metric-driven scheduler by itself): with a learning rate too small to improve anything and
    patience 0, the rate must fall every epoch."""
    from coresetlab.lit.finetune import EpochHistory, FineTuneModule

    cfg = compose(*LENET)
    dm = instantiate(cfg.dataset)
    pl.seed_everything(0, verbose=False)
    opt = instantiate({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1e-12})
    plateau = instantiate({"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True,
                           "factor": 0.5, "patience": 0, "threshold": 1e-3})
    module = FineTuneModule(instantiate(cfg.model), opt, plateau, scheduler_monitor="val_loss")
    ctx = RunContext(cfg=cfg, out_dir=tmp_path, cache_dir=Path(cfg.paths.cache_dir),
                     data_root=Path(cfg.paths.data_root), seed=0, profile="smoke")
    hist = EpochHistory()
    fit_module(ctx, module, dm.loader("train"), dm.loader("val"), "p", 3, callbacks=[hist])
    lrs = [r["lr"] for r in hist.rows]
    assert lrs == pytest.approx([5e-13, 2.5e-13, 1.25e-13])
