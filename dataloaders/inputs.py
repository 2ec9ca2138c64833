"""The network input of each ``--dataset``, per task: its size and normalisation, without reading any data."""
from dataloaders.datasets import DATASET_INPUTS, NetworkInput
from dataloaders.image_folder import IMAGE_FOLDER
from dataloaders.multidataset import MEMBER_SIZE, MEMBERS, NORMALISATION
from dataloaders.sequence import SEQUENCE
from utils.errors import UserError

MULTIDATASET = "multidataset"
"""``--dataset`` name of the 5-dataset sequence."""


def network_input(dataset: str, task: str) -> NetworkInput:
    """What task ``task`` of ``dataset`` feeds the network: the dataset's :data:`DATASET_INPUTS`, or for the 5-dataset
    sequence 3×32×32 normalised as task ``task``'s member (:data:`NORMALISATION`). An image folder's (and a sequence
    holding one) comes from its images, so it has none here."""
    if dataset in (IMAGE_FOLDER, SEQUENCE):
        raise UserError(f"--dataset {dataset}: its inputs are known only from its images, which this command does not "
                        f"read; give a known --dataset")
    if dataset == MULTIDATASET:
        members = list(MEMBERS)
        if task not in [str(index) for index in range(1, len(members) + 1)]:
            raise UserError(f"the 5-dataset sequence has tasks 1 to {len(members)}, not {task!r}")
        mean, std = NORMALISATION[members[int(task) - 1]]
        return NetworkInput(MEMBER_SIZE, tuple(mean), tuple(std))
    if dataset not in DATASET_INPUTS:
        raise UserError(f"unknown dataset {dataset!r}: choose one of {', '.join((*DATASET_INPUTS, MULTIDATASET))}")
    return DATASET_INPUTS[dataset]


def input_size(dataset: str) -> int:
    """The side of the square images every task of ``dataset`` feeds the network."""
    return network_input(dataset, "1").size
