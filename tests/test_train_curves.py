"""`hkd-train plot`: reading metrics.jsonl (repeated epochs, bad lines), the steps axis, the best epoch, the PNG."""
import json

import matplotlib.image as mpimg
import pytest
from click.testing import CliRunner

from hkdsme.pipeline.errors import InputError
from hkdsme.train.cli import main
from hkdsme.train.curves import best_epoch, plot_runs, read_metrics, steps_axis


def write_run(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def teacher_rows():
    # validated every second epoch (--val-every 2), as the FTANet teacher of the study
    return [{"epoch": 0, "steps": 100, "loss_total": 4.0, "val_OA": 66.0, "val_robust_OA": 49.4, "val_select": 57.7},
            {"epoch": 1, "steps": 100, "loss_total": 3.1},
            {"epoch": 2, "steps": 100, "loss_total": 3.0, "val_OA": 81.0, "val_robust_OA": 59.6, "val_select": 70.3}]


def student_rows():
    return [{"epoch": e, "steps": 60, "loss_total": 3.1 - 0.01 * e, "val_OA": oa, "val_select": oa - 9,
             "hcr_kept": k, "hcr_total": 400} for e, (oa, k) in enumerate([(86.0, 40), (86.9, 44), (85.1, 50)])]


def test_read_metrics_last_line_of_a_repeated_epoch_wins(tmp_path):
    # a run cut off after writing epoch 1's metrics but before its last.pt redoes epoch 1 on --resume
    rows = [{"epoch": 0, "val_OA": 1.0}, {"epoch": 1, "val_OA": 2.0}, {"epoch": 1, "val_OA": 3.0}]
    run = write_run(tmp_path / "r", rows)
    assert [r["val_OA"] for r in read_metrics(run)] == [1.0, 3.0]


def test_read_metrics_errors_name_the_folder_or_the_line(tmp_path):
    with pytest.raises(InputError, match="no metrics.jsonl: not a training run folder") as e:
        read_metrics(tmp_path)
    assert e.value.path == tmp_path
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n{"loss": 1}\n')
    with pytest.raises(InputError, match="line 2 is not an epoch record"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no epochs recorded yet"):
        read_metrics(tmp_path)


def test_steps_axis_and_best_epoch():
    assert steps_axis(teacher_rows()) == [100, 200, 300]
    assert steps_axis([{"epoch": 0}, {"epoch": 1}]) == [1, 2]
    assert best_epoch(teacher_rows())["epoch"] == 2                       # highest val_select; epoch 1 unscored
    assert best_epoch([{"epoch": 0, "val_OA": 5.0}, {"epoch": 1, "val_OA": 4.0}])["epoch"] == 0   # no val_select
    assert best_epoch([{"epoch": 0, "loss_total": 1.0}]) is None


def test_plot_runs_writes_a_png(tmp_path):
    t = write_run(tmp_path / "t-aug", teacher_rows())
    s = write_run(tmp_path / "h-aug", student_rows())
    out = plot_runs([t, s], tmp_path / "fig" / "curves.png", labels=["teacher", "student"], title="x")
    img = mpimg.imread(out)
    assert img.shape[0] > 300 and img.shape[1] > 1000      # three panels side by side (HCR present)
    only = plot_runs([t], tmp_path / "t.png")
    assert mpimg.imread(only).shape[1] < img.shape[1]       # no HCR anywhere: two panels
    assert not list(tmp_path.glob("fig/.*tmp*"))


def test_plot_runs_checks_everything_before_drawing(tmp_path):
    t = write_run(tmp_path / "t", teacher_rows())
    with pytest.raises(InputError, match="missing"):
        plot_runs([t, tmp_path / "missing"], tmp_path / "c.png")
    with pytest.raises(ValueError, match="2 run.s. but 1 label"):
        plot_runs([t, t], tmp_path / "c.png", labels=["a"])
    assert not (tmp_path / "c.png").exists()


def test_cli_plot(tmp_path):
    t = write_run(tmp_path / "t", teacher_rows())
    r = CliRunner().invoke(main, ["plot", str(t), "--out", str(tmp_path / "c.png")])
    assert r.exit_code == 0 and "wrote" in r.output and (tmp_path / "c.png").stat().st_size > 1000
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "d.png")])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and "no metrics.jsonl" in r.output
