"""`python -m vrm_tui.fleet --deploy-dir D --state-dir S`: the agent process `spawn()` starts."""

import sys

from vrm_tui.fleet.agent import main

sys.exit(main())
