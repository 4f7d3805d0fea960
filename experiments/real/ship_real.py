"""Ship a real-music run as an embedded student: export RUN/best.pt, keep MSNet vocal's MIT notice and a note in
the file, optionally restate stored option paths (--config KEY=VALUE, e.g. the exported start the recipe names),
then give it θ and its int8 calibration:

    python experiments/real/ship_real.py runs/real/weak/best.pt hkdsme/weights/hkdsme.pt --note "..." \
        --config init=runs/real/hkdsme-stage1.pt
    hkd-eval calibrate --checkpoint hkdsme/weights/hkdsme.pt --cache data_cache/mir1k-validation \
        --cache data_cache/mir1k-robust --write
    MODELS=hkdsme bash experiments/int8/calibrate_embedded.sh
"""
import argparse
import json
from pathlib import Path

from hkdsme.model.checkpoint import export_checkpoint, load_checkpoint, read_meta, save_checkpoint

LICENSE = Path("hkdsme/weights/LICENSE-msnet-vocal.txt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("best")
    ap.add_argument("out")
    ap.add_argument("--note", required=True)
    ap.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                    help="stored option to restate (VALUE parsed as JSON, else kept as text)")
    a = ap.parse_args()
    export_checkpoint(a.best, a.out)
    meta = read_meta(a.out)
    net, _ = load_checkpoint(a.out)
    config = dict(meta.get("config") or {})
    for kv in a.config:
        k, v = kv.split("=", 1)
        if k not in config:
            raise SystemExit(f"{a.best}: no stored option {k!r}")
        try:
            config[k] = json.loads(v)
        except ValueError:
            config[k] = v
    extra = dict(meta.get("extra") or {}, note=a.note, license=LICENSE.read_text(encoding="utf-8"))
    save_checkpoint(a.out, net, kind=meta["kind"], config=config, feature_hash=meta["feature_hash"],
                    metrics=meta.get("metrics"), extra=extra)
    print(f"{a.out}: exported from {a.best}; licence and note stored")


if __name__ == "__main__":
    main()
