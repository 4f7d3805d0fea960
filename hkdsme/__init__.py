"""hkdsme: singing melody extraction with harmonic knowledge distillation (HKDSME, ACM MM 2024).

Public API::

    times, f0 = hkdsme.extract_melody("song.wav")   # f0 in Hz every 10 ms, 0 = no voice
"""
__version__ = "0.1.0"

__all__ = ["__version__", "extract_melody"]


def extract_melody(audio, sr=None, checkpoint=None, device="cpu"):
    """Melody f0 of the lead voice every 10 ms. See :func:`hkdsme.evaluate.predict.extract_melody`."""
    from hkdsme.evaluate.predict import extract_melody as _extract

    return _extract(audio, sr=sr, checkpoint=checkpoint, device=device)
