"""Reference optimum of a multinomial logistic regression found by
torch.optim.LBFGS (strong-Wolfe line search), for the L-BFGS parity test.

Usage: lbfgs_reference.py OUT_DIR PROBLEM.safetensors

PROBLEM holds `x` [N, D], `y` [N] (int64 class indices), and the start point
`w` [C, D], `b` [C]; the objective is
    cross_entropy(x @ w.T + b, y) (mean over rows) + l2 * sum(w^2)
with l2 = `l2` [1]. Everything is done in float64.

Writes OUT_DIR/optimum.safetensors: `loss` [1], `w`, `b` at the optimum,
`grad_max` [1] (largest absolute gradient entry there), `iterations` [1] and
`evaluations` [1] (int64).
"""
import sys

import torch
from safetensors.torch import load_file, save_file

out, problem = sys.argv[1], sys.argv[2]
p = load_file(problem)
x, y = p["x"].double(), p["y"].long()
l2 = float(p["l2"].double().item())
w = p["w"].double().clone().requires_grad_(True)
b = p["b"].double().clone().requires_grad_(True)

opt = torch.optim.LBFGS(
    [w, b],
    lr=1.0,
    max_iter=1000,
    max_eval=100000,
    tolerance_grad=1e-12,
    tolerance_change=1e-14,
    history_size=20,
    line_search_fn="strong_wolfe",
)


def objective():
    return torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2 * (w * w).sum()


def closure():
    opt.zero_grad()
    loss = objective()
    loss.backward()
    return loss


# Several calls in case one stops on max_iter before the tolerances.
for _ in range(5):
    opt.step(closure)
loss = closure()
grad_max = max(w.grad.abs().max().item(), b.grad.abs().max().item())
state = opt.state[w]
save_file(
    {
        "loss": torch.tensor([loss.item()], dtype=torch.float64),
        "w": w.detach().contiguous(),
        "b": b.detach().contiguous(),
        "grad_max": torch.tensor([grad_max], dtype=torch.float64),
        "iterations": torch.tensor([state["n_iter"]], dtype=torch.int64),
        "evaluations": torch.tensor([state["func_evals"]], dtype=torch.int64),
    },
    f"{out}/optimum.safetensors",
)
