"""The keys of a seed run's description and how a record holds their values (shared by the
config, the presets and the leaderboard's labels)."""

from __future__ import annotations

from typing import Any

# Stages whose component options can be set with ``-O STAGE.KEY=VALUE`` (refiners by name).
STAGES = ("dataset", "train_dataset", "backbone", "saliency", "classmap", "fusion")
OPTIONAL_STAGES = ("saliency", "classmap")
# Flat description keys that set a field of the training recipe.
RECIPE_KEYS = ("epochs", "lr", "crop", "loss", "head_init")
# Their defaults (TrainRecipe's, checked equal by tests/test_layout.py), here so that reading a record
# (the leaderboard, labels) imports no torch.
RECIPE_DEFAULTS = {"epochs": 24, "lr": 0.05, "crop": 128, "loss": "soft-margin", "head_init": "random"}


def stage_name(value: Any) -> str | None:
    return None if value in (None, "none") else str(value)


def refiners(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else list(value or ())
    if names == ["none"]:
        return ()
    return tuple(str(n) for n in names)


def recorded_value(key: str, value: Any) -> Any:
    """A description's value as a record's ``config`` holds it (``none`` stages as None, refiners
    as a list): how a leaderboard compares a preset's choices with a recorded run."""
    if key in OPTIONAL_STAGES:
        return stage_name(value)
    if key == "refine":
        return list(refiners(value))
    if value == "none":  # an optional value left unset (--max-classes none)
        return None
    return list(value) if isinstance(value, tuple) else value
