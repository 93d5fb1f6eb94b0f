"""Shipway's domain core: the types and rules every layer shares, with no Pulumi imports.

Layers point one way (docs/architecture.md, "Layers"):

    shipway_core          environments, stack config + validation, pins, SLOs, names, outputs
      ^            ^
    components/    shipway/ (runtime: CLI, serving app, gates, drift, audit, promotion)
      ^
    infra/               the Pulumi program

``components`` never imports ``shipway`` and ``shipway`` never imports ``components``;
``tests/unit/test_layers.py`` parses every import and fails on a back edge.
"""
