"""MSNet vocal on its own 44.1 kHz CFP vs the project's 8 kHz CFP: accuracy and speed (docs/msnet_front_end.md).

Per track: the network's posteriors from each front end (computed once), the native ones mapped onto the 10 ms
grid linearly and by nearest frame, each decoded with the voicing decoder at θ = 0.5 and with the argmax;
scored with mir_eval (MIR-1K: the five metrics at 50 cents; ultrastar: + OAc, at 100 cents). The first track
also checks that the public ``Predictor`` gives the same f0 as this script. Times are wall seconds per stage.

    python experiments/real/msnet_front_end.py mir1k --out runs/real/msnet_front_end
    python experiments/real/msnet_front_end.py ultrastar --out runs/real/msnet_front_end

``--bandlimit 16000`` adds an arm: the native front end on the audio resampled to 16 kHz and back (MIR-1K's
bandwidth), to tell the band above 8 kHz from the rest (``--track`` runs only the named tracks).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOTS = {"mir1k": Path("../shared/data/MIR-1K"), "ultrastar": Path("../shared/data/ultrastar-cc")}
TOLERANCE = {"mir1k": 50.0, "ultrastar": 100.0}
THETA = 0.5


def posteriors_8k(pred, feats: np.ndarray) -> np.ndarray:
    """(321, T) softmax of the melody channel over the project's 64-frame segments (as ``Predictor``)."""
    out = np.empty((321, feats.shape[-1]), np.float32)
    for a, n, logits in pred._segment_logits(feats):
        p = torch.softmax(logits[:, 0].float(), dim=1)            # (S, 321, 64)
        out[:, a:a + n] = p.permute(1, 0, 2).reshape(321, -1)[:, :n].numpy()
    return out


def decode(post: np.ndarray) -> dict[str, np.ndarray]:
    from hkdsme.model.decode import bins_from_output, bins_to_hz, f0_from_voicing, voicing_and_pitch

    v, hz = voicing_and_pitch(post[None], logits=False)
    return {"voicing": f0_from_voicing(v, hz, THETA), "argmax": bins_to_hz(bins_from_output(post[None]))}


def main():
    from hkdsme.evaluate.inference import Predictor, streamed_cfp
    from hkdsme.evaluate.metrics import ALL_METRICS, METRICS, melody_scores
    from hkdsme.pipeline import audio, cfp_native, grid
    from hkdsme.pipeline.atomic import write_text
    from hkdsme.pipeline.datasets import list_tracks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", choices=sorted(ROOTS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--track", action="append", help="only this track id (repeatable)")
    ap.add_argument("--bandlimit", type=int, help="also the native front end on audio band-limited to this rate")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = ALL_METRICS if args.dataset == "ultrastar" else METRICS
    tol = TOLERANCE[args.dataset]
    p8 = Predictor(model="msnet-vocal", front_end="cfp-8k", voicing_threshold=THETA)
    p5 = Predictor(model="msnet-vocal", front_end="native", voicing_threshold=THETA)
    rows = []
    tracks = list_tracks(args.dataset, ROOTS[args.dataset], split="validation", limit=args.limit)
    tracks = [tr for tr in tracks if not args.track or tr.track_id in args.track]
    for k, tr in enumerate(tracks):
        assert not tr.extra, "a remixed track: its 44.1 kHz audio would not be the 8 kHz one"
        x8 = tr.load_audio()
        x44 = audio.load_audio(tr.audio_path, sr=cfp_native.SR)
        ref_t, ref_f = tr.load_f0()
        t = [time.perf_counter()]
        f8 = streamed_cfp(x8)
        t.append(time.perf_counter())
        post8 = posteriors_8k(p8, f8)
        t.append(time.perf_counter())
        f5 = cfp_native.cfp_native(x44)
        t.append(time.perf_counter())
        post5 = p5.native_posteriors(f5)
        t.append(time.perf_counter())
        n8, n5 = grid.n_frames(x8.size), cfp_native.grid_len(x44.size)
        arms = {"8k": post8, "native-linear": cfp_native.to_grid(post5, n5, "linear"),
                "native-nearest": cfp_native.to_grid(post5, n5, "nearest")}
        if args.bandlimit:
            xb = audio.resample(audio.resample(x44, cfp_native.SR, args.bandlimit), args.bandlimit, cfp_native.SR)
            xb = np.pad(xb, (0, max(0, x44.size - xb.size)))[:x44.size]
            postb = p5.native_posteriors(cfp_native.cfp_native(xb))
            arms[f"native-linear-bl{args.bandlimit // 1000}k"] = cfp_native.to_grid(postb, n5, "linear")
        row = {"track": tr.track_id, "seconds": x44.size / cfp_native.SR, "frames_10ms": [n8, n5],
               "time_s": {"cfp8k": t[1] - t[0], "net8k": t[2] - t[1], "cfp_native": t[3] - t[2],
                          "net_native": t[4] - t[3]}, "scores": {}}
        for arm, post in arms.items():
            for dec, f0 in decode(post).items():
                times = grid.frame_times(f0.size)
                row["scores"][f"{arm}/{dec}"] = melody_scores(ref_t, ref_f, times, f0, cent_tolerance=tol,
                                                              metrics=metrics)
                if k == 0 and arm in ("8k", "native-linear") and dec == "voicing":   # = the public path
                    pred, x = (p8, x8) if arm == "8k" else (p5, x44)
                    assert np.allclose(pred.predict_audio(x)[1], f0, rtol=1e-6), arm
        rows.append(row)
        print(tr.track_id, {a: round(s["OAc" if "OAc" in s else "OA"], 2) for a, s in row["scores"].items()},
              {a: round(v, 2) for a, v in row["time_s"].items()}, flush=True)
    mean = {a: {m: float(np.mean([r["scores"][a][m] for r in rows])) for m in metrics} for a in rows[0]["scores"]}
    write_text(out / f"{args.dataset}.json", json.dumps({"tolerance_cents": tol, "theta": THETA,
                                                                "mean": mean, "tracks": rows}, indent=1))
    print(f"\n{args.dataset}: mean over {len(rows)} tracks, {tol:g} cents, %")
    print("| arm / decoder | " + " | ".join(metrics) + " |\n|---|" + "---:|" * len(metrics))
    for a, s in mean.items():
        print(f"| {a} | " + " | ".join(f"{s[m]:.2f}" for m in metrics) + " |")
    tot = {k: sum(r["time_s"][k] for r in rows) for k in rows[0]["time_s"]}
    secs = sum(r["seconds"] for r in rows)
    print(f"audio {secs:.0f} s; × realtime: " + ", ".join(f"{k} {secs / v:.1f}" for k, v in tot.items()))


if __name__ == "__main__":
    main()
