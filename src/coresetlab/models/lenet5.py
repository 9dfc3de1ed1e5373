"""LeNet-5 as used in the compression literature (Caffe's MNIST LeNet; Han et al. 2015, Guo et al. 2016,
Ullrich et al. 2017, Dubey et al. 2018 Table 2).

conv1 20@5x5 -> max-pool 2 -> conv2 50@5x5 -> max-pool 2 -> fc1 500 -> ReLU -> fc2 10:
520 + 25,050 + 400,500 + 5,010 = 431,080 parameters. As in Caffe's definition there is no
non-linearity after the convolutions (``conv_activation`` adds one if wanted).

The network is a flat :class:`torch.nn.Sequential` with named children so compression code can split
it into a cached prefix and a re-evaluated suffix and replace layers by name.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from coresetlab.models.utils import make_activation


class LeNet5(nn.Sequential):
    """Caffe LeNet-5 for ``in_channels`` x ``image_size`` x ``image_size`` inputs (MNIST: 1x28x28)."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        conv_channels: tuple[int, int] = (20, 50),
        hidden: int = 500,
        num_classes: int = 10,
        kernel_size: int = 5,
        conv_activation: str | None = None,
        name: str | None = None,
    ) -> None:
        c1, c2 = (int(c) for c in conv_channels)
        side = ((image_size - kernel_size + 1) // 2 - kernel_size + 1) // 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for two {kernel_size}x{kernel_size} convs + pools")
        layers: list[tuple[str, nn.Module]] = [("conv1", nn.Conv2d(in_channels, c1, kernel_size))]
        if conv_activation:
            layers.append(("act1", make_activation(conv_activation)))
        layers += [("pool1", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(c1, c2, kernel_size))]
        if conv_activation:
            layers.append(("act2", make_activation(conv_activation)))
        layers += [
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten(1)),
            ("fc1", nn.Linear(c2 * side * side, hidden)),
            ("relu", nn.ReLU()),
            ("fc2", nn.Linear(hidden, num_classes)),
        ]
        super().__init__(OrderedDict(layers))
        self.name = name or "lenet5"
