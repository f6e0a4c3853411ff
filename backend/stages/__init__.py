"""Stages: the project's state machine (assisted manual → semi-automatic → fully automatic → done).

`gates` says what must hold before each move and measures it; `service.advance_stage` is the one
function that moves a project's stage; `router` serves both (``GET /gate``, ``POST /stage``).
"""
