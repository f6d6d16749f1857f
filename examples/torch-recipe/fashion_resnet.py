"""The pre-activation ResNet of examples/fashion-resnet.toml in PyTorch, with the
same recipe, to compare accuracy per epoch and time with `strata train` on the
same machine.

    ../torch-venv/bin/python examples/torch-recipe/fashion_resnet.py \
        /usr/share/datasets/fashion-mnist --epochs 3 --threads 2

Same as the strata spec: the IDX files, 5,000 training images held out for
validation, per-pixel whitening (std floored at 0.01) fitted on the rest,
random crops of the 1-padded images, flips and random erasing (p = 0.5, 2-40 %
of the image, aspect ratio in [0.3, 1/0.3], filled with 0), a 3x3 convolution
to 32 slices, three stages of two pre-activation blocks (BN-ReLU-conv-BN-ReLU-
conv, add; the first block of each stage strided, with a 1x1 projection of the
pre-activated input), BN-ReLU, the 128x4x4 features flattened into the linear
layer, He-normal initialisation, SGD with momentum 0.9 and weight decay 5e-4
on conv/linear weights only, batch 128, 300 warm-up steps then a cosine
schedule from 0.1 to 0, label smoothing 0.1, and test predictions averaged
(probabilities) over each image and its mirror. With --epochs below the
spec's 21 the schedule is compressed into those epochs, as `strata train
--epochs` does.
"""

import argparse
import gzip
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(root, prefix):
    x = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))
    return x[:, None].astype(np.float32) / 255.0, y.astype(np.int64)


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.b0 = nn.BatchNorm2d(cin)
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        h = F.relu(self.b0(x))
        skip = x if self.short is None else self.short(h)
        return self.c2(F.relu(self.b1(self.c1(h)))) + skip


class FashionResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 32, 3, 1, 1, bias=False)
        layers, cin = [], 32
        for cout in (32, 64, 128):
            for i in range(2):
                layers.append(PreActBlock(cin, cout, 2 if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(128)
        self.fc = nn.Linear(128 * 4 * 4, 10)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.layers(self.conv(x))
        return self.fc(F.relu(self.bn(x)).flatten(1))


def erase(img, g, p=0.5, lo=0.02, hi=0.4, r1=0.3):
    if torch.rand(1, generator=g).item() >= p:
        return
    h, w = img.shape[1:]
    for _ in range(10):
        a = h * w * (lo + (hi - lo) * torch.rand(1, generator=g).item())
        r = math.exp(math.log(r1) * (1 - 2 * torch.rand(1, generator=g).item()))
        eh, ew = round(math.sqrt(a * r)), round(math.sqrt(a / r))
        if eh == 0 or ew == 0 or eh > h or ew > w:
            continue
        top = torch.randint(0, h - eh + 1, (1,), generator=g).item()
        left = torch.randint(0, w - ew + 1, (1,), generator=g).item()
        img[:, top:top + eh, left:left + ew] = 0
        return


def augment(x, g):
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    tops = torch.randint(0, 3, (n,), generator=g).tolist()
    lefts = torch.randint(0, 3, (n,), generator=g).tolist()
    out = torch.stack([padded[i, :, t:t + 28, l:l + 28] for i, (t, l) in enumerate(zip(tops, lefts))])
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    for img in out:
        erase(img, g)
    return out


def accuracy(model, x, y, mirror=False):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            xb = x[i:i + 500]
            p = F.softmax(model(xb), 1)
            if mirror:
                p = p + F.softmax(model(xb.flip(3)), 1)
            correct += (p.argmax(1) == y[i:i + 500]).sum().item()
    model.train()
    return correct / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--epochs", type=int, default=21)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    perm = np.random.default_rng(a.seed).permutation(len(xtr))
    val, tr = perm[:5000], perm[5000:]
    xva, yva, xtr, ytr = xtr[val], ytr[val], xtr[tr], ytr[tr]
    mean, std = xtr.mean(0), np.maximum(xtr.std(0), 0.01)
    xtr, xva, xte = [torch.from_numpy((v - mean) / std) for v in (xtr, xva, xte)]
    ytr, yva, yte = torch.from_numpy(ytr), torch.from_numpy(yva), torch.from_numpy(yte)
    print(f"loaded in {time.time() - t0:.1f}s", flush=True)

    model = FashionResNet()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    rest = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}], lr=0.1, momentum=0.9)
    steps_per_epoch = math.ceil(len(xtr) / 128)
    total, warm = a.epochs * steps_per_epoch, 300

    def lr_at(step):
        if step < warm:
            return 0.1 * (step + 1) / warm
        return 0.05 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))

    g = torch.Generator().manual_seed(a.seed)
    step, train_seconds = 0, 0.0
    for epoch in range(1, a.epochs + 1):
        t = time.time()
        order = torch.randperm(len(xtr), generator=g)
        correct = seen = 0
        for i in range(0, len(xtr), 128):
            idx = order[i:i + 128]
            x, y = augment(xtr[idx], g), ytr[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
            step += 1
        train_seconds += time.time() - t
        print(f"epoch {epoch:3d}  loss {loss.item():.4f}  train {correct / seen:.2%}  "
              f"validation {accuracy(model, xva, yva):.2%}  {time.time() - t:.1f}s  "
              f"{seen / (time.time() - t):.0f} samples/s", flush=True)
    print(f"test accuracy {accuracy(model, xte, yte, mirror=True):.2%} (image + mirror), "
          f"{accuracy(model, xte, yte):.2%} (one view) after {train_seconds:.1f}s of training", flush=True)


if __name__ == "__main__":
    main()
