#!/usr/bin/env python3
# Prints the PyTorch (and NumPy) values the training tests compare against: parameters after three
# steps of each optimizer configuration, clip_grad_norm_, AutoClip thresholds, and the fused
# losses with their gradients, all float32 on the CPU. The tests hold these numbers as literals
# (Tests/RecurTests/Training*Tests.swift) and name this script and the torch version; rerun it
# and paste the output there when a reference changes:
#
#     .venv-torch/bin/python tools/training_reference.py
import numpy as np
import torch


def lit(t):
    return "[" + ", ".join(repr(float(v)) for v in t.detach().reshape(-1).tolist()) + "]"


print("torch", torch.__version__, "numpy", np.__version__)

# Optimizers: two parameters, three steps with fixed gradients.
p0 = [0.5, -1.0, 0.25, 2.0, -0.75]
p1 = [0.1, -0.2, 0.3, 0.4, 0.5, -0.6]
g0 = [[0.3, -0.1, 0.8, -1.2, 0.05], [-0.2, 0.4, 0.1, 0.9, -0.3], [0.6, 0.0, -0.5, 0.2, 1.1]]
g1 = [[1.0, -2.0, 0.5, 0.0, 0.25, -0.75], [0.5, 0.5, -1.0, 2.0, -0.25, 0.1], [-0.3, 1.5, 0.7, -0.4, 0.0, 0.9]]
configs = {
    "sgdNesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "sgdDampening": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1),
    "sgdPlain": lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=0.05),
    "adamDefaults": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adamWeightDecay": lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    "adamWDefaults": lambda ps: torch.optim.AdamW(ps, lr=0.01),
    "adamWDecay": lambda ps: torch.optim.AdamW(ps, lr=0.05, betas=(0.8, 0.99), weight_decay=0.1),
    "rmsPropDefaults": lambda ps: torch.optim.RMSprop(ps, lr=0.01),
    "rmsPropMomentum": lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, momentum=0.9, weight_decay=0.1),
}
for name, make in configs.items():
    a = torch.tensor(p0, requires_grad=True)
    b = torch.tensor(p1).reshape(2, 3).requires_grad_(True)
    optimizer = make([a, b])
    for step in range(3):
        a.grad = torch.tensor(g0[step])
        b.grad = torch.tensor(g1[step]).reshape(2, 3)
        optimizer.step()
    print(f'"{name}": ({lit(a)}, {lit(b)}),')

# clip_grad_norm_ that clips (max_norm 1) and that does not (100).
for max_norm in [1.0, 100.0]:
    a = torch.zeros(5, requires_grad=True)
    b = torch.zeros(2, 3, requires_grad=True)
    a.grad = torch.tensor(g0[0])
    b.grad = torch.tensor(g1[0]).reshape(2, 3)
    total = torch.nn.utils.clip_grad_norm_([a, b], max_norm)
    print("clip", max_norm, repr(float(total)), lit(a.grad), lit(b.grad))

# AutoClip (Seetharaman et al. 2020): threshold = 25th percentile of the norm history so far, then
# clip_grad_norm_ to it, for gradients [0.6 n, 0.8 n] of norm n.
history = []
for n in [3.0, 1.0, 4.0, 1.5, 5.0]:
    history.append(n)
    threshold = float(np.percentile(history, 25))
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([0.6 * n, 0.8 * n])
    torch.nn.utils.clip_grad_norm_([p], threshold)
    print("autoclip", threshold, lit(p.grad))
print("percentiles", [float(np.percentile([5, 1, 4, 2], q)) for q in [0, 10, 50, 90, 100]])

# Losses and their gradients; logits of +-30 and +-100 check stability.
logits = torch.tensor([0.3, -1.2, 4.0, -30.0, 100.0, -100.0, 0.0], requires_grad=True)
targets = torch.tensor([1.0, 0.0, 0.25, 1.0, 0.0, 0.0, 0.5])
loss = torch.nn.BCEWithLogitsLoss()(logits, targets)
loss.backward()
print("bce", repr(float(loss.detach())), lit(logits.grad))

x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3], [-50.0, 60.0, 0.0], [0.1, 0.1, 0.1], [3.0, -2.0, 1.0]],
                 requires_grad=True)
y = torch.tensor([2, 0, 1, 0, 0])
loss = torch.nn.CrossEntropyLoss(ignore_index=0)(x, y)
loss.backward()
print("ce ignore 0", repr(float(loss.detach())), lit(x.grad))
x.grad = None
loss = torch.nn.CrossEntropyLoss()(x, y)
loss.backward()
print("ce", repr(float(loss.detach())), lit(x.grad))

p = torch.tensor([0.5, -1.0, 2.0, 3.5, -0.25], requires_grad=True)
t = torch.tensor([0.0, -1.5, 2.5, 1.0, 0.25])
loss = torch.nn.MSELoss()(p, t)
loss.backward()
print("mse", repr(float(loss.detach())), lit(p.grad))
