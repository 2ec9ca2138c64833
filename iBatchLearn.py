"""Compression-aware Continual Learning (CACL) on a sequence of tasks: train, or evaluate a saved model.

The flags and their defaults are those of the published code; see README.md for the paper's settings.
"""
import argparse
import logging
import os
import random
import signal
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.utils.tensorboard import SummaryWriter

from agents import AGENT_TYPES, AgentConfig, build_agent
from agents.default import NormalNN, check_optimizer
from agents.search import energy_search, plot_search, sparsity_search
from agents.protocols import Progress, TaskStream, learn_jointly, learn_separately, learn_sequentially
from dataloaders import DATASETS, PermutedGen, SplitGen, load_dataset, multidataset_tasks, split_boundaries
from models import build_model, model_builders, svd_layers
from utils.checkpoint import find_checkpoint, load_checkpoint, load_state, read_state, save_checkpoint, svd_ranks
from utils.errors import UserError
from utils.files import atomic_json_dump, atomic_torch_save
from utils.model_size import individual_models_size_mb
from utils.results import final_record, format_table, run_record
from utils.resume import Position, RunCheckpoints, check_same_settings, exclusive_run, restore_rng
from utils.runtime import pick_device, seed_everything

log = logging.getLogger("iBatchLearn")

GROW_TO_MEAN_DATASETS = ("CIFAR100", "miniImageNet")
MULTIDATASET = "multidataset"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown flag, a missing or malformed value) are one-line ``UserError``s."""

    def error(self, message: str):
        raise UserError(f"{message} (--help lists the flags)")


def get_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--gpuid", nargs="+", type=int, default=[0], help="GPU id; -1 runs on the CPU")
    add("--perp_wt", type=float, default=1.0, help="weight of the orthogonality loss of N and C")
    add("--sparse_wt", nargs="+", type=float, default=[0.01], help="weight(s) of the sparsity loss; one experiment each")
    add("--e_search", nargs="+", type=float, default=[3e-5, 3e-2], help="energy range searched with --debug")
    add("--sp_wt_search", nargs="+", type=float, default=[0.1, 0.9], help="sparsity weights searched with --debug")
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
    add("--reg_coef", nargs="+", type=float, default=[0.0], help="regularization weight of baseline agents")
    add("--repeat", type=int, default=3, help="runs per experiment, with seeds seed, seed+1, ...")
    add("--exp_name", type=str, default="SVDNet_Test", help="outputs go to results/ and saves/<exp_name>_sparse_wt<w>")
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
    add("--benchmark", action="store_true", help="torch.backends.cudnn.benchmark")
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
    for flag, values in (("e_search", args.e_search), ("sp_wt_search", args.sp_wt_search)):
        if len(values) != 2 or not 0 <= values[0] < values[1]:
            raise UserError(f"--{flag} takes two values LOW HIGH with 0 <= LOW < HIGH")
    if args.debug and args.agent_type != "SVDNet":
        raise UserError("the --debug searches measure components kept: they need --agent_type SVDNet")
    if args.debug and args.model_weights and not 0 < args.e_search[0]:
        raise UserError("--e_search energies must be positive (they are spaced logarithmically)")
    if args.dataset not in (*DATASETS, MULTIDATASET):
        raise UserError(f"unknown dataset {args.dataset!r}: choose one of {', '.join((*DATASETS, MULTIDATASET))}")
    if not 0 < args.energy_sv < 1:
        raise UserError(f"--energy_sv must lie in (0, 1), got {args.energy_sv}")
    if any(b <= a for a, b in zip(args.schedule, args.schedule[1:])) or args.schedule[0] <= 0:
        raise UserError(f"--schedule must be increasing positive epochs, got {' '.join(map(str, args.schedule))}")
    if not args.lr > 0:
        raise UserError(f"--lr must be a positive number, got {args.lr}")
    if not args.checkpoint_interval >= 0:
        raise UserError(f"--checkpoint_interval must be 0 or more seconds, got {args.checkpoint_interval}")
    for flag in ("batch_size", "repeat", "print_freq"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag} must be positive, got {getattr(args, flag)}")
    if args.incremental_class and args.force_out_dim <= 0:
        raise UserError("--incremental_class grows one shared head: give --force_out_dim with the number of classes "
                        "(and --no_class_remap to keep the dataset's labels)")
    if args.resume and (args.overwrite or args.loadmodel or args.debug):
        raise UserError("--resume continues an interrupted training run: not with --overwrite, --loadmodel or --debug")
    if sum((args.ind_models, args.offline_training)) > 1:
        raise UserError("--ind_models and --offline_training are different protocols: choose one")
    if len(args.reg_coef) > 1:
        raise UserError("only one --reg_coef value is supported")
    if args.model_name not in model_builders(args.model_type):
        raise UserError(f"unknown --model_name {args.model_name!r} for --model_type {args.model_type}; "
                        f"valid: {', '.join(sorted(model_builders(args.model_type)))}")
    if args.agent_name not in AGENT_TYPES.get(args.agent_type, ()):
        raise UserError(f"unknown --agent_type/--agent_name {args.agent_type}/{args.agent_name}; valid: "
                        f"{', '.join(f'{t}/{n}' for t, names in AGENT_TYPES.items() for n in names)}")
    check_optimizer(args.optimizer)


def load_data(args):
    """The dataset's train and test sets, or the five fixed tasks of the 5-dataset sequence."""
    if args.dataset == MULTIDATASET:
        return multidataset_tasks(args.dataroot)
    return load_dataset(args.dataset, args.dataroot, args.train_aug)


def build_tasks(args, data):
    """Train and test data per task, and each task's number of classes: class splits, permutations, or the
    5-dataset sequence's fixed tasks."""
    if args.dataset == MULTIDATASET:
        return data
    train_set, test_set = data
    remap = not args.no_class_remap
    if args.n_permutation > 0:
        # every task has all classes: offsetting labels per task only makes sense for one shared head
        return PermutedGen(train_set, test_set, args.n_permutation, remap_class=remap and args.force_out_dim > 0)
    return SplitGen(train_set, test_set, first_split_sz=args.first_split_size, other_split_sz=args.other_split_size,
                    rand_split=args.rand_split, remap_class=remap)


def output_dims(args, task_output_space: Dict[str, int]) -> Dict[str, int]:
    if args.force_out_dim > 0:
        return {"All": args.force_out_dim}
    if args.no_class_remap and args.n_permutation == 0:
        raise UserError("--no_class_remap keeps the dataset's labels: give --force_out_dim with the number of classes")
    return dict(task_output_space)


def image_size(splits) -> int:
    return next(iter(splits.values())).images.shape[-1]


def make_agent(args, sparse_wt: float, image_size: int, out_dim: Dict[str, int], device, writer=None,
               state=None, source: str = "") -> NormalNN:
    """Model and agent from the flags; the model starts from ``state`` (or ``--model_weights``) when given, built
    with the ranks that state's SVD layers have."""
    if state is None and args.model_weights:
        state, source = read_state(args.model_weights), args.model_weights
    model = build_model(args.model_type, args.model_name, image_size=image_size)
    if state is not None:
        ranks, layers = svd_ranks(state), len(svd_layers(model))
        if len(ranks) != layers:
            raise UserError(f"{source} holds {len(ranks)} SVD layers, --model_type {args.model_type} --model_name "
                            f"{args.model_name} has {layers}: it is another architecture; give the flags it was "
                            f"trained with")
        if ranks:
            model = build_model(args.model_type, args.model_name, image_size=image_size, rank=ranks)
    model.add_heads(out_dim)
    if state is not None:
        load_state(model, state, source)
    config = AgentConfig(lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay, optimizer=args.optimizer,
                         schedule=args.schedule, print_freq=args.print_freq, device=str(device), sparse_wt=sparse_wt,
                         perp_wt=args.perp_wt, energy_sv=args.energy_sv, reg_type_svd=args.reg_type_svd,
                         prev_sing=args.prev_sing, grow_network=args.grow_network,
                         grow_to_mean=args.dataset in GROW_TO_MEAN_DATASETS,
                         save_running_stats=args.save_running_stats, channels_last=device.type == "cpu",
                         amp=args.amp, compile=args.compile)
    return build_agent(args.agent_type, args.agent_name, model, config, writer)


def task_order(args, task_names: List[str]) -> List[str]:
    """Tasks sorted by number; shuffled with Python's ``random`` under ``--rand_split_order``."""
    names = sorted(task_names, key=int)
    if args.rand_split_order:
        random.shuffle(names)
    return names


def evaluation_splits(args, train_splits, test_splits):
    """``--eval_on_train_set`` evaluates on the training data."""
    return train_splits if args.eval_on_train_set else test_splits


def train_run(args, sparse_wt: float, repeat: int, device, data, position: Position,
              save_position: Callable[[bool], None], rng: Optional[dict] = None) -> Tuple[dict, List[NormalNN]]:
    """One run of the whole task sequence under the chosen protocol; returns its results record and the agents.

    An interrupted run is continued from ``position`` (tasks done, accuracies, agents' training states) and the
    random generators' state ``rng`` saved with it. ``position`` is kept up to date, and ``save_position(optional)``
    called, after every task and (optional) every epoch.
    """
    seed_everything(args.seed + repeat)
    train_splits, test_splits, task_output_space = build_tasks(args, data)
    stream = TaskStream(task_order(args, list(train_splits)), train_splits,
                        evaluation_splits(args, train_splits, test_splits), args.batch_size, device)
    out_dim = output_dims(args, task_output_space)
    experiment = f"{args.exp_name}_sparse_wt{sparse_wt}"
    progress = Progress(position.tasks_done, position.acc_matrix)
    agents: List[NormalNN] = []

    if position.agents and position.task_order != stream.names:
        raise UserError(f"--resume: the checkpoint's task order {' '.join(position.task_order)} is not the one these "
                        f"flags give, {' '.join(stream.names)}")

    def checkpoint(end_of_epoch: bool = False) -> None:
        position.task_order = list(stream.names)
        position.tasks_done, position.acc_matrix = progress.tasks_done, progress.acc_matrix
        position.agents = [agent.training_state() for agent in agents]
        save_position(end_of_epoch)

    with SummaryWriter(os.path.join("runs", experiment, f"run{repeat}")) as writer:
        def new_agent(state: Optional[dict] = None) -> NormalNN:
            agent = make_agent(args, sparse_wt, image_size(train_splits), out_dim, device, writer,
                               state=state and state["model"], source="the checkpoint")
            if state is not None:
                agent.load_training_state(state)
            agent.after_epoch = lambda: checkpoint(end_of_epoch=True)
            return agent

        agents.extend(new_agent(state) for state in position.agents)
        if agents:
            restore_rng(rng)
        if args.ind_models:
            acc_matrix, agents = learn_separately(new_agent, stream, writer, progress, agents, after_task=checkpoint)
        else:
            if not agents:
                agents.append(new_agent())
            agent = agents[0]
            if args.offline_training:
                acc_matrix = learn_jointly(agent, stream, writer, progress, after_task=checkpoint)
            else:
                def grow_output(name: str) -> None:
                    seen = stream.names[:stream.names.index(name) + 1]
                    agent.set_valid_output_dim(sum(task_output_space[task] for task in seen))

                acc_matrix = learn_sequentially(agent, stream, writer, only_current=args.single_tasks,
                                                before_task=grow_output if args.incremental_class else None,
                                                progress=progress, after_task=checkpoint)
    last = agents[-1]
    model_size = sum(agent.model_size_mb() for agent in agents)
    return run_record(acc_matrix, getattr(last, "chann_used", {}), ranks_of(last), model_size,
                      individual_models_size_mb(last.model, len(stream.names))), agents


def ranks_of(agent: NormalNN) -> List[int]:
    return [layer.rank for layer in svd_layers(agent.model)]


def save_agents(agents: List[NormalNN], directory: str) -> None:
    """The published checkpoint files; with ``--ind_models`` one folder ``task<name>/`` per task's model."""
    if len(agents) > 1:
        for agent in agents:
            save_agent(agent, os.path.join(directory, f"task{agent.tasks_trained[0]}"))
    else:
        save_agent(agents[0], directory)


def save_agent(agent: NormalNN, directory: str) -> None:
    if hasattr(agent, "task_identifiers"):
        save_checkpoint(directory, agent.model.state_dict(), ranks_of(agent), agent.task_identifiers,
                        agent.task_name_count, agent.chann_used, agent.running_stats)
    else:
        atomic_torch_save(agent.model.state_dict(), os.path.join(directory, "final_model.pth"))


def evaluate_checkpoint(args, device, data) -> dict:
    """``--loadmodel``: every task of a saved model through its own components and head."""
    directory = find_checkpoint(args.loadmodel)
    pieces = load_checkpoint(directory)
    seed_everything(args.seed)
    train_splits, test_splits, task_output_space = build_tasks(args, data)
    unknown = [task for task in pieces["task_name_count"] if task not in train_splits]
    if unknown:
        raise UserError(f"{directory} was trained on tasks {', '.join(unknown)}, which --dataset {args.dataset} "
                        f"with these split sizes does not have")
    if svd_ranks(pieces["state_dict"]) != list(pieces["rank"]):
        raise UserError(f"{directory}/rank.pth {list(pieces['rank'])} disagrees with the ranks of final_model.pth "
                        f"{svd_ranks(pieces['state_dict'])}")
    agent = make_agent(args, 0.0, image_size(train_splits), output_dims(args, task_output_space), device,
                       state=pieces["state_dict"], source=f"{directory}/final_model.pth")
    if not hasattr(agent, "load_continual_state"):
        raise UserError(f"--loadmodel needs the SVDNet agent (got --agent_type {args.agent_type})")
    agent.load_continual_state(pieces["task_identifiers"], pieces["task_name_count"], pieces["chann_used"])
    agent.load_running_stats(pieces["running_stats"], f"{directory}/running_stats.pth")
    names = agent.tasks_trained
    stream = TaskStream(names, train_splits, evaluation_splits(args, train_splits, test_splits), args.batch_size,
                        device)
    accuracies = {name: agent.evaluate(stream.eval_loader(name)) for name in names}
    return run_record({names[-1]: accuracies}, agent.chann_used, list(pieces["rank"]), agent.model_size_mb(),
                      individual_models_size_mb(agent.model, len(names)))


def run_search(args, device, data) -> str:
    """``--debug``: the energy search on ``--model_weights`` when given, else the sparsity-weight search."""
    seed_everything(args.seed)
    train_splits, test_splits, task_output_space = build_tasks(args, data)
    stream = TaskStream(task_order(args, list(train_splits)), train_splits,
                        evaluation_splits(args, train_splits, test_splits), args.batch_size, device)
    out_dim = output_dims(args, task_output_space)
    if args.model_weights:
        trained = make_agent(args, args.sparse_wt[0], image_size(train_splits), out_dim, device)
        name, parameter, points = "e_search", "energy_sv", energy_search(trained, stream, *args.e_search)
    else:
        points = sparsity_search(lambda weight: make_agent(args, weight, image_size(train_splits), out_dim, device),
                                 stream, *args.sp_wt_search)
        name, parameter = "sp_wt_search", "sparse_wt"
    directory = os.path.join("results", f"{args.exp_name}_{name}")
    atomic_json_dump([vars(point) for point in points], os.path.join(directory, f"{name}.json"))
    plot_search(points, parameter, os.path.join(directory, f"{name}.png"))
    rows = [f"{parameter:>12}  components  accuracy %"]
    rows += [f"{p.value:12.4g}  {p.components:10d}  {p.accuracy:10.2f}" for p in points]
    return "\n".join(rows + [f"figure: {os.path.join(directory, name + '.png')}"])


def refuse_to_clobber(args) -> None:
    """A finished experiment's results are kept unless ``--overwrite`` is given."""
    for sparse_wt in args.sparse_wt:
        final = os.path.join("results", f"{args.exp_name}_sparse_wt{sparse_wt}", "output_final.json")
        if os.path.exists(final):
            raise UserError(f"{final} holds a finished experiment: choose another --exp_name, or pass --overwrite "
                            f"to replace it")


def start_position(args, checkpoints: RunCheckpoints) -> Tuple[Position, Optional[dict]]:
    """Where training starts, and the random generators' state there: the beginning (None: seeded as usual), or
    with ``--resume`` the latest checkpoint of an interrupted run.

    Without ``--overwrite``, a fresh start never replaces a finished experiment or an interrupted run's checkpoints.
    """
    if args.overwrite:
        checkpoints.clear()
        return Position(), None
    checkpoint = checkpoints.latest()
    if checkpoint is None:
        refuse_to_clobber(args)
        if args.resume:
            log.info("--resume: no checkpoint in %s, starting from the beginning", checkpoints.directory)
        return Position(), None
    if not args.resume:
        raise UserError(f"{checkpoints.directory} holds an interrupted run of --exp_name {args.exp_name}: pass "
                        f"--resume to continue it, or --overwrite to start over")
    check_same_settings(checkpoint["args"], args, checkpoint["path"])
    position = checkpoint["position"]
    log.info("resuming from %s: sparse_wt %s, repeat %d, %d task(s) done", checkpoint["path"],
             args.sparse_wt[min(position.experiment, len(args.sparse_wt) - 1)], position.repeat, position.tasks_done)
    return position, checkpoint["rng"]


def train_sweep(args, device, data, checkpoints: RunCheckpoints, position: Position,
                rng: Optional[dict]) -> List[str]:
    """Every ``--sparse_wt`` experiment, ``--repeat`` runs each, from ``position`` on and checkpointed as it goes;
    returns the tables."""
    def save_position(optional: bool = False) -> None:
        checkpoints.save(args, position, optional)

    for index in range(position.experiment, len(args.sparse_wt)):
        experiment = f"{args.exp_name}_sparse_wt{args.sparse_wt[index]}"
        while position.repeat < args.repeat:
            record, agents = train_run(args, args.sparse_wt[index], position.repeat, device, data, position,
                                       save_position, rng)
            rng = None
            atomic_json_dump(record, os.path.join("results", experiment, f"output_run{position.repeat}.json"))
            save_agents(agents, os.path.join("saves", experiment))
            position.finish_repeat(record)
            save_position()
        atomic_json_dump(final_record(position.runs), os.path.join("results", experiment, "output_final.json"))
        position.finish_experiment(experiment)
        save_position()
    checkpoints.clear()
    return [format_table(experiment, runs) for experiment, runs in position.finished.items()]


def run_experiments(args) -> List[str]:
    """Every ``--sparse_wt`` experiment (or the ``--loadmodel`` evaluation, or a ``--debug`` search); returns the
    tables to print."""
    check_args(args)
    device = pick_device(args.gpuid)
    torch.backends.cudnn.benchmark = args.benchmark
    if device.type == "cpu" and (args.amp or args.compile):
        log.warning("--amp and --compile are meant for CUDA: on a CPU they are usually slower (README, Speed)")
    if args.debug:
        return [run_search(args, device, load_data(args))]
    if args.loadmodel:
        record = evaluate_checkpoint(args, device, load_data(args))
        name = os.path.basename(os.path.normpath(args.loadmodel))
        atomic_json_dump(record, os.path.join("results", name, "output_eval.json"))
        return [format_table(f"{args.loadmodel} ({args.dataset} test set)", [record])]
    data = load_data(args)
    if args.dataset != MULTIDATASET and args.n_permutation == 0:  # bad split sizes stop before anything is touched
        split_boundaries(data[0].num_classes, args.first_split_size, args.other_split_size)
    with exclusive_run(os.path.join("saves", args.exp_name), args.exp_name):
        checkpoints = RunCheckpoints(os.path.join("saves", args.exp_name, "checkpoints"),
                                     interval=args.checkpoint_interval)
        position, rng = start_position(args, checkpoints)
        return train_sweep(args, device, data, checkpoints, position, rng)


def main(argv=None) -> int:
    """Run and print the tables (exit 0); a user error is one line (exit 2); Ctrl-C or SIGTERM stops cleanly (130)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
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
