"""recsys: an LLM-enhanced recommendation engine for e-commerce."""

from recsys.errors import ArtifactError, ConfigError, DataError, NotFittedError, RecsysError

__version__ = "0.1.0"

__all__ = ["ArtifactError", "ConfigError", "DataError", "NotFittedError", "RecsysError", "__version__"]
