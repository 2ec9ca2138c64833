"""Compression-aware Continual Learning (CACL) on a sequence of tasks: train, or evaluate a saved model.

The flags and their defaults are those of the published code; see README.md for the paper's settings.
"""
import argparse
import logging
import os
import signal
import sys
from typing import List

import torch

from agents import agent_class
from agents.optim import check_optimizer
from dataloaders import DATASETS
from experiment.builders import MULTIDATASET, load_data
from experiment.evaluate_saved import evaluate_saved_model
from experiment.search import run_search
from experiment.training import train
from models import model_builders
from utils.errors import ArgumentParser, UserError
from utils.logs import configure_logging
from utils.runtime import configure_cudnn, pick_device

log = logging.getLogger("iBatchLearn")


def get_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--gpuid", nargs="+", type=int, default=[0], help="GPU id; -1 runs on the CPU")
    add("--perp_wt", type=float, default=1.0, help="weight of the orthogonality loss of N and C")
    add("--sparse_wt", nargs="+", type=float, default=[0.01], help="weight(s) of the sparsity loss; one experiment each")
    add("-e_search", "--e_search", nargs="+", type=float, default=[3e-5, 3e-2],
        help="energy range searched with --debug (20 evenly spaced values)")
    add("-sp_wt_search", "--sp_wt_search", nargs="+", type=float, default=[0.1, 0.9],
        help="sparsity weights searched with --debug (10 evenly spaced values)")
    add("-e", "--energy_sv", type=float, default=3e-5, help="energy fraction of a task's new components pruned")
    add("--reg_type_svd", type=str, default="Hoyer", help="sparsity loss on singular values: Hoyer, Hoyer-Square, L1")
    add("--model_type", type=str, default="customnet_SVD", help="module of models/ holding the model")
    add("--model_name", type=str, default="Net_SVD", help="model builder in that module")
    add("--force_out_dim", type=int, default=0, help="> 0: one shared head 'All' of this size")
    add("--agent_type", type=str, default="SVDNet", help="module of agents/ holding the agent")
    add("--agent_name", type=str, default="SVDNet", help="agent class in that module")
    add("--optimizer", type=str, default="Adam", help="a torch.optim optimizer, or amsgrad")
    add("--dataroot", type=str, default="data", help="directory holding the datasets")
    add("--dataset", type=str, default="CIFAR10",
        help="CIFAR10, CIFAR100, MNIST, FashionMNIST, miniImageNet, or multidataset (the 5-dataset sequence)")
    add("--n_permutation", type=int, default=0, help="> 0: that many permuted-pixel tasks instead of class splits")
    add("--first_split_size", type=int, default=5, help="classes in the first task")
    add("--other_split_size", type=int, default=5, help="classes in every later task")
    add("--no_class_remap", action="store_true", help="keep the dataset's labels instead of 0..n-1 per task")
    add("--train_aug", dest="train_aug", action="store_true", default=True, help="augment training images (default)")
    add("--no_train_aug", dest="train_aug", action="store_false", help="no augmentation")
    add("--rand_split", action="store_true", help="assign classes to tasks at random")
    add("--rand_split_order", dest="rand_split_order", action="store_true", default=True,
        help="shuffle the task order (default)")
    add("--no_rand_split_order", dest="rand_split_order", action="store_false", help="tasks in numerical order")
    add("--schedule", nargs="+", type=int, default=[2], help="epochs at which the lr drops 10x; the last ends a task")
    add("--batch_size", type=int, default=128)
    add("--lr", type=float, default=0.001)
    add("--momentum", type=float, default=0.9)
    add("--weight_decay", type=float, default=0.0)
    add("--print_freq", type=int, default=100, help="log the losses every this many steps")
    add("--workers", type=int, default=1, help="accepted for compatibility: data stays in memory")
    add("--model_weights", type=str, default=None, help="a state dict to start from")
    add("--reg_coef", nargs="+", type=float, default=[0.0],
        help="weight(s) of a baseline's penalty (GEM: its margin); one experiment each")
    add("--memory_size", type=int, default=1000, help="samples the rehearsal agents (exp_replay) keep")
    add("--max_train_samples", type=int, default=0, help="train on the first N samples of each task (0: all)")
    add("--repeat", type=int, default=3, help="runs per experiment, with seeds seed, seed+1, ...")
    add("--exp_name", type=str, default="SVDNet_Test",
        help="outputs go to results/ and saves/<exp_name>_sparse_wt<w> (the baselines': <exp_name>_reg_coef<c>)")
    add("--loadmodel", type=str, default=None, help="evaluate a saved model: a directory, or a name under saves/ "
                                                    "or pretrained/")
    add("--nuclear-weight", type=float, default=0.001, help="accepted for compatibility (unused by CACL)")
    add("--threshold_trp", type=float, default=0.99, help="accepted for compatibility (unused by CACL)")
    add("--period", type=int, default=1, help="accepted for compatibility (unused by CACL)")
    add("--seed", type=int, default=1)
    add("--overwrite", action="store_true", help="replace the results of a finished experiment of the same name")
    add("--resume", action="store_true", help="continue an interrupted run of --exp_name from its latest checkpoint")
    add("--checkpoint_interval", type=float, default=60.0,
        help="seconds between checkpoints at the end of an epoch (0: every epoch); ends of tasks always checkpoint")
    add("--prev_sing", action="store_true", help="count the frozen components' energy when pruning")
    add("--grow_network", action="store_true", help="add components when a layer runs short of free ones")
    add("--benchmark", action="store_true",
        help="reproducible cuDNN: deterministic algorithms, no autotuning (as published; runs are seeded either way)")
    add("--amp", action="store_true", help="bfloat16 autocast of the forward pass (for CUDA; changes the numbers)")
    add("--compile", action="store_true", help="torch.compile the training forward pass, once per task (for CUDA)")
    add("--save_running_stats", action="store_true", help="BatchNorm statistics per task (models with BatchNorm)")
    add("--eval_on_train_set", action="store_true", help="evaluate on the training splits")
    add("--debug", action="store_true", help="search modes")
    add("--single_tasks", action="store_true")
    add("--offline_training", action="store_true", help="all tasks jointly (upper bound)")
    add("--incremental_class", action="store_true")
    add("--ind_models", action="store_true", help="one separate model per task")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for values that cannot work."""
    if len(args.e_search) != 2 or not 0 <= args.e_search[0] < args.e_search[1] < 1:
        raise UserError("--e_search takes two energies LOW HIGH with 0 <= LOW < HIGH < 1")
    if len(args.sp_wt_search) != 2 or not 0 <= args.sp_wt_search[0] < args.sp_wt_search[1]:
        raise UserError("--sp_wt_search takes two sparsity weights LOW HIGH with 0 <= LOW < HIGH")
    if args.debug and args.agent_type != "SVDNet":
        raise UserError("the --debug searches measure components kept: they need --agent_type SVDNet")
    check_names(args)
    check_numbers(args)
    if args.incremental_class and args.force_out_dim <= 0:
        raise UserError("--incremental_class grows one shared head: give --force_out_dim with the number of classes "
                        "(and --no_class_remap to keep the dataset's labels)")
    if args.resume and (args.overwrite or args.loadmodel or args.debug):
        raise UserError("--resume continues an interrupted training run: not with --overwrite, --loadmodel or --debug")
    if sum((args.ind_models, args.offline_training)) > 1:
        raise UserError("--ind_models and --offline_training are different protocols: choose one")
    if len(args.gpuid) > 1:
        raise UserError(f"--gpuid takes one device id (a run uses one device), got {' '.join(map(str, args.gpuid))}")


def check_names(args: argparse.Namespace) -> None:
    """Known dataset, model, agent and optimizer; an experiment name that is one folder name."""
    if args.dataset not in (*DATASETS, MULTIDATASET):
        raise UserError(f"unknown dataset {args.dataset!r}: choose one of {', '.join((*DATASETS, MULTIDATASET))}")
    if args.model_name not in model_builders(args.model_type):
        raise UserError(f"unknown --model_name {args.model_name!r} for --model_type {args.model_type}; "
                        f"valid: {', '.join(sorted(model_builders(args.model_type)))}")
    agent_class(args.agent_type, args.agent_name)  # an unknown name is an error listing the valid ones
    check_optimizer(args.optimizer, args.momentum, args.weight_decay)
    name = args.exp_name
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise UserError(f"--exp_name must be one folder name (it names folders under results/ and saves/), got "
                        f"{name!r}")


def check_numbers(args: argparse.Namespace) -> None:
    """Numbers in their ranges."""
    if not 0 < args.energy_sv < 1:
        raise UserError(f"--energy_sv must lie in (0, 1), got {args.energy_sv}")
    if any(b <= a for a, b in zip(args.schedule, args.schedule[1:])) or args.schedule[0] <= 0:
        raise UserError(f"--schedule must be increasing positive epochs, got {' '.join(map(str, args.schedule))}")
    if not args.lr > 0:
        raise UserError(f"--lr must be a positive number, got {args.lr}")
    if not args.checkpoint_interval >= 0:
        raise UserError(f"--checkpoint_interval must be 0 or more seconds, got {args.checkpoint_interval}")
    for flag in ("batch_size", "repeat", "print_freq", "memory_size"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag} must be positive, got {getattr(args, flag)}")
    for flag, values in (("sparse_wt", args.sparse_wt), ("perp_wt", [args.perp_wt]), ("reg_coef", args.reg_coef)):
        if any(value < 0 for value in values):
            raise UserError(f"--{flag} must be 0 or more (a negative weight rewards what the loss penalises), got "
                            f"{' '.join(map(str, values))}")
    for flag in ("force_out_dim", "n_permutation", "max_train_samples"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag} must be 0 (off) or positive, got {getattr(args, flag)}")


def prepare_run(args) -> torch.device:
    """What every run does before it loads data (a sweep's cluster jobs too): check the flags, pick the device."""
    check_args(args)
    device = pick_device(args.gpuid)
    configure_cudnn(reproducible=args.benchmark)
    if device.type == "cpu" and (args.amp or args.compile):
        log.warning("--amp and --compile are meant for CUDA: on a CPU they are usually slower (README, Speed)")
    return device


def run_experiments(args) -> List[str]:
    """Every ``--sparse_wt`` experiment (or the ``--loadmodel`` evaluation, or a ``--debug`` search); returns the
    tables to print."""
    device = prepare_run(args)
    if args.debug:
        return [run_search(args, device, load_data(args))]
    if args.loadmodel:
        return [evaluate_saved_model(args, device)]
    return train(args, device, load_data(args))


def main(argv=None) -> int:
    """Run and print the tables (exit 0); a user error is one line (exit 2); Ctrl-C or SIGTERM stops cleanly (130)."""
    configure_logging()
    try:
        tables = run_experiments(get_args(argv))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped: outputs and checkpoints written so far are whole; continue a training run with the same "
              "flags and --resume", file=sys.stderr)
        return 130
    print("\n\n".join(tables))
    return 0


def stop_on_sigterm() -> None:
    """A scheduler's SIGTERM (pre-emption, ``kill``) stops the run as Ctrl-C does."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    stop_on_sigterm()
    sys.exit(main())
