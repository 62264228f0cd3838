"""Package layout (everything else is in pyproject.toml).

The repository keeps ``nodes/`` and ``gui/`` beside ``nodegen/`` (the product card's layout); installed,
they become ``nodegen.nodes`` and ``nodegen.gui``, so nodegen takes no generic top-level name.
``nodegen/_source_tree.py`` does the same mapping in a source checkout.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["nodegen", "nodegen.*"]) + ["nodegen.nodes", "nodegen.gui"],
    package_dir={"nodegen.nodes": "nodes", "nodegen.gui": "gui"},
)
