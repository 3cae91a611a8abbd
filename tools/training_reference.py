import torch
torch.set_printoptions(precision=10)
def lit(t):
    return "[" + ", ".join(repr(float(v)) for v in t.detach().reshape(-1).tolist()) + "]"

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
print("torch", torch.__version__)
for name, make in configs.items():
    a = torch.tensor(p0, dtype=torch.float32, requires_grad=True)
    b = torch.tensor(p1, dtype=torch.float32, requires_grad=True).reshape(2, 3).detach().requires_grad_(True)
    opt = make([a, b])
    for step in range(3):
        a.grad = torch.tensor(g0[step], dtype=torch.float32)
        b.grad = torch.tensor(g1[step], dtype=torch.float32).reshape(2, 3)
        opt.step()
    print(f'"{name}": ({lit(a)}, {lit(b)}),')

# clip_grad_norm_
for maxNorm in [1.0, 100.0]:
    a = torch.zeros(5, requires_grad=True); b = torch.zeros(2, 3, requires_grad=True)
    a.grad = torch.tensor(g0[0]); b.grad = torch.tensor(g1[0]).reshape(2, 3)
    total = torch.nn.utils.clip_grad_norm_([a, b], maxNorm)
    print("clip", maxNorm, repr(float(total)), lit(a.grad), lit(b.grad))

# losses
logits = torch.tensor([0.3, -1.2, 4.0, -30.0, 100.0, -100.0, 0.0], requires_grad=True)
targets = torch.tensor([1.0, 0.0, 0.25, 1.0, 0.0, 0.0, 0.5])
l = torch.nn.BCEWithLogitsLoss()(logits, targets); l.backward()
print("bce", repr(float(l)), lit(logits.grad))

x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3], [-50.0, 60.0, 0.0], [0.1, 0.1, 0.1], [3.0, -2.0, 1.0]], requires_grad=True)
y = torch.tensor([2, 0, 1, 0, 0])
l = torch.nn.CrossEntropyLoss(ignore_index=0)(x, y); l.backward()
print("ce ignore0", repr(float(l)), lit(x.grad))
x.grad = None
l = torch.nn.CrossEntropyLoss()(x, y); l.backward()
print("ce", repr(float(l)), lit(x.grad))

p = torch.tensor([0.5, -1.0, 2.0, 3.5, -0.25], requires_grad=True)
t = torch.tensor([0.0, -1.5, 2.5, 1.0, 0.25])
l = torch.nn.MSELoss()(p, t); l.backward()
print("mse", repr(float(l)), lit(p.grad))
