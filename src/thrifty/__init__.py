"""thrifty: fine-tune pre-trained transformers for text classification at the lowest cost for the accuracy.

The CLI (`thrifty train | evaluate | predict`) and this API are two faces of the same functions.
"""

from thrifty.api import evaluate, predict, train
from thrifty.config import Config, load_config

__version__ = "0.1.0"
__all__ = ["Config", "evaluate", "load_config", "predict", "train", "__version__"]
