"""PyTorch twin of host/examples/train_step.rs: builds the identical network from the description that
`train_step --describe` prints (stem, the searchable layers with their candidates, head, classifier; the
block of the paper's Table 2 as fbnet builds it), and times the same training step (forward,
cross-entropy, backward, SGD with momentum 0.9 and L2 1e-4) on seeded random data, float32, eager mode.

    python3 torch_train_step.py DESCRIPTION.json --batch N --steps N --warmup N --threads N [--device cuda]

Prints one JSON line like the Rust side: images/s, per-step seconds, peak resident memory (MB), and on a
GPU the peak of PyTorch's allocator (GPU memory as a whole is sampled from outside by benches/gpu.sh, the
same way for both frameworks). On a GPU, TF32 is off (fbnet's kernels are plain fp32) and the step ends
with a synchronising `loss.item()` as on the CPU.
"""

import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBn(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, groups=1, relu=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)]
        if relu:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


class Shuffle(nn.Module):
    """Channel shuffle as one gather, as fbnet does it."""

    def __init__(self, channels, groups):
        super().__init__()
        per = channels // groups
        self.register_buffer("index", torch.tensor([(i % groups) * per + i // groups for i in range(channels)]))

    def forward(self, x):
        return x.index_select(1, self.index)


class Block(nn.Module):
    def __init__(self, cin, cout, stride, residual, c):
        super().__init__()
        mid, g, k = c["mid"], c["groups"], c["kernel"]
        parts = []
        if c["pw1"]:
            parts.append(ConvBn(cin, mid, 1, groups=g))
            if g > 1:
                parts.append(Shuffle(mid, g))
        parts.append(ConvBn(mid, mid, k, stride, groups=mid))
        parts.append(ConvBn(mid, cout, 1, groups=g, relu=False))
        self.body = nn.Sequential(*parts)
        self.residual = residual

    def forward(self, x):
        y = self.body(x)
        return y + x if self.residual else y


class Layer(nn.Module):
    """All candidates of a searchable layer; skip is the identity."""

    def __init__(self, spec):
        super().__init__()
        self.blocks = nn.ModuleList(
            [nn.Identity() if c["name"] == "skip" else
             Block(spec["cin"], spec["cout"], spec["stride"], spec["residual"], c)
             for c in spec["candidates"]])

    def forward(self, x, m=None):
        if len(self.blocks) == 1:
            return self.blocks[0](x)
        return sum(m[i] * b(x) for i, b in enumerate(self.blocks))


class Net(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.stem = ConvBn(d["channels"], d["stem_out"], 3, d["stem_stride"])
        self.layers = nn.ModuleList([Layer(s) for s in d["layers"]])
        self.head = ConvBn(d["head_in"], d["head_out"], 1)
        self.fc = nn.Linear(d["head_out"], d["classes"])

    def forward(self, x, mix=None):
        x = self.stem(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, None if mix is None else mix[i])
        x = self.head(x).mean((2, 3))
        return self.fc(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("description")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.description) as f:
        d = json.load(f)
    net = Net(d).train().to(dev)
    # L2 on conv and fc weights only, as fbnet's SGD
    decay = [p for n, p in net.named_parameters() if p.dim() > 1]
    rest = [p for n, p in net.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0}],
                          lr=0.01, momentum=0.9)
    r, c = d["resolution"], d["channels"]
    x = torch.randn(a.batch, c, r, r).to(dev)
    y = (torch.arange(a.batch) % d["classes"]).to(dev)
    thetas = [torch.zeros(len(s["candidates"]), device=dev) for s in d["layers"]]
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        mix = None
        if d["supernet"]:
            mix = [F.gumbel_softmax(t, tau=5.0) for t in thetas]
        loss = F.cross_entropy(net(x, mix), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if s >= a.warmup:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    params = sum(p.numel() for p in net.parameters())
    out = {"framework": "pytorch " + torch.__version__, "device": str(dev), "params": params,
           "images_per_s": a.batch * len(times) / sum(times), "step_s": times, "peak_rss_mb": peak}
    if dev.type == "cuda":
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


if __name__ == "__main__":
    main()
