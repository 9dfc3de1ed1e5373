"""CNN experiments on CIFAR-10: AutoCL VGG-19 (Tables 1 and 3) and network slimming, on a shared parent."""
