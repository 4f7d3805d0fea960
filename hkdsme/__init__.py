"""hkdsme: singing melody extraction with harmonic knowledge distillation (HKDSME, ACM MM 2024).

Public API (:mod:`hkdsme.evaluate.inference`)::

    times, f0 = hkdsme.extract_melody("song.wav")             # f0 in Hz every 10 ms, 0 = no voice
    times, f0 = hkdsme.predict(x, sr=44100)                   # an array
    times, f0 = hkdsme.predict_from_file("song.wav")          # a file
    hkdsme.predict_from_files_to_files(["a.wav"], ["a.f0.csv"])   # files → melody files
"""
__version__ = "0.1.0"

__all__ = ["__version__", "extract_melody", "predict", "predict_from_file", "predict_from_files_to_files"]

_LADDER = ("predict", "predict_from_file", "predict_from_files_to_files")


def extract_melody(audio, sr=None, checkpoint=None, device="cpu", **kw):
    """Melody f0 of the lead voice every 10 ms. See :func:`hkdsme.evaluate.inference.extract_melody`."""
    from hkdsme.evaluate.inference import extract_melody as _extract

    return _extract(audio, sr=sr, checkpoint=checkpoint, device=device, **kw)


def __getattr__(name):
    # the ladder is imported on first use, so `import hkdsme` stays light (no torch)
    if name in _LADDER:
        from hkdsme.evaluate import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
