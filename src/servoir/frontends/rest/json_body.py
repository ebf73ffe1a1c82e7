"""Parsing a REST request body the way TF Serving's RapidJSON does.

TF Serving parses with `kParseNanAndInfFlag | kParseStopWhenDoneFlag`: NaN, Infinity and
-Infinity are numbers and bytes after the first value are ignored. orjson (strict JSON) takes
every ordinary body; only when it refuses does the standard library parser run, which accepts
those extras and lets errors be reported with RapidJSON's texts and byte offsets.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from servoir.errors import ServingError, invalid_argument
from servoir.frontends.rest.json_text import debug_text

_WHITESPACE = " \t\n\r"


def may_hold_bools(raw_body: bytes) -> bool:
    """Whether a JSON body may hold true or false: numpy reads them among numbers as 1/0,
    so only such bodies need the slower checks. A one-byte find is a memchr (0.1 us on
    16 KB); a body of numbers has no 'r' and no 'f', so the word searches rarely run. Those
    use rfind, not `in`: CPython's forward search skips poorly over digits (bloom-filter
    collisions of 't'/'u' with '4'/'5'), about 4x slower on a body full of numbers."""
    maybe_true = raw_body.find(b"r") >= 0 and raw_body.rfind(b"true") >= 0
    return maybe_true or (raw_body.find(b"f") >= 0 and raw_body.rfind(b"false") >= 0)


_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1
_INVALID_VALUE = "Invalid value."
_TOO_DEEP = "The document is nested too deeply."
_TOO_BIG = "Number too big to be stored in double."
# Python's json error texts -> RapidJSON's GetParseError_En texts.
_MESSAGES: tuple[tuple[str, str], ...] = (
    ("Expecting value", _INVALID_VALUE),
    ("Expecting property name", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid control character", "Invalid encoding in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
)
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _NumberTooBig(ValueError):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request's top-level JSON object; a ServingError (400) for anything else."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        doc = _parse_lenient(bytes(body), e)
    if isinstance(doc, dict):
        return doc
    raise invalid_argument(f"JSON Value: {debug_text(doc)} Is not object")


def _parse_lenient(body: bytes, strict_error: orjson.JSONDecodeError) -> Any:
    """The standard library parser, for what orjson refuses: NaN/Infinity, trailing bytes."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        # RapidJSON (without validation) would pass bad bytes into strings; we cannot, as
        # Python strings and JSON responses carry Unicode only.
        raise _parse_error("Invalid encoding in string.", e.start) from None
    if "depth limit exceeded" in strict_error.msg:
        raise _parse_error(_TOO_DEEP, _byte_offset(text, strict_error.pos)) from None
    start = len(text) - len(text.lstrip(_WHITESPACE))
    if start == len(text):
        raise _parse_error("The document is empty.", len(body))
    decoder = json.JSONDecoder(parse_float=_parse_float, parse_int=_parse_int)
    try:
        value, _ = decoder.raw_decode(text, start)
    except json.JSONDecodeError as e:
        raise _syntax_error(text, e) from None
    except RecursionError:
        raise _parse_error(_TOO_DEEP, 0) from None
    except _NumberTooBig as e:
        raise _parse_error(_TOO_BIG, _byte_offset(text, max(text.find(e.literal), 0))) from None
    _reject_lone_surrogates(text, value)
    return value


def _parse_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _NumberTooBig(literal)
    return value


def _parse_int(literal: str) -> int | float:
    # RapidJSON keeps integers in int64/uint64 and reads larger ones as doubles (as orjson).
    if len(literal) <= 20:
        value = int(literal)
        if _I64_MIN <= value <= _U64_MAX:
            return value
    return _parse_float(literal)


def _reject_lone_surrogates(text: str, value: Any) -> None:
    """RapidJSON refuses a \\uD800-style escape without its pair; Python's json keeps it."""
    match = _SURROGATE_ESCAPE.search(text)
    if match is None:
        return
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as e:
        if "surrogates" in str(e):
            message = "The surrogate pair in string is invalid."
            raise _parse_error(message, _byte_offset(text, match.start())) from None


def _syntax_error(text: str, error: json.JSONDecodeError) -> ServingError:
    """A RapidJSON-worded parse error at the byte offset RapidJSON would report."""
    pos, msg = error.pos, error.msg
    if msg.startswith("Expecting ',' delimiter"):
        return _comma_error(text, pos)
    if msg.startswith("Illegal trailing comma"):
        # RapidJSON reports the closing bracket after the comma.
        close = pos + 1 + len(text[pos + 1 :]) - len(text[pos + 1 :].lstrip(_WHITESPACE))
        inner = "Missing a name for object member." if "object" in msg else _INVALID_VALUE
        return _parse_error(inner, _byte_offset(text, close))
    if msg.startswith("Unterminated string"):
        return _parse_error("Missing a closing quotation mark in string.", len(text.encode()))
    if msg.startswith("Invalid control character") and text[pos : pos + 1] == "\0":
        return _parse_error("Missing a closing quotation mark in string.", _byte_offset(text, pos))
    if msg.startswith("Invalid \\uXXXX") and pos > 0 and text[pos - 1] == "\\":
        pos -= 1  # RapidJSON points at the backslash.
    inner = next((rj for py, rj in _MESSAGES if msg.startswith(py)), _INVALID_VALUE)
    return _parse_error(inner, _byte_offset(text, pos))


def _comma_error(text: str, pos: int) -> ServingError:
    """Python says "Expecting ','" for arrays, objects and malformed numbers alike."""
    after_digit = pos > 0 and text[pos - 1].isdigit()
    if after_digit and text[pos : pos + 1] == ".":
        return _parse_error("Miss fraction part in number.", _byte_offset(text, pos + 1))
    if after_digit and text[pos : pos + 1] in ("e", "E"):
        sign = 1 if text[pos + 1 : pos + 2] in ("+", "-") else 0
        return _parse_error("Miss exponent in number.", _byte_offset(text, pos + 1 + sign))
    if _innermost_container(text, pos) == "{":
        inner = "Missing a comma or '}' after an object member."
    else:
        inner = "Missing a comma or ']' after an array element."
    return _parse_error(inner, _byte_offset(text, pos))


def _innermost_container(text: str, pos: int) -> str:
    """The opening bracket that encloses `pos` ('[' or '{'), skipping string contents."""
    stack: list[str] = []
    for match in _STRING_OR_BRACKET.finditer(text, 0, pos):
        token = match.group()
        if token in ("[", "{"):
            stack.append(token)
        elif token in ("]", "}") and stack:
            stack.pop()
    return stack[-1] if stack else "["


def _byte_offset(text: str, pos: int) -> int:
    return len(text[:pos].encode("utf-8", "surrogatepass"))


def _parse_error(message: str, offset: int) -> ServingError:
    return invalid_argument(f"JSON Parse error: {message} at offset: {offset}")
