"""Paved-path project templates rendered by `shipway new` (package data, read with importlib.resources).

Template files end in ``.tmpl`` so neither ruff nor pytest treats them as this project's code;
``{{model_name}}`` is the only placeholder, replaced verbatim.
"""
