"""What both schemathesis runs do (STAC routes and tile routes): bounded, derandomized examples of every
operation, checked for no 5xx and error bodies that stay bounded."""

from __future__ import annotations

from typing import Any

#: largest error body a client's input may provoke (errors quote input only as a short excerpt)
MAX_ERROR_BODY = 20_000


def failure(case: Any, response: Any) -> str | None:
    """One line describing why ``response`` to ``case`` is a server fault, or ``None`` when it is acceptable."""
    if response.status_code >= 500 or (response.status_code >= 400 and len(response.content) > MAX_ERROR_BODY):
        return (
            f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r:.300} "
            f"-> {response.status_code} {response.text[:300]}"
        )
    return None


def server_faults(
    operations: list[Any], mode: Any, max_examples: int, point_at: tuple[str, str] | None = None
) -> list[str]:
    """Run ``max_examples`` derandomized examples of each operation in generation ``mode``; the :func:`failure` lines.

    ``point_at`` = (path parameter, value): in half of the examples that parameter names a real resource, so the
    requests reach the read path instead of stopping at "not found". An operation without parameters has no
    schema-violating input (hypothesis finds it unsatisfiable in negative mode).
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans() if point_at else st.just(False))
        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any, real: bool) -> None:
            if real and point_at and case.path_parameters and point_at[0] in case.path_parameters:
                case.path_parameters[point_at[0]] = point_at[1]
            if (problem := failure(case, case.call())) is not None:
                failures.append(problem)

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE
    return failures
