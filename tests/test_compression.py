"""The end-of-task rules: pruning by energy, growth, and the model-size formula."""
import pytest
import torch

from agents.compression import GROW_TO_MEAN_DATASETS, grown_free_rank, prune_by_energy
from agents.model_size import cacl_model_size_mb
from experiment.config import Experiment, read_config
from helpers import REFERENCE
NET_SVD_LAYERS = [(27, 64), (576, 64), (576, 128), (1152, 128), (512, 256)]
INITIAL_RANKS = [18, 57, 104, 115, 170]


def kept_energy_fraction(sigma, start, mask):
    new = sigma[start:].double() ** 2
    return float(new[mask].sum() / new.sum())


@pytest.mark.parametrize("energy_sv", [3e-5, 0.01, 0.1, 0.3])
def test_prune_by_energy_keeps_exactly_the_energy_asked_for(energy_sv):
    torch.manual_seed(0)
    sigma = torch.randn(50) * torch.logspace(0, -3, 50)
    start = 10
    mask = prune_by_energy(sigma, start, energy_sv)
    assert mask.shape == (40,)
    assert kept_energy_fraction(sigma, start, mask) >= 1 - energy_sv
    smallest_kept = sigma[start:].abs()[mask].argmin()
    without = mask.clone()
    without[mask.nonzero()[smallest_kept]] = False
    assert kept_energy_fraction(sigma, start, without) < 1 - energy_sv


def test_prune_keeps_components_in_their_original_order():
    sigma = torch.tensor([9.0, 0.01, 3.0, 0.02, 5.0])
    assert prune_by_energy(sigma, 0, 0.01).tolist() == [True, False, True, False, True]


def test_prune_with_prev_sing_counts_frozen_energy():
    # new energies 4, 1, 1 of 6: 4/6 < 0.8, 5/6 ≥ 0.8, threshold 1 (ties kept); with the frozen 9 of 15: 13/15 ≥ 0.8
    # after the first, threshold 2
    sigma = torch.tensor([3.0, 2.0, 1.0, 1.0])
    assert prune_by_energy(sigma, 1, 0.2).tolist() == [True, True, True]
    assert prune_by_energy(sigma, 1, 0.2, prev_sing=True).tolist() == [True, False, False]


def test_prev_sing_keeps_every_nonzero_new_component_when_the_frozen_energy_suffices():
    """The published loop never runs (the frozen 100 of 101.26 is already 98.8% ≥ 1 − 0.05): threshold 0."""
    sigma = torch.tensor([10.0, 1.0, 0.5, 0.0, 0.1])
    assert prune_by_energy(sigma, 1, 0.05).tolist() == [True, True, False, False]
    assert prune_by_energy(sigma, 1, 0.05, prev_sing=True).tolist() == [True, True, False, True]


def test_kept_energy_landing_exactly_on_the_target_stops_the_count():
    """4 + 4 = 0.8 · 10 exactly: the published ``while E / T < 1 − e`` stops after two, keeping [2, 2]."""
    sigma = torch.tensor([2.0, 2.0, 1.0, 1.0])
    assert prune_by_energy(sigma, 0, 0.2).tolist() == [True, True, False, False]


def test_growth_follows_the_mean_of_earlier_identifiers_capped_at_initial_rank():
    assert grown_free_rank(3, [], 18, grow_to_mean=True) == 3
    assert grown_free_rank(3, [10, 15], 18, grow_to_mean=True) == 12
    assert grown_free_rank(3, [20, 30], 18, grow_to_mean=True) == 18
    assert grown_free_rank(15, [10, 15], 18, grow_to_mean=True) == 15
    assert grown_free_rank(3, [10, 15], 18, grow_to_mean=False) == 18


def test_growth_to_the_mean_on_the_published_datasets_only():
    """The published rule compares the dataset's name: CIFAR-100 and miniImageNet grow to the mean."""
    def settings(dataset):
        return read_config(["--dataset", dataset]).settings(Experiment("x"), torch.device("cpu"))

    assert settings("CIFAR100").grow_to_mean and settings("miniImageNet").grow_to_mean
    assert not settings("CIFAR10").grow_to_mean and not settings("multidataset").grow_to_mean


def load_reference(name, piece):
    path = REFERENCE.parent / name / f"{piece}.pth"
    if not path.exists():
        pytest.skip("../shared/reference is absent")
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("name, size, expected", [
    ("CNet_CIFAR100_finalmodel_sparse_wt0.1", 4, 8.53),
    ("miniImageNet_final_sparse_wt0.1", 64, 13.03),
    ("CNet_CIFAR100_finalmodel_sparse_wt0.4", 4, 2.60),
])
def test_model_size_of_published_models(name, size, expected):
    """The formula gives 8.535, 13.033 and 2.599 MB: the published two-decimal figures up to their last digit."""
    chann_used = load_reference(name, "chann_used")
    heads = len(chann_used) * (256 * size * 5 + 5)
    assert cacl_model_size_mb(NET_SVD_LAYERS, chann_used, heads) == pytest.approx(expected, abs=0.006)


@pytest.mark.parametrize("name, dataset", [("CNet_CIFAR100_finalmodel_sparse_wt0.1", "CIFAR100"),
                                           ("miniImageNet_final_sparse_wt0.1", "miniImageNet"),
                                           ("CNet_CIFAR100_finalmodel_sparse_wt0.4", "CIFAR100"),
                                           ("miniImageNet_final_sparse_wt0.4", "miniImageNet")])
def test_growth_rule_reproduces_published_final_ranks(name, dataset):
    identifiers = load_reference(name, "task_identifiers")
    ranks = list(INITIAL_RANKS)
    for task in range(len(identifiers)):
        for layer in range(len(ranks)):
            prefix = identifiers[task][layer]
            earlier = [identifiers[t][layer] for t in range(task)]
            ranks[layer] = prefix + grown_free_rank(ranks[layer] - prefix, earlier, INITIAL_RANKS[layer],
                                                    dataset in GROW_TO_MEAN_DATASETS)
    assert ranks == load_reference(name, "rank")
