"""``python -m evaluation.report``: every figure and the summary from a tiny run's results, and from results in the
published code's format (no accuracy matrix, no size per task); a folder without results is a one-line error."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import iBatchLearn
from helpers import QUICK, REPO_ROOT
from evaluation.figures import DODGE_POINTS, clipped_interval, dodge, experiment_style, size_groups
from evaluation.report import Experiment, differing_flags, labels, over_tasks
from evaluation.report import main as report_main
from evaluation.results import interval_95

PNG = b"\x89PNG\r\n\x1a\n"
TWO_TASKS = [*QUICK, "--batch_size", "10", "--first_split_size", "5", "--other_split_size", "5"]


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, cifar10_root) -> Path:
    """``results/`` of tiny finished runs: CACL (2 repeats, with ``--task_agnostic``) and EWC at two --reg_coef values
    (1 repeat each)."""
    directory = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        common = [*TWO_TASKS, "--dataset", "CIFAR10", "--dataroot", cifar10_root]
        assert iBatchLearn.main([*common, "--repeat", "2", "--exp_name", "cacl", "--sparse_wt", "0.1",
                                 "--task_agnostic"]) == 0
        assert iBatchLearn.main([*common, "--repeat", "1", "--exp_name", "ewc", "--agent_type", "regularization",
                                 "--agent_name", "EWC", "--model_type", "customnet", "--model_name", "Net",
                                 "--reg_coef", "1", "10"]) == 0
    return directory / "results"


def published_results(folder: Path) -> Path:
    """A results folder in the published code's format (the shape of its results/SVDNet_Test_sparse_wt0.1/)."""
    folder.mkdir(parents=True)
    channels = {"0": [6, 17, 23, 24, 35], "1": [5, 13, 14, 13, 33], "2": [3, 8, 11, 11, 20]}
    acc = {"12": 82.8, "6": 68.0, "18": 67.0}
    run = {"channels": channels, "acc": acc, "avg_acc": 72.6, "all_rank": [18, 57, 104, 115, 170],
           "model_size": 13.032944}
    final = {"std_acc": 0, "model_size": 13.032944, "avg_acc": 72.6, "acc": acc,
             "chann": {task: [float(c) for c in channels[str(i)]] for i, task in enumerate(acc)}}
    (folder / "output_run0.json").write_text(json.dumps(run))
    (folder / "output_final.json").write_text(json.dumps(final))
    return folder


def summary_row(summary: str, experiment: str) -> list:
    line = next(line for line in summary.splitlines() if line.startswith(f"| {experiment} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_draws_every_figure_and_summarizes_each_experiment(finished_runs, tmp_path, capsys):
    folders = sorted(str(path) for path in finished_runs.iterdir())
    assert [Path(folder).name for folder in folders] == ["cacl_sparse_wt0.1", "ewc_reg_coef1.0", "ewc_reg_coef10.0"]
    assert report_main([*folders, "--out", str(tmp_path / "report")]) == 0
    out = tmp_path / "report"
    expected = {"summary.md", "accuracy_vs_size.png", "over_tasks.png", "task_agnostic.png",
                "components_cacl_sparse_wt0.1.png",
                *(f"{kind}_{name}.png" for kind in ("accuracy_matrix", "model_size")
                  for name in ("cacl_sparse_wt0.1", "ewc_reg_coef1.0", "ewc_reg_coef10.0"))}
    assert {path.name for path in out.iterdir()} == expected
    for name in expected - {"summary.md"}:
        assert (out / name).read_bytes().startswith(PNG) and (out / name).stat().st_size > 5000, name
    summary = (out / "summary.md").read_text()
    for name in expected - {"summary.md"}:
        assert f"]({name})" in summary
    final = json.loads((finished_runs / "cacl_sparse_wt0.1" / "output_final.json").read_text())
    row = summary_row(summary, "cacl_sparse_wt0.1")
    assert row[1] == "CACL" and "--sparse_wt 0.1" in row[2] and "--model_name Net_SVD" in row[2]
    assert row[3] == f"{final['avg_acc']:.2f} ± {final['std_acc']:.2f}"
    assert row[4] == f"± {interval_95(final['all_avg_acc']):.2f}"
    assert row[5:7] == ["0.00 ± 0.00", "0.00 ± 0.00"] and row[7] == f"{final['model_size']:.3f}"
    ewc = summary_row(summary, "ewc_reg_coef10.0")
    assert ewc[1] == "EWC" and "--reg_coef 10.0" in ewc[2] and "--sparse_wt" not in ewc[2]
    assert summary_row(summary, "ewc_reg_coef1.0")[5] != "n/a" and ewc[4] == "n/a"  # one repeat: no interval
    assert "| cacl_sparse_wt0.1 |" in capsys.readouterr().out

    without = summary_row(summary.split("## Without the task label")[1], "CACL")  # EWC's runs have none
    runs = [json.loads((finished_runs / "cacl_sparse_wt0.1" / f"output_run{r}.json").read_text()) for r in (0, 1)]
    expected_cells = [f"{final['avg_acc']:.2f} ± {final['std_acc']:.2f}", f"± {interval_95(final['all_avg_acc']):.2f}"]
    for rule in ("logits", "log_softmax", "entropy"):
        for key in ("avg_acc", "task_id_acc"):
            values = [run["task_agnostic"][rule][key] for run in runs]
            expected_cells.append(f"{statistics.fmean(values):.2f} ± {statistics.pstdev(values):.2f}")
            if rule == "logits":
                expected_cells.append(f"± {interval_95(values):.2f}")
    assert without[1:] == expected_cells
    assert "ewc" not in summary.split("## Without the task label")[1].split("## Each experiment")[0].lower()


def test_a_flag_of_some_methods_only_shows_for_the_experiments_whose_method_reads_it():
    def experiment(name, flags, read):
        environment = {"flags": {"model_name": "Net", **flags}, **({} if read is None else {"method_flags": read})}
        return Experiment(name, [{"setting": {}, "environment": environment}], {})

    shown = differing_flags([
        experiment("finetune", {"memory_size": 1000, "energy_sv": 3e-05}, []),
        experiment("gem", {"memory_size": 200, "energy_sv": 3e-05}, ["memory_size"]),
        experiment("cacl", {"memory_size": 1000, "energy_sv": 0.001}, ["energy_sv"]),
        experiment("older", {"memory_size": 1000, "energy_sv": 3e-05}, None),  # results without the record
    ])
    assert shown == {"finetune": "", "gem": "--memory_size 200", "cacl": "--energy_sv 0.001",
                     "older": "--energy_sv 3e-05 --memory_size 1000"}


def test_report_on_results_in_the_published_format_skips_what_they_do_not_hold(finished_runs, tmp_path):
    published = published_results(tmp_path / "results" / "SVDNet_Test_sparse_wt0.1")
    out = tmp_path / "report"
    assert report_main([str(published), str(finished_runs / "cacl_sparse_wt0.1"), "--out", str(out)]) == 0
    names = {path.name for path in out.iterdir()}
    assert "components_SVDNet_Test_sparse_wt0.1.png" in names and "accuracy_vs_size.png" in names
    assert not {"accuracy_matrix_SVDNet_Test_sparse_wt0.1.png", "model_size_SVDNet_Test_sparse_wt0.1.png"} & names
    summary = (out / "summary.md").read_text()
    row = summary_row(summary, "SVDNet_Test_sparse_wt0.1")
    assert row[1] == "SVDNet (no flags recorded)" and row[3] == "72.60 ± 0.00"
    assert row[4:9] == ["n/a", "n/a", "n/a", "13.033", "n/a"]
    assert "no acc_matrix (published format)" in summary and "no model_size_after_task" in summary


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder.mkdir(), "holds no results"),
    (lambda folder: None, "no such results folder"),
    (lambda folder: folder.mkdir() or (folder / "output_final.json").write_text("{not json"), "cannot read"),
], ids=["empty-folder", "no-folder", "unreadable"])
def test_report_over_a_folder_without_results_is_a_one_line_error(tmp_path, make, message):
    folder = tmp_path / "results" / "nothing"
    folder.parent.mkdir()
    make(folder)
    result = subprocess.run([sys.executable, "-m", "evaluation.report", str(folder), "--out", str(tmp_path / "out")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_report_into_a_file_is_a_one_line_error(finished_runs, tmp_path, capsys):
    (tmp_path / "out").write_text("a file, not a folder")
    assert report_main([str(finished_runs / "cacl_sparse_wt0.1"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and err.count("\n") == 1


def test_points_of_about_one_size_stand_side_by_side_in_order_of_accuracy():
    sizes = [1.607] * 10 + [1.62, 5.7, 18.4]
    accuracies = [80.6, 81.7, 82.4, 78.5, 88.1, 95.5, 97.9, 97.1, 97.6, 98.1, 91.9, 96.0, 96.1]
    offsets = dodge(sizes, accuracies, 0.02 * 18.4)
    crowded = sorted(range(11), key=lambda i: accuracies[i])
    assert [offsets[i] for i in crowded] == [(rank - 5) * DODGE_POINTS for rank in range(11)]
    assert offsets[11:] == [0.0, 0.0]  # alone at their sizes


def test_size_groups_join_points_of_about_the_same_size_only():
    assert size_groups([1.6, 5.7, 1.6, 7.9, 1.7, 6.0], 0.5) == [[0, 2, 4], [1, 5], [3]]


def test_the_figures_name_each_method_and_the_flags_that_tell_apart_those_of_one_method():
    def experiment(name, agent_name, method=None, **flags):
        environment = {"flags": {"agent_type": "x", "agent_name": agent_name, "model_name": "Net", **flags},
                       "method_flags": [], **({} if method is None else {"method": method})}
        return Experiment(name, [{"setting": {}, "environment": environment}], {})

    named = labels([
        experiment("compare_cacl_sparse_wt0.4", "SVDNet", "CACL", model_name="Net_SVD"),
        experiment("compare_finetune_reg_coef0.0", "NormalNN", "fine-tuning"),
        experiment("compare_separate_reg_coef0.0", "NormalNN", "fine-tuning", ind_models=True),
        experiment("ewc_reg_coef10.0", "EWC", "EWC", reg_coef=10.0),
        experiment("ewc_reg_coef100.0", "EWC", "EWC", reg_coef=100.0),
        experiment("older", "GEM"),  # results without the method's name: its class
        experiment("again", "GEM"),
    ])
    assert named == {"compare_cacl_sparse_wt0.4": "CACL", "compare_finetune_reg_coef0.0": "fine-tuning",
                     "compare_separate_reg_coef0.0": "fine-tuning (separate models)",
                     "ewc_reg_coef10.0": "EWC --reg_coef 10.0", "ewc_reg_coef100.0": "EWC --reg_coef 100.0",
                     "older": "GEM (older)", "again": "GEM (again)"}


def test_error_bars_stop_at_the_accuracies_that_can_be():
    assert clipped_interval(80.0, 60.8) == [[60.8], [20.0]]
    assert clipped_interval(30.0, 45.0) == [[30.0], [45.0]]
    assert clipped_interval(50.0, 5.0) == [[5.0], [5.0]]


@pytest.mark.parametrize("count", [3, 10, 15, 20, 45])
def test_every_experiment_of_a_report_has_its_own_color_and_marker(count):
    styles = [experiment_style(index, count) for index in range(count)]
    assert len({(tuple(style["color"]), style["marker"]) for style in styles}) == count
    if count <= 20:  # one marker while the colors last, so the colors alone tell them apart
        assert len({tuple(style["color"]) for style in styles}) == count


def test_the_95_percent_interval_is_students_t_over_the_repeats():
    """n = 3: t₀.₉₇₅,₂ = 4.302652729911275 (tables), s = 1 for [1, 2, 3]: half-width 4.3027 / √3."""
    assert interval_95([1.0, 2.0, 3.0]) == pytest.approx(4.302652729911275 / 3 ** 0.5, rel=1e-9)
    assert interval_95([5.0]) is None and interval_95([]) is None


def test_the_curve_over_the_tasks_averages_the_kth_row_of_each_repeat():
    """Two repeats learning the tasks in other orders: the k-th point is the mean of their k-th rows."""
    runs = [{"acc": {"1": 0, "2": 0}, "acc_matrix": {"1": {"1": 90.0}, "2": {"1": 70.0, "2": 80.0}},
             "model_size_after_task": {"1": 1.0, "2": 2.0}},
            {"acc": {"2": 0, "1": 0}, "acc_matrix": {"2": {"2": 60.0}, "1": {"2": 50.0, "1": 100.0}},
             "model_size_after_task": {"2": 3.0, "1": 5.0}}]
    curve = over_tasks(Experiment("x", runs, {}))
    assert curve.tasks_learnt == [1, 2]
    assert curve.accuracy == pytest.approx([(90 + 60) / 2, (75 + 75) / 2]) and curve.size == [2.0, 3.5]
    joint = over_tasks(Experiment("j", [{"acc": {"1": 0, "2": 0}, "acc_matrix": {"All": {"1": 80.0, "2": 90.0}},
                                         "model_size_after_task": {"All": 1.5}}], {}))
    assert joint.tasks_learnt == [2] and joint.accuracy == [85.0]
