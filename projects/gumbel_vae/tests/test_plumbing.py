"""Tests of the plumbing, for any model that follows the contract of model.py.

Origin: written for dgm-course (MIT licence).

The suite is ``shared_utils.testing.ContractTests`` (the model's interface, a falling loss on a
tiny batch, the checkpoint round trip, exact resume of training stopped by --max-steps, by a kill
and by --minutes, the commands with their errors); here the evaluate command writes the
importance-sampled NLL under its number of samples k.
"""

import torch
from gumbel_vae.model import EVAL_K

from shared_utils.testing import ContractTests

torch.set_num_threads(1)  # the course machine's cores are shared


class TestPlumbing(ContractTests):
    package = "gumbel_vae"

    def written_metric(self) -> str:
        return f"test_nll_iwae_k{EVAL_K}_first20"
