"""The command line's flags as typed objects: the door every run goes through.

Each shared flag is a field of the dataclass it becomes (``DataSpec``, ``ModelSpec``, ``MethodChoice``,
``Protocol``, ``RunOptions``, ``Searches``, ``Dashboards``); each method's own flags are its ``Settings``' fields
(``agents``).
``command_line`` builds the parser from them, ``Config.from_flags`` checks every value and builds the objects, and
no ``argparse.Namespace`` goes further than that: the rest of the project takes a :class:`Config`.
"""
import argparse
import importlib.util
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Mapping, Optional

import torch

from agents import LoopSettings, agent_class, flag_groups
from agents.step import capture_obstacle
from dataloaders import DATASET_CLASSES, DATASETS, IMAGE_FOLDER, MULTIDATASET, SEQUENCE, read_sequence_spec
from dataloaders import split_boundaries
from models import feature_positions, model_builders
from utils.errors import ArgumentParser, UserError
from utils.flags import add_flags, at_least_zero, check_flags, flag, flag_fields, format_values, from_flags, positive
from utils.flags import swept_flags
from utils.runtime import configure_cudnn, pick_device, subnormals_flushed

log = logging.getLogger(__name__)

OFF_OR_POSITIVE = "must be 0 (off) or positive"


def off_or_positive(value) -> bool:
    return value >= 0


@dataclass(frozen=True)
class DataSpec:
    """The task sequence: which data, split how."""

    dataset: str = flag("CIFAR10", "CIFAR10, CIFAR100, MNIST, FashionMNIST, miniImageNet, multidataset (the "
                                   "5-dataset sequence), ImageFolder (your own images: --dataroot holds train/<class>/ "
                                   "and test/<class>/) or sequence (your own sequence of datasets, one task each: "
                                   "--dataroot is its JSON spec)")
    dataroot: str = flag("data", "directory holding the datasets (ImageFolder: the image folder; sequence: the spec "
                                 "file)")
    image_size: int = flag(32, "side of the square images an ImageFolder (alone or in a sequence) is resized to "
                               "(84: the 84×84 network); known datasets keep their own", valid=positive,
                           requirement="must be positive")
    n_permutation: int = flag(0, "> 0: that many permuted-pixel tasks instead of class splits",
                              valid=off_or_positive, requirement=OFF_OR_POSITIVE)
    first_split_size: int = flag(5, "classes in the first task")
    other_split_size: int = flag(5, "classes in every later task")
    no_class_remap: bool = flag(False, "keep the dataset's labels instead of 0..n-1 per task")
    train_aug: bool = flag(True, "augment training images (default)", negative="--no_train_aug")
    rand_split: bool = flag(False, "assign classes to tasks at random")
    rand_split_order: bool = flag(True, "shuffle the task order (default)", negative="--no_rand_split_order")
    force_out_dim: int = flag(0, "> 0: one shared head 'All' of this size", valid=off_or_positive,
                              requirement=OFF_OR_POSITIVE)
    max_train_samples: int = flag(0, "train on the first N samples of each task (0: all)", valid=off_or_positive,
                                  requirement=OFF_OR_POSITIVE)

    def __post_init__(self):
        names = (*DATASETS, MULTIDATASET, IMAGE_FOLDER, SEQUENCE)
        if self.dataset not in names:
            raise UserError(f"unknown dataset {self.dataset!r}: choose one of {', '.join(names)}")
        if self.dataset == SEQUENCE:
            read_sequence_spec(self.dataroot, self.image_size)
        if self.dataset in DATASET_CLASSES and self.n_permutation == 0:
            split_boundaries(DATASET_CLASSES[self.dataset], self.first_split_size, self.other_split_size)
        if self.no_class_remap and self.n_permutation == 0 and self.force_out_dim <= 0:
            raise UserError("--no_class_remap keeps the dataset's labels: give --force_out_dim with the number of "
                            "classes")


@dataclass(frozen=True)
class ModelSpec:
    """The network: ``models.<model_type>.<model_name>``."""

    model_type: str = flag("customnet_SVD", "module of models/ holding the model")
    model_name: str = flag("Net_SVD", "model builder in that module")
    model_weights: Optional[str] = flag(None, "a state dict to start from")

    def __post_init__(self):
        if self.model_name not in model_builders(self.model_type):
            raise UserError(f"unknown --model_name {self.model_name!r} for --model_type {self.model_type}; "
                            f"valid: {', '.join(sorted(model_builders(self.model_type)))}")


@dataclass(frozen=True)
class MethodChoice:
    """The continual-learning method: ``agents.<agent_type>.<agent_name>``; its own flags follow below."""

    agent_type: str = flag("SVDNet", "module of agents/ holding the method")
    agent_name: str = flag("SVDNet", "method class in that module")

    @property
    def cls(self) -> type:
        """The method's class (``agents.agent_class``)."""
        return agent_class(self.agent_type, self.agent_name)

    @property
    def title(self) -> str:
        """The method's name in the papers (``NormalNN.method_title``)."""
        return self.cls.method_title()

    @property
    def own_flags(self) -> List[str]:
        """The flags only some methods read and this one does: its ``Settings``' flags that ``LoopSettings`` (every
        method's) lacks, inherited ones included (GEM's ``--reg_coef`` as ``--memory_size``)."""
        shared = {setting.name for setting in flag_fields(LoopSettings)}
        return sorted(setting.name for setting in flag_fields(self.cls.Settings) if setting.name not in shared)


@dataclass(frozen=True)
class Protocol:
    """How the tasks are presented, how many times, and how they are evaluated."""

    single_tasks: bool = flag(False, "evaluate each task only right after training it")
    offline_training: bool = flag(False, "all tasks jointly (upper bound)")
    incremental_class: bool = flag(False, "one shared head, of which the outputs of the classes seen so far count")
    ind_models: bool = flag(False, "one separate model per task")
    eval_on_train_set: bool = flag(False, "evaluate on the training splits")
    task_agnostic: bool = flag(False, "also score every test sample without its task label: by the network and head "
                                      "of every task learnt so far (results' task_agnostic: rules logits, "
                                      "log_softmax, entropy)")
    batch_size: int = flag(128, "samples per batch", valid=positive, requirement="must be positive")
    repeat: int = flag(3, "runs per experiment, with seeds seed, seed+1, ...", valid=positive,
                       requirement="must be positive")
    seed: int = flag(1, "seed of the first run")

    def __post_init__(self):
        if self.ind_models and self.offline_training:
            raise UserError("--ind_models and --offline_training are different protocols: choose one")
        if self.task_agnostic and self.incremental_class:
            raise UserError("--task_agnostic scores a sample by every task's head: under --incremental_class one "
                            "shared head already spans every class seen, without the task label (drop "
                            "--task_agnostic)")
        if self.task_agnostic and self.single_tasks:
            raise UserError("--task_agnostic scores each task's samples by the networks of every task learnt: "
                            "--single_tasks evaluates a task only before the later ones are learnt (drop one of "
                            "them)")


@dataclass(frozen=True)
class RunOptions:
    """Where a run executes and where its outputs go."""

    gpuid: List[int] = flag([0], "GPU id; -1 runs on the CPU", nargs="+")
    exp_name: str = flag("SVDNet_Test", "outputs go to results/, saves/ and runs/<exp_name>_<swept flag><value>")
    loadmodel: Optional[str] = flag(None, "evaluate a saved model: a directory, or a name under saves/ or "
                                          "pretrained/")
    overwrite: bool = flag(False, "replace the results of a finished experiment of the same name")
    resume: bool = flag(False, "continue an interrupted run of --exp_name from its latest checkpoint")
    checkpoint_interval: float = flag(60.0, "seconds between checkpoints at the end of an epoch (0: every epoch); "
                                            "ends of tasks always checkpoint", valid=at_least_zero,
                                      requirement="must be 0 or more seconds")
    benchmark: bool = flag(False, "reproducible cuDNN: deterministic algorithms, no autotuning (as published; runs "
                                  "are seeded either way)")

    def __post_init__(self):
        name = self.exp_name
        if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
            raise UserError(f"--exp_name must be one folder name (it names folders under results/ and saves/), got "
                            f"{name!r}")
        if len(self.gpuid) > 1:
            raise UserError(f"--gpuid takes one device id (a run uses one device), got {format_values(self.gpuid)}")
        if self.resume and (self.overwrite or self.loadmodel):
            raise UserError("--resume continues an interrupted training run: not with --overwrite, --loadmodel or "
                            "--debug")


@dataclass(frozen=True)
class Searches:
    """The published ``--debug`` search modes (``experiment.search``)."""

    debug: bool = flag(False, "search modes: --sp_wt_search, or --e_search with --model_weights")
    e_search: List[float] = flag([3e-5, 3e-2], "energy range searched with --debug (20 evenly spaced values)",
                                 "-e_search", "--e_search", nargs="+")
    sp_wt_search: List[float] = flag([0.1, 0.9], "weights of the swept flag searched with --debug (10 evenly "
                                                 "spaced values)", "-sp_wt_search", "--sp_wt_search", nargs="+")

    def __post_init__(self):
        if len(self.e_search) != 2 or not 0 <= self.e_search[0] < self.e_search[1] < 1:
            raise UserError("--e_search takes two energies LOW HIGH with 0 <= LOW < HIGH < 1")
        if len(self.sp_wt_search) != 2 or not 0 <= self.sp_wt_search[0] < self.sp_wt_search[1]:
            raise UserError("--sp_wt_search takes two sparsity weights LOW HIGH with 0 <= LOW < HIGH")


@dataclass(frozen=True)
class Dashboards:
    """Where a run's numbers go besides its results folder (which always holds its CSV logs): Weights & Biases, one
    run per experiment and repeat (needs pip install wandb)."""

    wandb_project: Optional[str] = flag(None, "log every run (experiment, repeat) to this Weights & Biases project")
    wandb_entity: Optional[str] = flag(None, "the W&B user or team the project belongs to (None: W&B's default)")
    wandb_group: Optional[str] = flag(None, "the W&B group of the runs (None: the sweep's name for the jobs of a "
                                            "cluster sweep, else --exp_name)")

    def __post_init__(self):
        if (self.wandb_entity or self.wandb_group) and not self.wandb_project:
            raise UserError("--wandb_entity and --wandb_group say where the runs of --wandb_project go: give "
                            "--wandb_project too")
        if self.wandb_project and importlib.util.find_spec("wandb") is None:
            raise UserError("--wandb_project logs to Weights & Biases, which is not installed: pip install wandb (or "
                            "pip install -e '.[wandb]')")


@dataclass(frozen=True)
class Compatibility:
    """Flags of the published scripts that nothing here reads (data stays in memory; the rest CACL never used)."""

    workers: int = flag(1, "unused (data stays in memory)")
    nuclear_weight: float = flag(0.001, "unused", "--nuclear-weight")
    threshold_trp: float = flag(0.99, "unused")
    period: int = flag(1, "unused")


SHARED_FLAGS = (("data and tasks", DataSpec), ("model", ModelSpec), ("method", MethodChoice),
                ("protocol", Protocol), ("run", RunOptions), ("searches (--debug)", Searches),
                ("dashboards", Dashboards), ("accepted for compatibility, unused", Compatibility))
"""The flags every run has, by ``--help`` group; each method's own follow (``agents.flag_groups``)."""


@dataclass(frozen=True)
class Experiment:
    """One experiment of a sweep: its name (its folder under ``results/``, ``saves/`` and ``runs/``) and its own
    value of the method's swept flag (``{"sparse_wt": 0.4}``; empty for a method without one)."""

    name: str
    swept: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """Everything a command line asked for, checked: the typed objects, and every flag as parsed (``flags``: what
    the results record as the run's flags and what a resumed run must repeat)."""

    data: DataSpec
    model: ModelSpec
    method: MethodChoice
    protocol: Protocol
    run: RunOptions
    searches: Searches
    dashboards: Dashboards
    flags: Mapping[str, Any]

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> "Config":
        """Check every flag (each method's own flags by its ``Settings``, the chosen method's settings of every
        experiment by constructing them) and build the objects: one-line ``UserError``s, before anything is read
        or written."""
        for _, spec in SHARED_FLAGS:
            check_flags(spec, flags)
        for _, _, settings in flag_groups():
            check_flags(settings, flags, own=True)
        config = cls(*(from_flags(spec, flags) for _, spec in SHARED_FLAGS[:-1]), dict(flags))
        config.check()
        return config

    def check(self) -> None:
        """The rules between the objects."""
        method = self.method.cls
        method.check_model(self.model.model_type, self.model.model_name)
        if self.data.dataset in (IMAGE_FOLDER, SEQUENCE):
            feature_positions(self.model.model_type, self.data.image_size)
        if self.protocol.task_agnostic and self.data.force_out_dim > 0:
            raise UserError("--task_agnostic scores a sample by every task's head: under --force_out_dim every task "
                            "shares the head All, whose accuracy needs no task label already (drop "
                            "--task_agnostic)")
        if self.protocol.task_agnostic and self.searches.debug:
            raise UserError("--task_agnostic measures whole runs: the --debug searches measure one task (drop "
                            "--task_agnostic)")
        if self.protocol.incremental_class and self.data.force_out_dim <= 0:
            raise UserError("--incremental_class grows one shared head: give --force_out_dim with the number of "
                            "classes (and --no_class_remap to keep the dataset's labels)")
        if self.protocol.incremental_class and self.data.no_class_remap and self.data.rand_split_order:
            raise UserError("--incremental_class counts the first outputs of the shared head, one per class seen so "
                            "far: with --no_class_remap the tasks must come in their classes' order (add "
                            "--no_rand_split_order)")
        if self.searches.debug:
            if self.run.resume:
                raise UserError("--resume continues an interrupted training run: not with --overwrite, --loadmodel "
                                "or --debug")
            if not method.prunes_after_task:
                raise UserError(f"the --debug searches measure what a method keeps after pruning a task: "
                                f"{self.method.agent_name} does not prune (use --agent_type SVDNet)")
        for experiment in self.experiments():
            self.settings(experiment, torch.device("cpu"))

    @property
    def swept_flag(self) -> Optional[str]:
        """The method's flag that makes one experiment per value, if it has one."""
        return next(iter(swept_flags(self.method.cls.Settings)), None)

    def experiments(self) -> List[Experiment]:
        """The experiments the flags ask for, in order: one per value of the ``swept_flag``,
        ``<exp_name>_<flag><value>`` (``<exp_name>_sparse_wt<w>``, ``<exp_name>_reg_coef<c>``); just ``<exp_name>``
        for a method without one."""
        flag_name, exp_name = self.swept_flag, self.run.exp_name
        if flag_name is None:
            return [Experiment(exp_name)]
        return [Experiment(f"{exp_name}_{flag_name}{value}", {flag_name: value}) for value in self.flags[flag_name]]

    def settings(self, experiment: Experiment, device: torch.device) -> LoopSettings:
        """The method's settings in ``experiment`` on ``device``."""
        return self.method.cls.make_settings(self.flags, experiment.swept, device)


def command_line(prog: Optional[str] = None, description: str = "") -> ArgumentParser:
    """The driver's parser: the shared flags, then every method's own, by group."""
    parser = ArgumentParser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for title, spec in SHARED_FLAGS:
        add_flags(parser.add_argument_group(title, spec.__doc__), spec)
    for title, group_description, settings in flag_groups():
        add_flags(parser.add_argument_group(title, group_description), settings, own=True)
    return parser


def read_config(argv=None, description: str = "") -> Config:
    """Parse and check a driver command line."""
    return Config.from_flags(vars(command_line(description=description).parse_args(argv)))


@contextmanager
def prepared_run(config: Config) -> Iterator[torch.device]:
    """What every run does once its flags are checked (a sweep's cluster jobs too), for the block that runs it: pick
    the device, set cuDNN and, on the CPU, flush subnormal floats to 0 (``utils.runtime.subnormals_flushed``)."""
    device = pick_device(config.run.gpuid)
    configure_cudnn(reproducible=config.run.benchmark)
    if device.type == "cpu" and (config.flags["amp"] or config.flags["compile"]):
        log.warning("--amp and --compile are meant for CUDA: on a CPU they are usually slower (README, Speed)")
    if config.flags["cuda_graph"]:
        obstacle = capture_obstacle(config.method.cls, config.flags["optimizer"])
        if obstacle:
            log.warning("--cuda_graph: %s: it runs eagerly", obstacle)
        elif device.type != "cuda":
            log.warning("--cuda_graph captures the training step on CUDA only: on the %s the same step runs eagerly "
                        "from static tensors", device.type.upper())
    with subnormals_flushed(device):
        yield device
