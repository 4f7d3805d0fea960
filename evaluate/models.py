"""The embedded models: which checkpoint a name (``"hkdsme"``, ``"hkdsme-mir1k"``, ...) or "the default" means.

The package ships three named students and the FTANet teacher they learn from as data (``hkdsme/weights/``;
the students are the fast choices, ``ftanet`` the accurate one, ~4.4× slower) with an index ``weights/models.json``
(``{"default": NAME, "models": {NAME: FILE}}``, docs/model_card.md). No torch here: the parent of a many-file
predict resolves the checkpoint before its workers load it.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


class NoDefaultModel(FileNotFoundError):
    """The package ships no embedded default model; pass a checkpoint."""


STUDENTS = ("hkdsme", "hkdsme-mir1k", "supervised")   # named students shipped as package data; the default is one
MODELS = STUDENTS + ("ftanet", "msnet-vocal")   # + the FTANet teacher (float16 weights): more accurate, slower;
# + the published MSNet vocal network (Hsieh et al. 2019; MIT, trained on MedleyDB; float16 weights), a peer
MODELS_INDEX = "weights/models.json"  # {"default": NAME, "models": {NAME: FILE}}: which file is which, the default


def _models_index() -> dict:
    ref = resources.files("hkdsme").joinpath(MODELS_INDEX)
    if not ref.is_file():
        raise NoDefaultModel("no embedded default model yet: train one with `hkd-train run …` and pass "
                             "--checkpoint (Python: checkpoint=...)")
    import json

    return json.loads(ref.read_text(encoding="utf-8"))


def default_model_name() -> str:
    """Name of the embedded model used when neither ``checkpoint`` nor ``model`` is given."""
    return _models_index()["default"]


def model_checkpoint(name: str | None = None) -> Path:
    """Path of the embedded model ``name`` (one of :data:`MODELS`; None → the default one)."""
    index = _models_index()
    name = index["default"] if name is None else name
    if name not in MODELS or name not in index["models"]:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)} (or pass a checkpoint path)")
    ref = resources.files("hkdsme").joinpath("weights").joinpath(index["models"][name])
    if not ref.is_file():
        raise NoDefaultModel(f"embedded model {name!r} is missing from the package ({index['models'][name]}); "
                             "reinstall, or pass --checkpoint")
    return Path(str(ref))


def default_checkpoint() -> Path:
    """Path of the embedded default model (see :func:`model_checkpoint`); :class:`NoDefaultModel` if absent."""
    return model_checkpoint(None)


def resolve_checkpoint(checkpoint=None, model: str | None = None) -> Path:
    """``checkpoint`` (any path) or the embedded ``model``; both given is an error; neither → the default model."""
    if checkpoint is not None and model is not None:
        raise ValueError("give a checkpoint or a model name, not both")
    return Path(checkpoint) if checkpoint is not None else model_checkpoint(model)
