"""Tests of the plumbing, for any model that follows the contract of model.py.

Origin: written for dgm-course (MIT licence).

The suite is ``shared_utils.testing.ContractTests``: it uses only the contract (``Model``,
``ModelConfig``, ``DATASET``, ``METRIC``, ``TEST_CONFIG``, train.py's ``TrainConfig``, ``train``
and ``main``, the evaluate and sample commands), so it stays as it is when model.py is replaced:
the model's interface, a falling loss on a tiny batch, the checkpoint round trip, exact resume of
training (stopped by --max-steps, by a kill and by --minutes) and the commands with their errors.
A few seconds on CPU with tiny runs. If your commands take more options, override the suite's
hooks (``train_settings``, ``train_args``, ``evaluate_args``, ``sample_args``,
``written_metric``) in the class below.
"""

import torch

from shared_utils.testing import ContractTests

torch.set_num_threads(1)  # the course machine's cores are shared


class TestPlumbing(ContractTests):
    package = "__slug__"
