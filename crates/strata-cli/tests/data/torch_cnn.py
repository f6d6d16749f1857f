# Writes torch_cnn.safetensors (a PyTorch state dict, as `strata import` takes
# it) and torch_cnn_check.safetensors (8 inputs and PyTorch's logits for
# them), which crates/strata-cli/tests/import.rs reads; the test needs no
# torch. The network matches the spec in that test, layer for layer:
#
#   conv 1→4 3×3 pad 1 (no bias), batch norm, ReLU, 2×2 max pool, flatten,
#   linear 64→10
#
#   python torch_cnn.py      (torch and safetensors installed)
import torch
from torch import nn
from safetensors.torch import save_file

torch.manual_seed(7)
net = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1, bias=False),
    nn.BatchNorm2d(4),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(64, 10),
)
# Running statistics away from 0 and 1, and a non-trivial scale and shift.
net.train()
with torch.no_grad():
    for _ in range(5):
        net(torch.rand(32, 1, 8, 8) * 2.0 + 0.5)
    net[1].weight.uniform_(0.5, 1.5)
    net[1].bias.uniform_(-0.5, 0.5)
net.eval()
x = torch.rand(8, 1, 8, 8)
with torch.no_grad():
    logits = net(x)
save_file({k: v.contiguous() for k, v in net.state_dict().items()}, "torch_cnn.safetensors")
save_file({"x": x, "logits": logits}, "torch_cnn_check.safetensors")
print("torch", torch.__version__, "logits", logits.shape)
