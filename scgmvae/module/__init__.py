from ._gmvae import GMVAEModule

__all__ = ["GMVAEModule"]
