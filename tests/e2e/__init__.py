"""End-to-end tests of the worked flight-booking example, on its local protocol servers.

The example's folder and its ``offline`` folder (the local servers) are put on
``sys.path`` here, before any test module of this package is imported, so that the test
modules import ``agent``, ``openai_server`` and the others as the example itself does.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flight_booking"
if str(EXAMPLE) not in sys.path:
    sys.path[:0] = [str(EXAMPLE / "offline"), str(EXAMPLE)]
