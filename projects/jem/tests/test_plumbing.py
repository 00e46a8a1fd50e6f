"""Tests of the plumbing, for any model that follows the contract of model.py.

Origin: written for dgm-course (MIT licence).

The suite is ``shared_utils.testing.ContractTests`` (the model's interface, a falling loss on a
tiny batch, the checkpoint round trip, exact resume of training stopped by --max-steps, by a kill
and by --minutes, the replay buffer included, the commands with their errors); here with a small
replay buffer and short SGLD chains.
"""

import torch
from jem.model import METRIC

from shared_utils.testing import ContractTests

torch.set_num_threads(1)  # the course machine's cores are shared


class TestPlumbing(ContractTests):
    package = "jem"
    train_args = ("--buffer-size", "30", "--sgld-steps", "2")
    sample_args = ("--sgld-steps", "3")

    def train_settings(self):
        """The suite's tiny runs with a small buffer and short chains."""
        return {**super().train_settings(), "buffer_size": 30, "sgld_steps": 2, "eval_every": 2}

    def written_metric(self) -> str:
        return f"{METRIC}_first20"
