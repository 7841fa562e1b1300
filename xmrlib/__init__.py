"""xmrlib: the shared library of the executable book on image-text retrieval.

Importing the package has no side effects: no seeding, no plotting style, no downloads.
"""

__version__ = "0.1.0"
