"""Hyper parameter schedules, evaluated at the agent step (``Agent.step``: agent steps taken,
prefill included), as the official code evaluates them at its ``tfstep``.

A schedule is a number or a string: ``linear(initial,final,duration)`` interpolates from
``initial`` to ``final`` over ``duration`` steps and then stays at ``final``;
``warmup(duration,value)`` ramps linearly from 0 to ``value`` over ``duration`` steps;
``exp(initial,final,halflife)`` decays ``initial`` towards ``final`` with that half-life.
Same semantics as the official DreamerV2 code (``common/other.py: schedule``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

_CALL = re.compile(r"^\s*(linear|warmup|exp)\s*\((.*)\)\s*$")
_ARITY = {"linear": 3, "warmup": 2, "exp": 3}
_FORMS = "a number, linear(initial,final,duration), warmup(duration,value) or exp(initial,final,halflife)"


def parse_schedule(spec: float | str) -> Callable[[int], float]:
    """Return ``step -> value`` for a schedule spec; raise ``ValueError`` naming the problem."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = float(spec)
        return lambda step: value
    if not isinstance(spec, str):
        raise ValueError(f"schedule {spec!r} must be {_FORMS}")
    try:
        value = float(spec)
        return lambda step: value
    except ValueError:
        pass
    match = _CALL.match(spec)
    if not match:
        raise ValueError(f"malformed schedule {spec!r}: expected {_FORMS}")
    name, body = match.groups()
    try:
        args = [float(a) for a in body.split(",")]
    except ValueError:
        raise ValueError(f"malformed schedule {spec!r}: arguments must be numbers") from None
    if len(args) != _ARITY[name]:
        raise ValueError(f"malformed schedule {spec!r}: {name} takes {_ARITY[name]} numbers, got {len(args)}")
    if name == "linear":
        initial, final, duration = args
        _positive(spec, duration)
        return lambda step: initial + (final - initial) * min(max(step / duration, 0.0), 1.0)
    if name == "warmup":
        duration, value = args
        _positive(spec, duration)
        return lambda step: value * min(max(step / duration, 0.0), 1.0)
    initial, final, halflife = args
    _positive(spec, halflife)
    return lambda step: (initial - final) * 0.5 ** (step / halflife) + final


def _positive(spec: str, duration: float) -> None:
    if not duration > 0 or math.isinf(duration):
        raise ValueError(f"malformed schedule {spec!r}: the duration must be a positive number")


def schedule_endpoints(spec: float | str) -> list[float]:
    """The values a schedule starts and settles at, which a field's range rule must admit
    (``warmup``'s ramp from 0 is left out: it is the schedule's point, not a setting)."""
    parse_schedule(spec)  # malformed specs raise here, with the message above
    if isinstance(spec, (int, float)):
        return [float(spec)]
    try:
        return [float(spec)]
    except ValueError:
        pass
    name, body = _CALL.match(spec).groups()
    args = [float(a) for a in body.split(",")]
    return {"linear": args[:2], "warmup": args[1:], "exp": args[:2]}[name]
