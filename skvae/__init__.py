"""skvae: variational autoencoders as scikit-learn estimators."""

from ._impute import VAEImputer
from ._vae import VAETransformer

__version__ = "0.1.0"

__all__ = ["VAEImputer", "VAETransformer", "__version__"]
