"""Request payload parsing and validation against the model's input signature.

MLflow's scoring server turns every request into a pandas DataFrame and casts it column
by column; on these machines that costs more than the prediction itself. Here a payload
is parsed once with orjson into plain per-column Python lists (``Batch``), validated
against the signature with type checks that are C-speed for the common case, and only
then turned into whatever the model needs (a float matrix for numeric sklearn models).

Every rejection raises :class:`BadRequest` with a message naming the field or column and
what is expected, so a caller can fix the request without reading server logs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any

import orjson

PAYLOAD_KEYS = ("dataframe_split", "dataframe_records", "inputs", "instances")
_KEYS_TEXT = ", ".join(PAYLOAD_KEYS)

FLOAT_TYPES = frozenset({"double", "float"})
INT_TYPES = frozenset({"integer", "long"})
BOOL_TYPES = frozenset({"boolean"})
NUMERIC_TYPES = FLOAT_TYPES | INT_TYPES | BOOL_TYPES
TEXT_TYPES = frozenset({"string", "datetime", "binary"})

# Python types a JSON value may have for each signature type (None means JSON null).
_ACCEPTED: dict[str, frozenset[type]] = {
    "double": frozenset({float, int, type(None)}),
    "float": frozenset({float, int, type(None)}),
    "integer": frozenset({int}),
    "long": frozenset({int}),
    "boolean": frozenset({bool}),
    "string": frozenset({str, type(None)}),
    "datetime": frozenset({str, type(None)}),
    "binary": frozenset({str, type(None)}),
}
_EXPECTED_TEXT = {
    "double": "a JSON number, a numeric string or null",
    "float": "a JSON number, a numeric string or null",
    "integer": "a JSON integer",
    "long": "a JSON integer",
    "boolean": "true or false",
    "string": "a JSON string or null",
    "datetime": "an ISO 8601 string or null",
    "binary": "a base64 string or null",
}
_JSON_TYPE_NAMES: dict[type, str] = {
    str: "string", bool: "boolean", int: "integer", float: "number",
    type(None): "null", list: "array", dict: "object",
}
_MISSING = object()


# MLflow's error codes for a rejected request (both HTTP 400): the payload could not be read
# (BAD_REQUEST) or it was read but does not match the model's signature (INVALID_PARAMETER_VALUE).
BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
PARAMS_KEY = "params"


class BadRequest(ValueError):
    """The request cannot be scored; ``message`` tells the caller what to send instead.

    ``code`` is the MLflow ``error_code`` MLflow's own scoring server answers for the same case.
    """

    def __init__(self, message: str, code: str = BAD_REQUEST):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class ColumnSpec:
    """One input column of a model signature (``type`` is an MLflow DataType name)."""

    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class InputSchema:
    """The ordered input columns a model expects."""

    columns: tuple[ColumnSpec, ...]

    def __post_init__(self) -> None:
        unknown = sorted({c.type for c in self.columns} - set(_ACCEPTED))
        if unknown:
            raise ValueError(
                f"signature column type {unknown[0]!r} is not supported; allowed: {sorted(_ACCEPTED)}"
            )

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Column names in signature order."""
        return tuple(c.name for c in self.columns)

    @cached_property
    def float_names(self) -> tuple[str, ...] | None:
        """The column names when every column is double/float (the fast path's case), else None."""
        return self.names if self.columns and all(c.type in FLOAT_TYPES for c in self.columns) else None

    @property
    def all_numeric(self) -> bool:
        """True when every column fits a float64 matrix (numbers and booleans)."""
        return all(c.type in NUMERIC_TYPES for c in self.columns)

    def describe(self) -> str:
        """Column list as shown in error messages."""
        return "[" + ", ".join(self.names) + "]"


@dataclass(frozen=True)
class Batch:
    """Validated rows: ``columns`` maps every schema column (signature order) to its values.

    ``params`` is the request's ``params`` object (MLflow's inference parameters), if any.
    """

    n_rows: int
    columns: Mapping[str, list[Any]]
    params: Any = None


def parse_payload(body: bytes, schema: InputSchema, max_rows: int) -> Batch:
    """Parse an MLflow JSON scoring payload into a validated :class:`Batch`.

    As MLflow does: exactly one input key is required, ``params`` is carried along and any
    other top-level key is ignored (clients add their own metadata).
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"request body must be a JSON object with exactly one of the keys: {_KEYS_TEXT}, "
                         f"got {_type_name(doc)}")
    keys = [k for k in doc if k in PAYLOAD_KEYS]
    if len(keys) != 1:
        if not keys:
            raise BadRequest(f"request body has no input key (got {sorted(doc)}); "
                             f"expected exactly one of: {_KEYS_TEXT}")
        shown = ", ".join(f"'{k}'" for k in keys)
        raise BadRequest(f"request body has several input keys ({shown}); send exactly one of: {_KEYS_TEXT}")
    key = keys[0]
    value = doc[key]
    if key == "dataframe_split":
        raw, n_rows = _from_split(value, schema, max_rows)
    elif key == "dataframe_records":
        raw, n_rows = _from_records(value, key, schema, max_rows)
    else:
        raw, n_rows = _from_inputs(value, key, schema, max_rows)
    batch = _numeric_fast_path(raw, n_rows, schema) or _validated(raw, n_rows, schema)
    params = doc.get(PARAMS_KEY)
    return batch if params is None else Batch(batch.n_rows, batch.columns, params)


def parse_csv(body: bytes, schema: InputSchema, max_rows: int) -> Batch:
    """Parse a ``text/csv`` body (a header row, then one line per row) as MLflow does with pandas.

    Empty fields are nulls; values are converted to the signature's column types.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"CSV body is not valid UTF-8: {exc}") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise BadRequest(f"CSV body could not be parsed: {exc}") from None
    rows = [r for r in rows if r]
    if not rows:
        raise BadRequest(f"CSV body is empty; send a header row with the columns {schema.describe()} "
                         f"and one line per row")
    header, data = rows[0], rows[1:]
    if data and all(len(row) == len(header) + 1 for row in data):
        # pandas.read_csv takes a leading extra field on every row as the index; so does MLflow.
        data = [row[1:] for row in data]
    for i, row in enumerate(data):
        if len(row) > len(header):
            raise BadRequest(f"CSV line {i + 2} has {len(row)} fields but the header has {len(header)}")
    _check_rows(len(data), max_rows)
    raw = {name: [row[j] if j < len(row) and row[j] != "" else None for row in data]
           for j, name in enumerate(header)}
    types = {c.name: c.type for c in schema.columns}
    for name, values in raw.items():
        if name in types:  # other columns are ignored, so never converted
            raw[name] = _from_text(name, types[name], values)
    return _validated(raw, len(data), schema)


def _from_text(name: str, kind: str, values: list[str | None]) -> list[Any]:
    """CSV field strings -> the column's type (the dtypes MLflow hands pandas.read_csv)."""
    if kind in TEXT_TYPES:
        return values
    out: list[Any] = []
    for row, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            if kind in FLOAT_TYPES:
                out.append(float(v))
            elif kind in INT_TYPES:
                out.append(int(v))
            else:
                out.append({"true": True, "false": False}[v.strip().lower()])
        except (ValueError, KeyError):
            raise BadRequest(f"CSV column '{name}' row {row}: {v[:40]!r} is not a valid {kind}") from None
    return out


def batch_from_columns(columns: Mapping[str, Sequence[Any]], schema: InputSchema) -> Batch:
    """Build a validated batch from column lists (used for warm-up rows and input examples)."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise BadRequest("all columns must have the same number of values")
    n_rows = lengths.pop() if lengths else 0
    return _validated({k: list(v) for k, v in columns.items()}, n_rows, schema)


def _check_rows(n_rows: int, max_rows: int) -> None:
    # An empty payload is refused in _validated, after the column check, in MLflow's order.
    if n_rows > max_rows:
        raise BadRequest(
            f"payload has {n_rows} rows, more than the limit of {max_rows}; split it into smaller requests"
        )


def _from_split(value: Any, schema: InputSchema, max_rows: int) -> tuple[dict[str, list[Any]], int]:
    if not isinstance(value, dict):
        raise BadRequest("dataframe_split must be an object with keys 'columns' and 'data'")
    for key in value:
        if key not in ("columns", "data", "index"):
            raise BadRequest(f"unknown key 'dataframe_split.{key}'; expected 'columns' and 'data'")
    columns = value.get("columns", _MISSING)
    data = value.get("data", _MISSING)
    if data is _MISSING:
        raise BadRequest("dataframe_split.data is required: a list of rows, each a list of values")
    if columns is _MISSING:
        # MLflow numbers the columns 0..n-1, so the signature's columns are missing.
        raise BadRequest(f"dataframe_split.columns is required: a list of column names such as "
                         f"{schema.describe()}", INVALID_PARAMETER_VALUE)
    if not isinstance(columns, list) or not all(type(c) is str for c in columns):
        raise BadRequest("dataframe_split.columns must be a list of column-name strings")
    try:
        if len(set(columns)) != len(columns):
            dup = next(c for i, c in enumerate(columns) if c in columns[:i])
            raise BadRequest(f"dataframe_split.columns has column '{dup}' more than once")
        if not isinstance(data, list):
            raise BadRequest("dataframe_split.data must be a list of rows, each a list of values")
    except BadRequest:
        # MLflow still builds a frame from these and then finds signature columns missing.
        _require_columns(set(columns), schema)
        raise
    _check_rows(len(data), max_rows)
    try:
        return _transpose(data, columns, "dataframe_split.data"), len(data)
    except BadRequest:
        # MLflow still builds a frame from these and then finds signature columns missing.
        _require_columns(set(columns), schema)
        raise


def _require_columns(present: set[str], schema: InputSchema) -> None:
    for spec in schema.columns:
        if spec.required and spec.name not in present:
            raise BadRequest(f"missing column '{spec.name}'; the model expects the columns "
                             f"{schema.describe()}", INVALID_PARAMETER_VALUE)


def _transpose(rows: list[Any], columns: Sequence[str], where: str) -> dict[str, list[Any]]:
    width = len(columns)
    for i, row in enumerate(rows):
        if type(row) is not list:
            raise BadRequest(f"{where}[{i}] must be a list of {width} values, got {_type_name(row)}")
        if len(row) != width:
            raise BadRequest(f"{where}[{i}] has {len(row)} values but there are {width} columns")
    if not rows:
        return {name: [] for name in columns}
    return {name: list(col) for name, col in zip(columns, zip(*rows, strict=True), strict=True)}


def _from_records(
    value: Any, where: str, schema: InputSchema, max_rows: int
) -> tuple[dict[str, list[Any]], int]:
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be a list of objects, one per row, mapping column name to value")
    _check_rows(len(value), max_rows)
    for i, record in enumerate(value):
        if type(record) is not dict:
            raise BadRequest(f"{where}[{i}] must be an object mapping column name to value, "
                             f"got {_type_name(record)}", INVALID_PARAMETER_VALUE)
    raw: dict[str, list[Any]] = {}
    for spec in schema.columns:
        values = [r.get(spec.name, _MISSING) for r in value]
        if _MISSING in values:
            present = [v is not _MISSING for v in values]
            if any(present):
                row = present.index(False)
                raise BadRequest(f"{where}[{row}] is missing column '{spec.name}'; every row needs "
                                 f"the columns {schema.describe()}")
            continue
        raw[spec.name] = values
    return raw, len(value)


def _from_inputs(value: Any, where: str, schema: InputSchema, max_rows: int) -> tuple[dict[str, list[Any]], int]:
    if isinstance(value, dict):
        for name, col in value.items():
            if type(col) is not list:
                raise BadRequest(f"{where}.{name} must be a list of values, one per row", INVALID_PARAMETER_VALUE)
        lengths = {len(col) for col in value.values()}
        if len(lengths) > 1:
            raise BadRequest(f"{where} columns have different lengths {sorted(lengths)}; "
                             f"every column needs one value per row", INVALID_PARAMETER_VALUE)
        n_rows = lengths.pop() if lengths else 0
        _check_rows(n_rows, max_rows)
        _check_tensor_values(value, where)
        return dict(value), n_rows
    if isinstance(value, list):
        _check_rows(len(value), max_rows)
        if value and type(value[0]) is dict:
            raw, n_rows = _from_records(value, where, schema, max_rows)
            _check_tensor_values(raw, where)
            return raw, n_rows
        if value:
            _refuse_positional(value, where, schema)
        return {}, 0
    raise BadRequest(f"{where} must be an object mapping column name to a list of values, or a list of "
                     f"objects mapping column name to value", INVALID_PARAMETER_VALUE)


def _check_tensor_values(raw: Mapping[str, list[Any]], where: str) -> None:
    """MLflow turns each `inputs` column into a numpy array first: an object in a column fails
    that conversion (BAD_REQUEST) before any column is checked against the signature; a nested
    list makes a column of the wrong shape (INVALID_PARAMETER_VALUE)."""
    nested = None
    for name, values in raw.items():
        kinds = set(map(type, values))
        if kinds.isdisjoint((dict, list)):
            continue
        for row, v in enumerate(values):
            if type(v) is dict:
                raise BadRequest(f"{where} column '{name}' row {row}: expected a value, got an object")
            if type(v) is list and nested is None:
                nested = (name, row)
        if where == "instances" and (kinds != {list} or len({len(v) for v in values}) > 1):
            # MLflow builds one array per `instances` column: arrays mixed with values (or of
            # several lengths) do not form one, which it reports as unreadable input.
            raise BadRequest(f"{where} column '{name}' mixes arrays and values")
    if nested is not None:
        raise BadRequest(f"{where} column '{nested[0]}' row {nested[1]}: expected a value, got an array",
                         INVALID_PARAMETER_VALUE)


def _refuse_positional(rows: list[Any], where: str, schema: InputSchema) -> None:
    """Rows without column names: MLflow cannot match them to a column signature.

    Positional rows would silently score misordered features, so MLflow refuses them
    (INVALID_PARAMETER_VALUE), unless the rows do not even form a numeric array (nested
    values, ragged rows, text for an all-numeric model): those fail earlier, as BAD_REQUEST.
    """
    # Numeric models: text or nesting breaks the float array. Others get an object array,
    # which only nested lists break.
    scalars = (int, float, bool, type(None)) if schema.all_numeric else (int, float, bool, str, dict, type(None))
    width = len(rows[0]) if type(rows[0]) is list else -1
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != width or not all(isinstance(v, scalars) for v in row):
            raise BadRequest(f"{where}[{i}] is not a row of {'numbers' if schema.all_numeric else 'values'} "
                             f"like the others; send named columns {schema.describe()} instead")
    raise BadRequest(f"{where} is a list of rows without column names, but the model expects named "
                     f"columns {schema.describe()}; send {where} as an object mapping column name "
                     f"to values, a list of objects, or use dataframe_split", INVALID_PARAMETER_VALUE)


_FLOAT_VALUE_TYPES = _ACCEPTED["double"]


def _numeric_fast_path(raw: dict[str, list[Any]], n_rows: int, schema: InputSchema) -> Batch | None:
    """The batch :func:`_validated` would build, in one type check, for the common numeric request.

    When every signature column is double/float, the request has exactly the signature's
    columns in its order and every value is a JSON number or null, all per-column checks
    would pass unchanged: one C-speed set of the value types over all cells replaces them.
    Anything else (other columns or order, booleans, numeric strings, bad values) returns
    None and takes the full validation, with its exact error messages.
    """
    names = schema.float_names
    if names is None or n_rows == 0 or tuple(raw) != names:
        return None
    if not set(map(type, chain.from_iterable(raw.values()))) <= _FLOAT_VALUE_TYPES:
        return None
    return Batch(n_rows=n_rows, columns=raw)


def _validated(raw: Mapping[str, list[Any]], n_rows: int, schema: InputSchema) -> Batch:
    # MLflow's order: the columns present are converted while parsing (BAD_REQUEST), then the
    # signature is enforced (a missing column: INVALID_PARAMETER_VALUE), then the model sees no rows.
    columns: dict[str, list[Any]] = {}
    for spec in schema.columns:
        values = raw.get(spec.name, _MISSING)
        if values is not _MISSING:
            columns[spec.name] = _check_types(spec, values)  # type: ignore[arg-type]
        elif spec.required:
            raise BadRequest(f"missing column '{spec.name}'; the model expects the columns "
                             f"{schema.describe()}", INVALID_PARAMETER_VALUE)
    if n_rows == 0:
        raise BadRequest("payload has no rows; send at least one row")
    if len(columns) < len(schema.columns):
        columns = {spec.name: columns.get(spec.name) or [None] * n_rows for spec in schema.columns}
    return Batch(n_rows=n_rows, columns=columns)


def _check_types(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    """The column's values in its type; the common well-typed case is one C-speed set check."""
    accepted = _ACCEPTED[spec.type]
    if set(map(type, values)) <= accepted:
        return values
    if spec.type in FLOAT_TYPES:
        return _to_float(spec, values)
    for row, v in enumerate(values):
        if type(v) not in accepted:
            _reject(spec, row, v)
    return values


def _to_float(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    """Numeric strings and booleans in a float column are converted, as MLflow's pandas cast does."""
    out: list[Any] = []
    for row, v in enumerate(values):
        kind = type(v)
        if kind is float or kind is int or v is None:
            out.append(v)
        elif kind is bool:
            out.append(1.0 if v else 0.0)
        elif kind is str:
            try:
                out.append(float(v))
            except ValueError:
                _reject(spec, row, v)
        else:
            _reject(spec, row, v)
    return out


def _reject(spec: ColumnSpec, row: int, v: Any) -> None:
    shown = orjson.dumps(v).decode()[:40] if type(v) in _JSON_TYPE_NAMES else repr(v)[:40]
    raise BadRequest(f"column '{spec.name}' row {row}: expected {spec.type} "
                     f"({_EXPECTED_TEXT[spec.type]}), got {_type_name(v)} {shown}")


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
