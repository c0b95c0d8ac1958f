"""caitool: Constitutional AI (Bai et al. 2022) as a command-line toolkit.

Importing the package has no side effects and imports no SDK; commands import what they need lazily.
"""

__version__ = "0.1.0"
