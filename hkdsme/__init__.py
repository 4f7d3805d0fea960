"""hkdsme: singing melody extraction with harmonic knowledge distillation (HKDSME, ACM MM 2024).

Public API (:mod:`hkdsme.evaluate.inference`)::

    times, f0 = hkdsme.extract_melody("song.wav")             # f0 in Hz every 10 ms, 0 = no voice
    times, f0 = hkdsme.predict(x, sr=44100)                   # an array
    times, f0 = hkdsme.predict_from_file("song.wav")          # a file
    hkdsme.predict_from_files_to_files(["a.wav"], ["a.f0.csv"])   # files → melody files

    times, f0, conf = hkdsme.extract_melody("song.wav", return_confidence=True)   # + 1 − p(unvoiced) per frame
    f0_strict = hkdsme.apply_voicing_threshold(f0, conf, 0.8)                    # another θ, afterwards
"""
__version__ = "0.1.0"

__all__ = ["__version__", "extract_melody", "predict", "predict_from_file", "predict_from_files_to_files",
           "apply_voicing_threshold"]

_LADDER = ("predict", "predict_from_file", "predict_from_files_to_files")


def extract_melody(audio, sr=None, checkpoint=None, device="cpu", **kw):
    """Melody f0 of the lead voice every 10 ms. See :func:`hkdsme.evaluate.inference.extract_melody`."""
    from hkdsme.evaluate.inference import extract_melody as _extract

    return _extract(audio, sr=sr, checkpoint=checkpoint, device=device, **kw)


def apply_voicing_threshold(f0, confidence, threshold):
    """``f0`` where ``confidence ≥ threshold``, else 0. See :func:`hkdsme.model.decode.apply_voicing_threshold`
    (to lower the threshold afterwards, predict with ``voicing_threshold=0``)."""
    from hkdsme.model.decode import apply_voicing_threshold as _apply

    return _apply(f0, confidence, threshold)


def __getattr__(name):
    # the ladder is imported on first use, so `import hkdsme` stays light (no torch)
    if name in _LADDER:
        from hkdsme.evaluate import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
