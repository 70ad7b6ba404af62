"""unit-convert: an llmos tool plugin in Python (componentize-py), made from
`llmos plugin new unit-convert --world tool --lang python`.

One tool, `unit-convert`: converts a decimal value between units of length, mass or
temperature with decimal arithmetic (never binary floating point). Every factor is exact by
definition (the international yard and pound of 1959, the nautical mile of 1929, 0 °C =
273.15 K), so a result is exact whenever its decimal expansion ends; otherwise (a division
by 0.0254, by 9, ...) it is rounded half to even to 30 significant digits and the answer
says so.

Arguments: {"value": "12.5" (a decimal string, or a JSON number read as written),
"from": "in", "to": "cm"}. Answer: {"value": "31.75", "unit": "cm", "exact": true} or,
rounded, {"value": "...", "unit": "...", "exact": false, "rounded": "to 30 significant
digits"}. Errors (invalid-input, read by the model): an unknown unit (the message lists
the accepted ones), units of different kinds, a value that is not a decimal number,
a temperature below absolute zero.
"""

import decimal
import json
from decimal import Decimal
from typing import Dict, List, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Error_InvalidInput, Error_NotFound, ToolCall, ToolSpec

NAME = "unit-convert"
SIGNIFICANT = 30  # digits of a rounded result
WORK = 80  # digits of the intermediate arithmetic
MAX_VALUE_CHARS = 64
MAX_EXPONENT = 1000  # |adjusted exponent| of a value

# Length in metres, mass in kilograms: (kind, factor, canonical symbol, aliases).
_UNITS: List[Tuple[str, str, str, List[str]]] = [
    ("length", "1", "m", ["meter", "meters", "metre", "metres"]),
    ("length", "1000", "km", ["kilometer", "kilometers", "kilometre", "kilometres"]),
    ("length", "0.01", "cm", ["centimeter", "centimeters", "centimetre", "centimetres"]),
    ("length", "0.001", "mm", ["millimeter", "millimeters", "millimetre", "millimetres"]),
    ("length", "0.000001", "um", ["µm", "micrometer", "micrometers", "micrometre", "micrometres"]),
    ("length", "0.000000001", "nm", ["nanometer", "nanometers", "nanometre", "nanometres"]),
    ("length", "0.0254", "in", ["inch", "inches"]),
    ("length", "0.3048", "ft", ["foot", "feet"]),
    ("length", "0.9144", "yd", ["yard", "yards"]),
    ("length", "1609.344", "mi", ["mile", "miles"]),
    ("length", "1852", "nmi", ["nautical mile", "nautical miles"]),
    ("mass", "1", "kg", ["kilogram", "kilograms"]),
    ("mass", "0.001", "g", ["gram", "grams"]),
    ("mass", "0.000001", "mg", ["milligram", "milligrams"]),
    ("mass", "0.000000001", "ug", ["µg", "microgram", "micrograms"]),
    ("mass", "1000", "t", ["tonne", "tonnes"]),
    ("mass", "0.45359237", "lb", ["pound", "pounds"]),
    ("mass", "0.028349523125", "oz", ["ounce", "ounces"]),
    ("mass", "6.35029318", "st", ["stone", "stones"]),
    # Temperatures are not ratios: see _to_kelvin / _from_kelvin.
    ("temperature", "0", "C", ["°C", "celsius"]),
    ("temperature", "0", "F", ["°F", "fahrenheit"]),
    ("temperature", "0", "K", ["kelvin"]),
]

# Lower-cased symbol or alias -> (kind, factor, symbol).
UNITS: Dict[str, Tuple[str, Decimal, str]] = {}
for _kind, _factor, _symbol, _aliases in _UNITS:
    for _n in [_symbol] + _aliases:
        UNITS[_n.lower()] = (_kind, Decimal(_factor), _symbol)


def accepted() -> str:
    kinds: Dict[str, List[str]] = {}
    for kind, _, symbol, _ in _UNITS:
        kinds.setdefault(kind, []).append(symbol)
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in kinds.items())


PARAMETERS = {
    "type": "object",
    "properties": {
        "value": {
            "anyOf": [{"type": "string"}, {"type": "number"}],
            "description": 'The quantity, a decimal number such as "12.5", "-40" or "1.5e3".',
        },
        "from": {"type": "string", "description": "The unit of value, e.g. in, kg, F."},
        "to": {"type": "string", "description": "The unit to convert to, e.g. cm, lb, C."},
    },
    "required": ["value", "from", "to"],
    "additionalProperties": False,
}


class Invalid(Exception):
    """Arguments that make no sense; the message says what is accepted."""


def unit(name: object, field: str) -> Tuple[str, Decimal, str]:
    if not isinstance(name, str):
        raise Invalid(f"`{field}` must be a unit name (a string); accepted are {accepted()}")
    found = UNITS.get(name.strip().lower())
    if found is None:
        raise Invalid(f"unknown unit {name!r} in `{field}`; accepted are {accepted()}")
    return found


def number(value: object) -> Decimal:
    text = value if isinstance(value, str) else None
    if isinstance(value, Decimal):
        return value
    if text is None or len(text) > MAX_VALUE_CHARS:
        raise Invalid(
            f"`value` must be a decimal number of at most {MAX_VALUE_CHARS} characters, "
            'e.g. "12.5", "-40" or "1.5e3"'
        )
    try:
        d = Decimal(text.strip())
    except decimal.InvalidOperation:
        raise Invalid(f'`value` {text!r} is not a decimal number (e.g. "12.5", "-40", "1.5e3")')
    if not d.is_finite():
        raise Invalid(f"`value` {text!r} is not a finite decimal number")
    return d


def _to_kelvin(v: Decimal, symbol: str) -> Decimal:
    if symbol == "C":
        return v + Decimal("273.15")
    if symbol == "F":
        return (v + Decimal("459.67")) * 5 / 9
    return v


def _from_kelvin(k: Decimal, symbol: str) -> Decimal:
    if symbol == "C":
        return k - Decimal("273.15")
    if symbol == "F":
        return k * 9 / 5 - Decimal("459.67")
    return k


def plain(d: Decimal) -> str:
    """Without trailing zeros; positional unless the exponent is large."""
    d = d.normalize()
    if d == 0:
        return "0"
    if -40 <= d.adjusted() <= 40:
        return format(d, "f")
    return str(d)


def convert(args: object) -> dict:
    if not isinstance(args, dict):
        raise Invalid('arguments must be an object {"value", "from", "to"}')
    kind_from, f_from, s_from = unit(args.get("from"), "from")
    kind_to, f_to, s_to = unit(args.get("to"), "to")
    if kind_from != kind_to:
        raise Invalid(f"cannot convert {kind_from} ({s_from}) to {kind_to} ({s_to})")
    v = number(args.get("value"))
    if abs(v.adjusted()) > MAX_EXPONENT and v != 0:
        raise Invalid(f"`value` is out of range: its exponent must be within ±{MAX_EXPONENT}")
    ctx = decimal.Context(prec=WORK, rounding=decimal.ROUND_HALF_EVEN)
    with decimal.localcontext(ctx) as c:
        if kind_from == "temperature":
            k = _to_kelvin(v, s_from)
            if k < 0:
                raise Invalid(f"{plain(v)} {s_from} is below absolute zero (0 K, -273.15 C, -459.67 F)")
            out = _from_kelvin(k, s_to)
        else:
            out = v * f_from / f_to
        exact = not c.flags[decimal.Inexact]
    answer = {"value": None, "unit": s_to, "exact": exact}
    if exact:
        answer["value"] = plain(out)
    else:
        with decimal.localcontext(decimal.Context(prec=SIGNIFICANT, rounding=decimal.ROUND_HALF_EVEN)):
            answer["value"] = plain(+out)
        answer["rounded"] = f"to {SIGNIFICANT} significant digits"
    return answer


class WitWorld(wit_world.WitWorld):
    def tools(self) -> List[ToolSpec]:
        """The tools this plugin offers; the host asks once, at install."""
        return [
            ToolSpec(
                name=NAME,
                description="Converts a quantity between units of length, mass or temperature, "
                "exactly (decimal arithmetic). Units: "
                + accepted()
                + '. Example: {"value": "12.5", "from": "in", "to": "cm"}.',
                parameters_json=json.dumps(PARAMETERS),
            )
        ]

    def invoke(self, call: ToolCall) -> str:
        """Runs one call; an `Err` goes back to the model as the tool's answer."""
        if call.name != NAME:
            raise Err(Error_NotFound(f"tool {call.name}: this plugin offers {NAME}"))
        try:
            # Numbers are read as written (no binary floating point on the way in).
            args = json.loads(call.arguments_json, parse_float=Decimal, parse_int=Decimal)
        except ValueError as e:
            raise Err(Error_InvalidInput(f"arguments of {NAME}: not JSON: {e}"))
        try:
            return json.dumps(convert(args))
        except Invalid as e:
            raise Err(Error_InvalidInput(str(e)))
