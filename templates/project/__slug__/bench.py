"""Speed benchmark: training steps per second on CPU (run by `make bench`).

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import time

import torch

from .model import IndependentBernoulli


def main() -> None:
    torch.set_num_threads(1)
    model = IndependentBernoulli()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.bernoulli(torch.full((128, 1, 28, 28), 0.2))
    steps = 200
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.nll(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    print(f"train step, batch 128: {steps / seconds:.0f} steps/s ({1000 * seconds / steps:.2f} ms)")


if __name__ == "__main__":
    main()
