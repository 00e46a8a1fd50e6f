"""The `course` command: new, check, run, status, site and catalog for the dgm-course repository.

Origin: written for dgm-course (MIT licence).
"""

__version__ = "0.1.0"
