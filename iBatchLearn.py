"""Compression-aware Continual Learning (CACL) on a sequence of tasks: train, or evaluate a saved model.

The flags and their defaults are those of the published code (``--help`` lists them by group: the shared ones, then
each method's own); see README.md for the paper's settings.
"""
import sys
from typing import List

from experiment.builders import load_data
from experiment.config import Config, prepared_run, read_config
from experiment.evaluate_saved import evaluate_saved_model
from experiment.search import run_search
from experiment.training import train
from utils.errors import run_command


def run_experiments(config: Config) -> List[str]:
    """Every experiment of the sweep (or the ``--loadmodel`` evaluation, or a ``--debug`` search); returns the
    tables to print."""
    with prepared_run(config) as device:
        if config.searches.debug:
            return [run_search(config, device, load_data(config.data))]
        if config.run.loadmodel:
            return [evaluate_saved_model(config, device)]
        return train(config, device, load_data(config.data))


def main(argv=None) -> int:
    """Run and print the tables (exit 0); a user error is one line (exit 2); Ctrl-C or SIGTERM stops cleanly (130),
    its outputs and checkpoints whole."""
    def run() -> None:
        tables = run_experiments(read_config(argv, description=__doc__.splitlines()[0]))
        print("\n\n".join(tables))

    return run_command(run, stopped="outputs and checkpoints written so far are whole; continue a training run "
                                    "with the same flags and --resume")


if __name__ == "__main__":
    sys.exit(main())
