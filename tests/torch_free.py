"""What tests prepend to a child interpreter's script to prove a code path never imports torch."""

BLOCK_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this interpreter")
        return None

sys.meta_path.insert(0, NoTorch())
"""
