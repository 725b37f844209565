"""Built-in training recipes: complete training programs the platform runs for `recipe: NAME`.

A recipe is a module runnable as `python -m trainport.recipes.<name>`; it reads its parameters
from `TRAINPORT_PARAMETERS` (the run spec's `parameters`, as JSON) and from command-line flags,
and talks to the platform through `trainport.runtime`. Recipes need torch
(`pip install 'trainport[recipes]'`).

- `lm`: a compact decoder-only transformer language model on a folder of text, byte-level.
"""

RECIPES = {"lm": "trainport.recipes.lm"}
