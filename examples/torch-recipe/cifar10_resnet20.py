"""ResNet-20 on CIFAR-10 in PyTorch with the recipe of examples/cifar10-resnet20.toml,
to compare accuracy per epoch and time with `strata train` on the same machine.

    ../torch-venv/bin/python examples/torch-recipe/cifar10_resnet20.py ../shared/data/cifar10 \
        --epochs 4 --threads 2

Same as the strata spec: JPEG image folders, 5,000 training images held out for
validation, per-pixel whitening (std floored at 0.01) fitted on the rest, random
crops of the 4-padded images and flips, He et al.'s ResNet-20 (original blocks,
1x1 projection shortcuts where the shape changes) with He-normal initialisation,
SGD with momentum 0.9 and weight decay 5e-4 on conv/linear weights only, batch
128, 400 warm-up steps, then a cosine schedule from 0.1 to 0 over the run.
"""

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


def load_split(root, split):
    classes = sorted(os.listdir(os.path.join(root, split)))
    xs, ys = [], []
    for label, c in enumerate(classes):
        d = os.path.join(root, split, c)
        for f in sorted(os.listdir(d)):
            img = Image.open(os.path.join(d, f)).convert("RGB")
            xs.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
            ys.append(label)
    return np.stack(xs).astype(np.float32) / 255.0, np.array(ys, dtype=np.int64)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(3):
                layers.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def augment(x, g):
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    tops = torch.randint(0, 9, (n,), generator=g)
    lefts = torch.randint(0, 9, (n,), generator=g)
    out = torch.stack([padded[i, :, t:t + 32, l:l + 32] for i, (t, l) in enumerate(zip(tops.tolist(), lefts.tolist()))])
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def accuracy(model, x, y):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += (model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item()
    model.train()
    return correct / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--epochs", type=int, default=18)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    xtr, ytr = load_split(a.data, "train")
    xte, yte = load_split(a.data, "test")
    perm = np.random.default_rng(a.seed).permutation(len(xtr))
    val, tr = perm[:5000], perm[5000:]
    xva, yva, xtr, ytr = xtr[val], ytr[val], xtr[tr], ytr[tr]
    mean, std = xtr.mean(0), np.maximum(xtr.std(0), 0.01)
    xtr, xva, xte = [torch.from_numpy((v - mean) / std) for v in (xtr, xva, xte)]
    ytr, yva, yte = torch.from_numpy(ytr), torch.from_numpy(yva), torch.from_numpy(yte)
    print(f"loaded in {time.time() - t0:.1f}s", flush=True)

    model = ResNet20()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    rest = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}], lr=0.1, momentum=0.9)
    steps_per_epoch = math.ceil(len(xtr) / 128)
    total, warm = a.epochs * steps_per_epoch, 400

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
            loss = F.cross_entropy(out, y)
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
    print(f"test accuracy {accuracy(model, xte, yte):.2%} after {train_seconds:.1f}s of training", flush=True)


if __name__ == "__main__":
    main()
