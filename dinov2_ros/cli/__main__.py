"""`python -m dinov2_ros.cli`: the same as the `dinov2-ros` command."""

import sys

from dinov2_ros.cli import main

sys.exit(main())
