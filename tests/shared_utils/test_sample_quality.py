"""shared_utils.sample_quality: FID, KID, precision/recall and class coverage against references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from shared_utils import sample_quality as sq


def gaussian(n: int, mean, std, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mean, std = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(
        std, dtype=torch.float64
    )
    return mean + std * torch.randn(n, len(mean), generator=g, dtype=torch.float64)


def fid_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """FID written out with numpy/scipy (Heusel et al. 2017, Eq. 6): ||m1-m2||^2 +
    Tr(C1 + C2 - 2 (C1 C2)^(1/2))."""
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * root))


def test_fid_of_a_set_against_itself_is_zero():
    x = gaussian(2000, [0.0] * 8, [1.0] * 8, seed=0)
    assert abs(sq.fid_from_features(x, x)) < 1e-6


def test_fid_matches_a_direct_scipy_implementation():
    a = gaussian(3000, [0.0] * 6, [1.0, 2.0, 0.5, 1.0, 1.0, 3.0], seed=1)
    mix = torch.randn(6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    b = gaussian(2500, [0.3, -1.0, 0.0, 0.2, 0.0, 1.0], [1.0] * 6, seed=3) @ mix
    ours, reference = sq.fid_from_features(a, b), fid_numpy(a.numpy(), b.numpy())
    assert ours == pytest.approx(reference, rel=1e-6)
    assert reference > 1.0  # the sets differ: the comparison is not between two zeros


def test_fid_of_gaussian_features_approaches_the_closed_form():
    # Diagonal covariances commute: FID = ||m1 - m2||^2 + sum_i (s1_i - s2_i)^2.
    m1, s1 = [0.0, 1.0, 0.0, 2.0], [1.0, 2.0, 0.5, 1.0]
    m2, s2 = [1.0, 1.0, -1.0, 2.0], [1.0, 1.0, 1.5, 2.0]
    closed = sum((a - b) ** 2 for a, b in zip(m1 + s1, m2 + s2, strict=True))
    value = sq.fid_from_features(gaussian(40_000, m1, s1, 4), gaussian(40_000, m2, s2, 5))
    assert closed == pytest.approx(5.0)
    assert value == pytest.approx(closed, rel=0.03)


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 with KID's kernel k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018, Eq. 2)."""
    d = x.shape[1]

    def k(a, b):
        return (a @ b.T / d + 1) ** 3

    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


def test_kid_is_the_unbiased_mmd_on_one_full_subset():
    a, b = gaussian(300, [0.0] * 5, [1.0] * 5, 6), gaussian(300, [0.5] * 5, [1.0] * 5, 7)
    kid, std = sq.kid_from_features(a, b, subsets=1, subset_size=300)
    assert kid == pytest.approx(mmd2_unbiased(a, b), rel=1e-6)
    assert std == 0.0 or np.isnan(std) or std < 1e-12


def test_kid_is_unbiased_where_the_distributions_agree():
    # Two independent samples of the same law: the unbiased estimate averages to 0, while the
    # biased (V-statistic) one is clearly positive for the same draws.
    values, biased = [], []
    for seed in range(200):
        a, b = gaussian(40, [0.0] * 3, [1.0] * 3, 2 * seed), gaussian(
            40, [0.0] * 3, [1.0] * 3, 2 * seed + 1
        )
        values.append(mmd2_unbiased(a, b))
        biased.append(
            float(
                ((a @ a.T / 3 + 1) ** 3).mean()
                + ((b @ b.T / 3 + 1) ** 3).mean()
                - 2 * ((a @ b.T / 3 + 1) ** 3).mean()
            )
        )
    kid, _ = sq.kid_from_features(
        gaussian(40, [0.0] * 3, [1.0] * 3, 0), gaussian(40, [0.0] * 3, [1.0] * 3, 1), 1, 40
    )
    assert kid == pytest.approx(values[0], rel=1e-6)
    mean, sem = np.mean(values), np.std(values) / np.sqrt(len(values))
    assert abs(mean) < 3 * sem
    assert np.mean(biased) > 10 * sem


def test_kid_is_repeatable_for_a_seed():
    a, b = gaussian(1500, [0.0] * 4, [1.0] * 4, 8), gaussian(1500, [0.2] * 4, [1.0] * 4, 9)
    assert sq.kid_from_features(a, b, seed=3) == sq.kid_from_features(a, b, seed=3)


def lattice(values) -> torch.Tensor:
    return torch.tensor([[float(v), 0.0] for v in values])


def test_precision_recall_on_a_lattice_with_a_known_answer():
    # Real points 0..99 on a line: each ball reaches the 3rd nearest neighbour (radius 2, 3 at the
    # ends). Fakes: 0.5..49.5 (inside the real manifold) and 50 points far away at 1000..1049.
    real = lattice(range(100))
    fake = lattice([i + 0.5 for i in range(50)] + [1000 + i for i in range(50)])
    precision, recall = sq.precision_recall(real, fake, k=3, chunk=17)
    assert precision == 0.5
    # Fake balls around 0.5..49.5 have radius 2 (3 at 0.5 and 49.5): reals 0..52 are covered.
    assert recall == 0.53


def test_precision_recall_of_identical_sets_is_one_and_of_disjoint_sets_zero():
    x = gaussian(500, [0.0] * 4, [1.0] * 4, 10)
    assert sq.precision_recall(x, x) == (1.0, 1.0)
    assert sq.precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_class_coverage_entropy_and_histogram():
    uniform = torch.eye(10).repeat(5, 1)
    entropy, hist = sq.class_coverage(uniform)
    assert entropy == pytest.approx(np.log2(10)) and hist == [0.1] * 10
    collapsed = torch.eye(10)[[3] * 20]
    assert sq.class_coverage(collapsed) == (0.0, [0.0, 0.0, 0.0, 1.0] + [0.0] * 6)
    half = torch.eye(10)[[0] * 10 + [1] * 10]
    assert sq.class_coverage(half)[0] == pytest.approx(1.0)


def test_as_images_accepts_the_documented_forms_and_names_the_problem_otherwise():
    u8 = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    assert sq.as_images(u8).shape == (2, 1, 28, 28) and float(sq.as_images(u8).max()) == 1.0
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        sq.as_images(-torch.ones(2, 1, 28, 28))
    with pytest.raises(ValueError, match="shape"):
        sq.as_images(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        sq.as_images(torch.full((2, 1, 28, 28), float("nan")))


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_real_images_score_near_the_floor_and_noise_far_from_it(dataset):
    from shared_utils.data import evaluation_inputs

    test_images, _ = evaluation_inputs(dataset, "test")
    same = sq.evaluate(test_images[:2000], dataset)
    assert same["precision"] > 0.95 and same["coverage_entropy"] > 3.2
    floor = sq.floor(dataset)
    assert 0 < floor["fid"] < 5 and floor["precision"] > 0.6 and floor["recall"] > 0.6
    noise = torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    bad = sq.evaluate(noise, dataset)
    assert bad["fid"] > 20 * floor["fid"] and bad["kid"] > 100 * abs(floor["kid"])
    # Noise covers none of the data and is given one or two classes. (Its precision is not low on
    # Fashion-MNIST: the classifier maps all noise into one spot that some real images' wide
    # k-NN balls reach, the outlier sensitivity Kynkaanniemi et al. discuss.)
    assert bad["recall"] < 0.01 and bad["coverage_entropy"] < 1.0


def test_the_floor_at_n_samples_scores_the_first_n_training_images():
    """floor(dataset, n): the first n training images against the test set, which is what n
    training images give through evaluate; FID grows as n falls; 10,000 is the cached floor."""
    from shared_utils.data import evaluation_inputs

    train_images, _ = evaluation_inputs("mnist", "train")
    at_500 = sq.floor("mnist", 500)
    direct = sq.evaluate(train_images[:500], "mnist")
    assert at_500["n"] == 500 and at_500["fid"] == pytest.approx(direct["fid"], rel=1e-4)
    assert at_500["fid"] > sq.floor("mnist")["fid"]
    assert sq.floor("mnist", 10_000) == sq.floor("mnist") == sq.floor("mnist", 20_000)
    with pytest.raises(ValueError, match="at least 2"):
        sq.floor("mnist", 1)


def test_command_line_reads_npz_and_prints_the_table_with_the_floor(tmp_path, capsys):
    from shared_utils.data import dataset_tensors

    images, _ = dataset_tensors("mnist", "train")
    path = tmp_path / "samples.npz"
    np.savez(path, samples=images[-1500:].numpy())
    assert sq.main([str(path), "--dataset", "mnist"]) == 0
    out = capsys.readouterr().out
    assert "floor: 10k training images" in out and "| samples |" in out
    assert "1500 samples (not the protocol's 10000)" in out


def test_command_line_rejects_bad_input_in_one_line(tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.zeros((3, 5)), b=np.zeros(2))
    assert sq.main([str(path), "--dataset", "mnist"]) == 1
    assert "name the array 'samples'" in capsys.readouterr().err
    assert sq.main([str(tmp_path / "missing.npz"), "--dataset", "mnist"]) == 1
    assert "does not exist" in capsys.readouterr().err


TINY_GENERATOR = '''
import torch
from torch import nn


class Tiny(nn.Module):
    """Samples are test images picked by the seeded generator (a stand-in for a model)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.w = nn.Parameter(torch.ones(1))

    def config(self):
        return {"scale": self.scale}

    def sample(self, n, generator=None):
        from shared_utils.data import evaluation_inputs

        images, _ = evaluation_inputs("mnist", "test")
        return images[torch.randint(0, 10_000, (n,), generator=generator)] * self.scale
'''


def test_command_line_scores_a_checkpoint_with_its_sampler(tmp_path, capsys, monkeypatch):
    from shared_utils.checkpoints import save_checkpoint

    project = tmp_path / "projects" / "tinyproj"
    (project / "tinyproj").mkdir(parents=True)
    (project / "project.toml").write_text('slug = "tinyproj"\n')
    (project / "tinyproj" / "__init__.py").write_text("")
    (project / "tinyproj" / "model.py").write_text(TINY_GENERATOR)
    monkeypatch.syspath_prepend(str(project))
    from tinyproj.model import Tiny

    ckpt = project / "checkpoints" / "tiny.safetensors"
    save_checkpoint(
        ckpt, Tiny(), model_config={"scale": 1.0}, step=0, train_config={"dataset": "mnist"}
    )
    argv = [str(ckpt), "--model", "tinyproj.model:Tiny", "--num-samples", "1200"]
    assert sq.main(argv) == 0
    out = capsys.readouterr().out
    assert "1200 samples" in out and "against the mnist test set" in out and "| tiny |" in out
    assert sq.main([str(ckpt), "--model", "tinyproj.model:Nope", "--num-samples", "1200"]) == 1
    assert "Nope" in capsys.readouterr().err
