"""The built-in `lm` recipe: a compact decoder-only transformer language model trained on a
folder of text, byte by byte (no tokenizer, nothing downloaded).

Run it as `python -m trainport.recipes.lm [--flag value ...]`, or let the platform run it for a
spec with `recipe: lm` (its `parameters` arrive as `TRAINPORT_PARAMETERS`). Parameters and their
defaults are `LMConfig` in `config.py`; the data comes from `data` (a folder), `dataset` (the name
of a dataset pinned to the run), or the run's only pinned dataset. DDP when WORLD_SIZE > 1.
"""
