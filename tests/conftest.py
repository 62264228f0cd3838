"""Test configuration: offscreen Qt, offline hub, one torch thread (bit-reproducible seeds)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Keep user configuration out of the tests.
os.environ["NODEGEN_CONFIG"] = os.path.join(os.path.dirname(__file__), "_no_config.json")
os.environ.pop("NODEGEN_MODELS", None)
os.environ["NODEGEN_NODES_PATH"] = os.path.join(os.path.dirname(__file__), "_no_user_nodes")

from nodegen.compat import torchvision as torchvision_fix  # noqa: E402

torchvision_fix.apply()

import torch  # noqa: E402

torch.set_num_threads(1)
