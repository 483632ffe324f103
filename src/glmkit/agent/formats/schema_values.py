"""Schema-aware typing of GLM ``<arg_value>`` text (report section 3.5).

GLM's XML carries no types (the chat template writes strings raw and everything else as JSON), so
:func:`decode_glm_value` types each value with the tool's JSON schema, as vLLM's and SGLang's GLM
parsers do: string-typed arguments are kept verbatim (so ``"[1, 2]"`` or ``"10220_3939392"`` stay
strings), other types are decoded as JSON, and without a schema only unambiguous JSON containers or
quoted strings are decoded. ``ast.literal_eval`` is never used (it reads ``10220_3939392`` as an
int).
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Mapping
from typing import Any


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def schema_types(schema: Any) -> set[str] | None:
    """The JSON types a schema allows (``type``, type arrays, ``anyOf``/``oneOf``/``allOf``, ``enum``,
    ``const``), or ``None`` when the schema does not say."""
    if not isinstance(schema, Mapping) or not schema:
        return None
    types: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        types.add(declared)
    elif isinstance(declared, list):
        types.update(t for t in declared if isinstance(t, str))
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or ():
            types |= schema_types(sub) or set()
    if isinstance(schema.get("enum"), list):
        types.update(_json_type(v) for v in schema["enum"])
    if "const" in schema:
        types.add(_json_type(schema["const"]))
    if not types and "properties" in schema:
        types.add("object")
    if not types and "items" in schema:
        types.add("array")
    return types or None


def _matches(value: Any, types: set[str]) -> bool:
    kind = _json_type(value)
    if kind in types:
        return True
    if kind == "integer" and "number" in types:
        return True
    return kind == "number" and "integer" in types and float(value).is_integer()


_MISSING = object()


def decode_glm_value(raw: str, schema: Any) -> Any:
    """Type one GLM ``<arg_value>`` with the argument's JSON schema.

    - schema says only ``string``: the raw text, verbatim (not stripped, never JSON-decoded);
    - schema allows other types: the JSON decoding when its type is allowed (a decoded *string*
      is accepted only for string-free schemas), Python's ``True``/``False``/``None`` spellings for
      booleans and null, else the raw text (schema validation then tells the model what is wrong);
    - no schema: only unambiguous JSON objects, arrays and quoted strings are decoded.
    """
    types = schema_types(schema)
    text = raw.strip()
    if types is None:
        if text[:1] in ("{", "[", '"'):
            try:
                value = json.loads(text)
            except ValueError:
                return raw
            if isinstance(value, (dict, list, str)):
                return value
        return raw
    if types <= {"string"}:
        return raw
    try:
        value = json.loads(text)
    except ValueError:
        value = _MISSING
    if (
        value is not _MISSING
        and _matches(value, types)
        and not (isinstance(value, str) and "string" in types)
    ):
        return value
    if "boolean" in types and text in ("True", "False"):
        return text == "True"
    if "null" in types and text == "None":
        return None
    return raw


def encode_glm_value(value: Any) -> str:
    """Render one argument the way GLM's chat template does: strings raw, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def coerce_value(value: Any, schema: Any) -> tuple[Any, str | None]:
    """``value`` read as the schema's type when it is a string the schema does not allow, and how.

    Returns ``(value, None)`` unchanged when the schema allows strings (or says nothing), when the
    value is not a string, or when no reading fits; otherwise the coerced value and a note naming
    what was read (``'the string "5" was read as the integer 5'``).
    """
    types = schema_types(schema)
    if types is None or "string" in types or not isinstance(value, str):
        return value, None
    text = value.strip()
    readings: list[tuple[str, Any]] = []
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = _MISSING
    if decoded is not _MISSING:
        readings.append(("JSON", decoded))
        if isinstance(decoded, str):  # double-encoded: '"5"', '"[1, 2]"'
            with contextlib.suppress(ValueError):
                readings.append(("JSON inside a JSON string", json.loads(decoded.strip())))
    if text in ("True", "False"):
        readings.append(("a Python boolean", text == "True"))
    if text == "None":
        readings.append(("Python's None", None))
    if text[:1] in ("{", "[") and types & {"object", "array"}:
        # Only whole containers: a bare literal_eval would read the id 10220_3939392 as an int.
        try:
            literal = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            literal = _MISSING
        if isinstance(literal, (dict, list)):
            readings.append(("a Python literal", literal))
    for how, reading in readings:
        if _matches(reading, types):
            kind = _json_type(reading)
            return reading, f"the string {_shown(value)} was read as {how}: the {kind} {_shown(reading)}"
    return value, None


def coerce_arguments(arguments: dict[str, Any], schema: Any) -> tuple[dict[str, Any], list[str]]:
    """Apply :func:`coerce_value` to each top-level argument with a schema; the notes name each one."""
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        return arguments, []
    out, notes = dict(arguments), []
    for key, value in arguments.items():
        new, note = coerce_value(value, properties.get(key))
        if note is not None:
            out[key] = new
            notes.append(f"argument {key!r}: {note}")
    return out, notes
