"""What every HTML report shares: one Jinja environment, number filters, atomic writes."""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import jinja2


def finite(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any, digits: int = 3) -> str:
    """Fixed decimals for reals, thousands separators for integers, '—' for missing."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    if isinstance(value, Integral):
        return f"{int(value):,}"
    return f"{float(value):,.{digits}f}" if math.isfinite(value) else _non_finite(float(value))


def stat(value: Any) -> str:
    """A profile statistic: whole numbers as integers, others to about 4 significant digits."""
    if not finite(value) or isinstance(value, Integral):
        return number(value)
    real = float(value)
    if real.is_integer() and abs(real) < 1e15:
        return f"{int(real):,}"
    exponent = math.floor(math.log10(abs(real)))
    if exponent < -2:
        return f"{real:.3g}"
    return f"{real:,.{max(0, 3 - exponent)}f}"


def percent(value: Any, digits: int = 1) -> str:
    if not finite(value):
        return number(value)
    return f"{float(value) * 100:.{digits}f} %"


def _non_finite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("∞" if value > 0 else "−∞")


def compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@functools.cache
def template(name: str) -> jinja2.Template:
    """A template from ``keelson/report/templates`` with autoescape and the number filters."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("keelson.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(num=number, stat=stat, pct=percent, params=compact_json)
    return environment.get_template(name)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(0o644)  # mkstemp creates 0600; a report is meant to be shared
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
