"""Built-in recipes: what `recipe: NAME` + `parameters` turn into when a run is launched.

A recipe is a module of the `trainport` package that users install beside their code; it reads
its parameters from TRAINPORT_PARAMETERS (JSON). Executors ask this module for the command, so
the mapping from a recipe name to a process lives in one place.
"""

from __future__ import annotations

import json
from typing import Any

RECIPE_MODULES = {"lm": "trainport.recipes.lm"}


def check_recipe(name: str) -> str:
    if name not in RECIPE_MODULES:
        known = ", ".join(sorted(RECIPE_MODULES))
        raise ValueError(f"unknown recipe {name!r}; built-in recipes: {known}")
    return name


def launch_command(spec: dict[str, Any], python: str) -> list[str]:
    """The exec-form command of a run: its own `command`, or its recipe's entry point."""
    recipe = spec.get("recipe")
    if recipe:
        return [python, "-m", RECIPE_MODULES[check_recipe(recipe)]]
    return [str(part) for part in spec["command"]]


def recipe_environment(spec: dict[str, Any]) -> dict[str, str]:
    """Variables a recipe run needs beyond the platform's: its parameters."""
    if not spec.get("recipe"):
        return {}
    return {"TRAINPORT_PARAMETERS": json.dumps(spec.get("parameters") or {}, sort_keys=True)}
