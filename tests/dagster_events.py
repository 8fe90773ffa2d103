"""Reading Dagster run results in tests."""

from __future__ import annotations


def check_evaluations(result) -> dict:
    """(asset key, check name) → the check evaluation of an in-process run result."""
    return {
        (ev.asset_key.to_user_string(), ev.check_name): ev
        for ev in (
            e.event_specific_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        )
    }
