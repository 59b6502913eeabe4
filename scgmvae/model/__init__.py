from ._base import BaseGMVAE
from ._cgmvae import CGMVAE
from ._gmvae import GMVAE

__all__ = ["CGMVAE", "GMVAE", "BaseGMVAE"]
