"""nucleus: a security-hardened, Nix-native Linux container runtime."""

__version__ = "0.1.0"
