# The PyTorch peer of benches/train.rs: full-batch Adam, shared 100-unit layer,
# three heads, 3150 x 1280 features, 1024 epochs.
import time, torch
torch.manual_seed(0)
n, d = 3150, 1280
x = torch.rand(n, d) * 6
ym = torch.arange(n) % 7; yv = (torch.arange(n) // 7) % 10; yr = torch.randn(n, 1)
trunk = torch.nn.Sequential(torch.nn.Linear(d, 100), torch.nn.ReLU())
h1, h2, h3 = torch.nn.Linear(100, 7), torch.nn.Linear(100, 10), torch.nn.Linear(100, 1)
params = [p for m in (trunk, h1, h2, h3) for p in m.parameters()]
opt = torch.optim.Adam(params, 1e-3)
ce = torch.nn.CrossEntropyLoss(); mse = torch.nn.MSELoss()
t = time.time()
for epoch in range(1024):
    opt.zero_grad()
    z = trunk(x)
    loss = ce(h1(z), ym) + ce(h2(z), yv) + mse(h3(z), yr)
    loss.backward(); opt.step()
print(f"pytorch 1024 epochs: {time.time() - t:.2f} s")
