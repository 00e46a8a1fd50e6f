"""Tests of the plumbing, for any model that follows the contract of model.py.

Origin: written for dgm-course (MIT licence).

The suite is ``shared_utils.testing.ContractTests``; it holds for both stages: the model's
interface, a falling loss on a tiny batch, the checkpoint round trip, exact resume of training
(stopped by --max-steps, by a kill and by --minutes; stage 1 with its dead-code restarts, and
below stage 2 on the codes of a stage-1 checkpoint) and the commands with their errors. A few
seconds on CPU with tiny runs.
"""

import torch
from vqvae.train import main, train

from shared_utils.checkpoints import load_checkpoint
from shared_utils.testing import ContractTests, assert_resume_is_exact

torch.set_num_threads(1)  # the course machine's cores are shared


class TestPlumbing(ContractTests):
    package = "vqvae"
    evaluate_args = ("--num-samples", "0")  # the bound only: no prior samples

    def train_settings(self):
        """The suite's tiny runs, with dead codes restarted every 2 steps."""
        return {**super().train_settings(), "reset_every": 2}

    def test_prior_stage_resume_is_exact(self, tmp_path, monkeypatch):
        """Stage 2 on the codes of a (tiny) stage-1 checkpoint: the same promise."""
        stage1 = tmp_path / "vqvae.safetensors"
        train(self.train_config(tmp_path / "stage1", epochs=1, ship=stage1))

        def prior_cfg(out, **kw):
            return self.train_config(out, stage="prior", vqvae=str(stage1), **kw)

        assert_resume_is_exact(
            train, prior_cfg, tmp_path / "prior", monkeypatch, stop_at=5, kill_at=8, minutes=0.1
        )
        final = load_checkpoint(tmp_path / "prior" / "straight" / "last.safetensors")
        weights = load_checkpoint(stage1).state_dict
        stage1_keys = [k for k in weights if not k.startswith("prior.")]
        assert all(torch.equal(final.state_dict[k], weights[k]) for k in stage1_keys)  # frozen
        assert not torch.equal(final.state_dict["prior.head.weight"], weights["prior.head.weight"])

    def test_prior_stage_needs_a_vqvae_checkpoint(self, tmp_path, capsys):
        argv = ["--limit-train", "100", "--batch-size", "50", "--epochs", "1", "--quiet"]
        assert main([*argv, "--out", str(tmp_path / "c"), "--stage", "prior"]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "--vqvae" in err[0]
        assert not (tmp_path / "c").exists()  # refused before anything was written
