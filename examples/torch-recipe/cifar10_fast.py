"""airbench94's CIFAR-10 recipe in PyTorch with the settings of examples/cifar10-fast.toml,
to compare per-epoch time and accuracy with `strata train` on the same machine.

    ../torch-venv/bin/python examples/torch-recipe/cifar10_fast.py ../shared/data/cifar10 \
        --epochs 10 --threads 2 [--stop-after N]

Same as the strata spec, step for step: the JPEG image folders, all 50,000
training images, per-pixel whitening (std floored at 0.01) fitted on them; a
frozen 2x2 patch-whitening convolution (the eigenvectors of the covariance of
the patches of 5,000 training images spread over the set, scaled by
1/sqrt(lambda + 5e-4), and their negations; biases -W m that train for 3 epochs);
GELU (tanh form); three groups of conv -> 2x2 max-pool -> batch norm -> GELU ->
conv -> batch norm -> GELU at 64/256/256 slices (convolutions without bias,
PyTorch's default initialisation with the first min(in, out) kernels set to the
identity; batch norm without a learned scale, momentum 0.4, eps 1e-12); a 3x3
max-pool, a bias-free linear layer, logits times 1/9. Loss: cross-entropy with
label smoothing 0.2, mean over the batch of 1024. SGD with Nesterov momentum
0.85; rate 1.5 times a triangle (0.2 -> 1 at 23 % of the steps -> 0.07);
weight decay 1.3304e-3 on the weights (coupled), on the batch-norm shifts at
1/64 with 64x their rate; look-ahead every 5 steps with decay 0.7738 (n/N)^3
over the weights and the running statistics, the run ending on the slow
weights. Augmentation: 2-pixel translations with reflected edges and
alternating flips (a random flip per image, mirrored again in odd epochs).
Test: logits averaged over the image and its mirror (1/4 each) and both
shifted by one pixel up-left and down-right, reflected (1/8 each).
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


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, c):
        super().__init__(c, eps=1e-12, momentum=0.4)
        self.weight.requires_grad = False


def conv(cin, cout):
    c = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(c.weight[: min(cin, cout)])
    return c


class Group(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1, self.norm1 = conv(cin, cout), BatchNorm(cout)
        self.conv2, self.norm2 = conv(cout, cout), BatchNorm(cout)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)), approximate="tanh")
        return F.gelu(self.norm2(self.conv2(x)), approximate="tanh")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        self.groups = nn.Sequential(Group(24, 64), Group(64, 256), Group(256, 256))
        self.head = nn.Linear(256, 10, bias=False)

    def forward(self, x):
        x = F.gelu(self.whiten(x), approximate="tanh")
        x = F.max_pool2d(self.groups(x), 3).flatten(1)
        return self.head(x) / 9.0


def fit_whitening(layer, x, eps=5e-4):
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    mean = patches.mean(0)
    cov = torch.cov(patches.T, correction=0)
    vals, vecs = torch.linalg.eigh(cov)
    vals, vecs = vals.flip(0), vecs.T.flip(0)  # decreasing
    w = vecs / torch.sqrt(vals + eps)[:, None]
    b = -w @ mean
    with torch.no_grad():
        layer.weight.copy_(torch.cat([w, -w]).reshape(24, 3, 2, 2).float())
        layer.bias.copy_(torch.cat([b, -b]).float())


def translate(x, g):
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    tops = torch.randint(0, 5, (n,), generator=g).tolist()
    lefts = torch.randint(0, 5, (n,), generator=g).tolist()
    return torch.stack([padded[i, :, t:t + 32, l:l + 32] for i, (t, l) in enumerate(zip(tops, lefts))])


def tta_logits(model, x):
    def mirror(v):
        return 0.5 * model(v) + 0.5 * model(v.flip(3))

    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * mirror(p[:, :, 0:32, 0:32]) + 0.5 * mirror(p[:, :, 2:34, 2:34])
    return 0.5 * mirror(x) + 0.5 * shifted


def accuracy(model, x, y, tta):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            xb = x[i:i + 500]
            out = tta_logits(model, xb) if tta else model(xb)
            correct += (out.argmax(1) == y[i:i + 500]).sum().item()
    model.train()
    return correct / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stop-after", type=int, default=None,
                   help="train only this many epochs of the --epochs schedule, then test")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    xtr, ytr = load_split(a.data, "train")
    xte, yte = load_split(a.data, "test")
    mean, std = xtr.mean(0), np.maximum(xtr.std(0), 0.01)
    xtr, xte = [torch.from_numpy((v - mean) / std) for v in (xtr, xte)]
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    print(f"loaded in {time.time() - t0:.1f}s", flush=True)

    model = Net()
    spread = [i * len(xtr) // 5000 for i in range(5000)]
    fit_whitening(model.whiten, xtr[spread])
    lam, batch = 1.3304e-3, 1024
    shifts = [q for n, q in model.named_parameters() if "norm" in n and q.requires_grad]
    weights = [q for n, q in model.named_parameters() if "norm" not in n and q.requires_grad and q.dim() > 1]
    whiten_bias = [model.whiten.bias]
    opt = torch.optim.SGD(
        [
            {"params": shifts, "lr": 1.5 * 64, "weight_decay": lam / 64, "base": 64.0},
            {"params": weights, "lr": 1.5, "weight_decay": lam, "base": 1.0},
            {"params": whiten_bias, "lr": 1.5, "weight_decay": 0.0, "base": 1.0},
        ],
        lr=1.5,
        momentum=0.85,
        nesterov=True,
    )
    steps_per_epoch = math.ceil(len(xtr) / batch)
    total = a.epochs * steps_per_epoch

    def factor(step):
        t = step / total
        if t < 0.23:
            return 0.2 + 0.8 * t / 0.23
        return 1.0 + (0.07 - 1.0) * (t - 0.23) / 0.77

    slow = {k: v.clone() for k, v in model.state_dict().items() if v.dtype == torch.float32}

    def lookahead(decay):
        state = model.state_dict()
        for k, e in slow.items():
            if k == "whiten.weight":
                continue
            e.lerp_(state[k], 1 - decay)
            state[k].copy_(e)

    g = torch.Generator().manual_seed(a.seed)
    base_flip = torch.rand(len(xtr), generator=g) < 0.5
    step, train_seconds = 0, 0.0
    for epoch in range(a.epochs if a.stop_after is None else min(a.stop_after, a.epochs)):
        t = time.time()
        model.whiten.bias.requires_grad = epoch < 3
        order = torch.randperm(len(xtr), generator=g)
        correct = seen = 0
        for i in range(0, len(xtr), batch):
            idx = order[i:i + batch]
            x, y = translate(xtr[idx], g), ytr[idx]
            flip = base_flip[idx] ^ (epoch % 2 == 1)
            x[flip] = x[flip].flip(3)
            for group in opt.param_groups:
                group["lr"] = 1.5 * group["base"] * factor(step)
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 5 == 0:
                lookahead(0.7738 * (step / total) ** 3)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        if epoch + 1 == a.epochs:
            lookahead(1.0)
        train_seconds += time.time() - t
        print(f"epoch {epoch + 1}: train {correct / seen:.4f}  {time.time() - t:.1f}s  "
              f"({seen / (time.time() - t):.0f} images/s)", flush=True)
    test = accuracy(model, xte, yte, tta=False)
    t = time.time()
    test_tta = accuracy(model, xte, yte, tta=True)
    print(f"test {test:.4f} (one view), {test_tta:.4f} (tta, {time.time() - t:.1f}s); "
          f"training {train_seconds:.1f}s; torch {torch.__version__}, {a.threads} threads", flush=True)


if __name__ == "__main__":
    main()
