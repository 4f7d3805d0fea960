"""The whole job on built-in synthetic data, in a few minutes on a laptop CPU (`hkd-train demo`).

synthetic songs → CFP shards → teacher pre-training → student distillation with HCR pseudo-labels →
report (table + plots) → melody of one song. Every stage goes through the same public functions as the CLIs;
the budgets are tiny, so the numbers show that the machinery works, not what the method can reach.
"""
from __future__ import annotations

import time
from pathlib import Path

# Songs per subset (8 s each) and the training budget: small enough for ≤ 5 min on 2 CPU cores.
SONGS = {"train": 12, "unlabeled": 6, "validation": 2, "test": 3}
# The teacher is ~8x the student's cost per step, so it gets a token budget here; the student gets the steps.
# Sized for <= 3 min on 2 AVX2-only cores (fp32): measured 184 s with 5 student epochs and 8 teacher steps per epoch.
TEACHER = dict(epochs=2, batch=8, max_steps_per_epoch=6, lr=1e-3)
STUDENT = dict(epochs=4, batch=16, max_steps_per_epoch=40, lr=1e-3)


def _step(log, msg: str, t0: float) -> None:
    log(f"[{time.perf_counter() - t0:6.1f} s] {msg}")


MARKER = ".hkd-demo"


def _fresh_folder(out: Path) -> None:
    """Start each demo from scratch: reuse only a folder an earlier demo made (it has MARKER); refuse others."""
    import shutil

    from hkdsme.pipeline.errors import InputError

    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise InputError(out, "folder exists and was not made by `hkd-train demo`: choose another --out")
        for child in out.iterdir():
            if child.name != MARKER:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()


def run_demo(out="runs/demo", *, seed: int = 0, jobs: int = 2, log=print) -> dict:
    """Run the demo into ``out``; return the paths of everything it wrote."""
    from hkdsme.evaluate.predict import predict_files
    from hkdsme.evaluate.report import run_report
    from hkdsme.pipeline import datasets, synthetic
    from hkdsme.pipeline.extract import extract
    from hkdsme.train import config
    from hkdsme.train.distill import train_student
    from hkdsme.train.teacher import train_teacher

    out = Path(out)
    t0 = time.perf_counter()
    _fresh_folder(out)
    data, cache = out / "data", out / "cache"
    for i, (name, n) in enumerate(SONGS.items()):
        synthetic.write_dataset(data / name, n=n, seed=seed + 1000 * i)
    _step(log, f"synthetic songs → {data}", t0)

    caches = {}
    for name in SONGS:
        kind = "unlabeled" if name == "unlabeled" else "synthetic"      # labels of the unlabeled set stay unread
        tracks = datasets.list_tracks(kind, data / name)
        s = extract(tracks, cache / name, jobs=jobs, progress=True, dataset=kind, echo=log)
        if not s["ok"] or s["failed"]:
            raise RuntimeError(f"demo extraction failed: {s['failures']}")
        caches[name] = str(cache / name)
    _step(log, f"CFP shards → {cache}", t0)

    common = dict(val=caches["validation"], seed=seed, workers=0)
    tcfg = config.resolve("teacher", overrides=dict(common, data=[caches["train"]], out=str(out / "teacher"),
                                                    **TEACHER))
    train_teacher(tcfg)
    teacher_ckpt = out / "teacher" / "best.pt"
    _step(log, f"teacher → {teacher_ckpt}", t0)

    scfg = config.resolve("distill", overrides=dict(common, teacher=str(teacher_ckpt), labeled=[caches["train"]],
                                                    unlabeled=[caches["unlabeled"]], out=str(out / "student"),
                                                    **STUDENT))
    train_student(scfg)
    student_ckpt = out / "student" / "best.pt"
    _step(log, f"student → {student_ckpt}", t0)

    report_dir = out / "report"
    run_report([str(student_ckpt), str(teacher_ckpt)], "synthetic", data / "test", out_dir=report_dir,
               cache_dir=caches["test"], progress=True, log=log)
    _step(log, f"report → {report_dir / 'report.md'}", t0)

    song = sorted((data / "test").glob("*.wav"))[0]
    written, failed = predict_files([song], student_ckpt, out_dir=out / "predict", plot=True, progress=True)
    if failed:
        raise RuntimeError(f"demo prediction failed: {failed}")
    melody = next(iter(written.values()))
    _step(log, f"melody of {song.name} → {melody}", t0)
    log((report_dir / "report.md").read_text())
    log(f"demo done in {time.perf_counter() - t0:.0f} s: report {report_dir / 'report.md'}")
    return {"data": data, "cache": cache, "teacher": teacher_ckpt, "student": student_ckpt,
            "report": report_dir, "melody": melody}
