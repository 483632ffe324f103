"""glmkit: a toolkit for training native multimodal agent models after GLM-5V-Turbo.

Importing ``glmkit`` is cheap: subpackages (``glmkit.models``, ``glmkit.stages``, ``glmkit.tools``,
...) are imported where used, and ``tools``, ``agent`` and ``eval`` never import Lightning.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("glmkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
