"""README, "Adding a method": the example method is one file, found by the registry, with its flag in ``--help`` and
checked at the door; it keeps every earlier task's outputs, and a run of it killed and resumed gives exactly the
uninterrupted run's outputs."""
import re
import subprocess
import sys

import torch

from agents import agent_types
from agents.feature_extraction import FeatureExtraction, FeatureExtractionSettings
from helpers import REPO_ROOT, assert_killed_run_resumes_exactly, batches, run_driver
from models import build_model

EXAMPLE = REPO_ROOT / "agents" / "feature_extraction.py"
FLAGS = ["--agent_type", "feature_extraction", "--agent_name", "FeatureExtraction", "--model_type", "customnet",
         "--model_name", "Net"]


def test_the_readme_shows_the_whole_example_file():
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.DOTALL)
    assert EXAMPLE.read_text() in blocks


def test_the_registry_finds_the_method_and_help_lists_its_flag_in_its_own_group():
    assert agent_types()["feature_extraction"] == {"FeatureExtraction": FeatureExtraction}
    help_text = subprocess.run([sys.executable, str(REPO_ROOT / "iBatchLearn.py"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    title, option = help_text.index("\n--agent_type feature_extraction:"), "\n  --freeze_after"
    assert help_text.count(option) == 1 and help_text.index(option) > title
    assert "\n\n--agent_type" not in help_text[title + 1:help_text.index(option)]  # no other group between


def test_a_bad_value_of_its_flag_is_a_one_line_error(workdir, capsys):
    status, _, err = run_driver(capsys, *FLAGS, "--freeze_after", "-1")
    assert status == 2 and err == "error: --freeze_after must be 0 or more, got -1\n"


def test_later_tasks_leave_earlier_tasks_logits_bit_identical():
    torch.manual_seed(0)
    model = build_model("customnet", "Net")
    model.add_heads({"1": 2, "2": 2, "3": 2})
    agent = FeatureExtraction(model, FeatureExtractionSettings(schedule=[1], print_freq=1000, weight_decay=0.1))
    probe = batches("9", n_batches=1)[0][0]
    agent.learn_task("1", batches("1"))
    before = agent.network_logits(agent.task_network("1"), "1", probe)
    agent.learn_task("2", batches("2"))
    agent.learn_task("3", batches("3"))
    assert torch.equal(agent.network_logits(agent.task_network("1"), "1", probe), before)


def test_killed_and_resumed_it_gives_the_uninterrupted_outputs(tmp_path, cifar10_root):
    """Two tasks of two epochs, checkpointed after every epoch; SIGKILLed in task 1's second epoch and between the
    tasks."""
    flags = ["--gpuid", "-1", "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--schedule", "1", "2",
             "--batch_size", "10", "--repeat", "1", "--print_freq", "1000", "--exp_name", "fe",
             "--checkpoint_interval", "0", *FLAGS]
    assert_killed_run_resumes_exactly(tmp_path, flags, "fe", kills=[1, 3])
