"""The Textual app. The only package that imports textual; it shows what plain modules compute."""

import os

# Textual draws at most one frame per 1/FPS s, on a clock: at its default 60 a result
# waits up to 17 ms for its frame, a third of the 50 ms from `r` to a verified rollback on
# screen. Telemetry paints once a second (app.PAINT_S), so more frames cost nothing at rest.
# Read when textual is first imported; an operator's own TEXTUAL_FPS wins.
os.environ.setdefault("TEXTUAL_FPS", "120")
