"""``python -m course``: the same as the ``course`` command.

Origin: written for dgm-course (MIT licence).
"""

import sys

from course.cli import main

sys.exit(main())
