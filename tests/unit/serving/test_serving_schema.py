"""Payload parsing: every MLflow scoring format, and the exact message of every rejection."""

from __future__ import annotations

import orjson
import pytest

from shipway.serving.schema import BadRequest, ColumnSpec, InputSchema, batch_from_columns, parse_payload

SCHEMA = InputSchema(columns=(
    ColumnSpec("a", "double"), ColumnSpec("b", "long"), ColumnSpec("c", "string"),
    ColumnSpec("d", "boolean"), ColumnSpec("e", "double", required=False),
))
EXPECTED = {"a": [1.5, 2.0], "b": [1, 2], "c": ["x", None], "d": [True, False], "e": [None, None]}


def parse(doc: object, max_rows: int = 100) -> dict[str, list[object]]:
    batch = parse_payload(orjson.dumps(doc), SCHEMA, max_rows)
    return dict(batch.columns)


@pytest.mark.parametrize("doc", [
    {"dataframe_split": {"columns": ["a", "b", "c", "d"],
                         "data": [[1.5, 1, "x", True], [2.0, 2, None, False]]}},
    {"dataframe_split": {"index": [0, 1], "columns": ["d", "c", "b", "a"],
                         "data": [[True, "x", 1, 1.5], [False, None, 2, 2.0]]}},
    {"dataframe_records": [{"a": 1.5, "b": 1, "c": "x", "d": True}, {"a": 2.0, "b": 2, "c": None, "d": False}]},
    {"inputs": {"a": [1.5, 2.0], "b": [1, 2], "c": ["x", None], "d": [True, False]}},
    {"inputs": [{"a": 1.5, "b": 1, "c": "x", "d": True}, {"a": 2.0, "b": 2, "c": None, "d": False}]},
    {"instances": {"a": [1.5, 2.0], "b": [1, 2], "c": ["x", None], "d": [True, False]}},
], ids=["split", "split-reordered", "records", "inputs-columns", "inputs-records", "instances"])
def test_every_format_yields_the_same_columns_in_signature_order(doc: object) -> None:
    columns = parse(doc)
    assert columns == EXPECTED
    assert list(columns) == ["a", "b", "c", "d", "e"]


def test_inputs_rows_are_positional_in_signature_order() -> None:
    rows = [[1.5, 1, "x", True, 0.5], [2.0, 2, None, False, None]]
    assert parse({"inputs": rows}) == {**EXPECTED, "e": [0.5, None]}


def test_extra_columns_are_ignored_like_mlflow() -> None:
    doc = {"dataframe_records": [{"a": 1.5, "b": 1, "c": "x", "d": True, "zzz": 1}]}
    assert parse(doc)["a"] == [1.5]


KEYS = "dataframe_split, dataframe_records, inputs, instances"
COLS = "[a, b, c, d, e]"


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json",
     "request body is not valid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)"),
    (b"[1, 2]", f"request body must be a JSON object with exactly one of the keys: {KEYS}"),
    (b'{"data": []}', f"unknown payload key 'data'; expected exactly one of: {KEYS}"),
    (b"{}", f"request body has no input key; expected exactly one of: {KEYS}"),
    (b'{"inputs": [], "dataframe_records": []}',
     f"request body has several input keys ('inputs', 'dataframe_records'); send exactly one of: {KEYS}"),
    (b'{"dataframe_split": [1]}', "dataframe_split must be an object with keys 'columns' and 'data'"),
    (b'{"dataframe_split": {"columns": ["a"], "data": [], "orient": 1}}',
     "unknown key 'dataframe_split.orient'; expected 'columns' and 'data'"),
    (b'{"dataframe_split": {"data": [[1]]}}',
     f"dataframe_split.columns is required: a list of column names such as {COLS}"),
    (b'{"dataframe_split": {"columns": ["a", 1], "data": [[1]]}}',
     "dataframe_split.columns must be a list of column-name strings"),
    (b'{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 1]]}}',
     "dataframe_split.columns has column 'a' more than once"),
    (b'{"dataframe_split": {"columns": ["a"]}}',
     "dataframe_split.data is required: a list of rows, each a list of values"),
    (b'{"dataframe_split": {"columns": ["a"], "data": []}}', "payload has no rows; send at least one row"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}',
     "dataframe_split.data[1] has 1 values but there are 2 columns"),
    (b'{"dataframe_split": {"columns": ["a"], "data": [5]}}',
     "dataframe_split.data[0] must be a list of 1 values, got integer"),
    (b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "x", true]]}}', None),
    (b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, "x"]]}}',
     f"missing column 'd'; the model expects the columns {COLS}"),
    (b'{"dataframe_records": [{"a": 1, "b": 1, "c": "x", "d": true}, {"a": 1, "b": 1, "c": "x"}]}',
     f"dataframe_records[1] is missing column 'd'; every row needs the columns {COLS}"),
    (b'{"dataframe_records": {"a": 1}}',
     "dataframe_records must be a list of objects, one per row, mapping column name to value"),
    (b'{"dataframe_records": [[1]]}',
     "dataframe_records[0] must be an object mapping column name to value, got array"),
    (b'{"inputs": {"a": [1], "b": 2}}', "inputs.b must be a list of values, one per row"),
    (b'{"inputs": {"a": [1], "b": [1, 2]}}',
     "inputs columns have different lengths [1, 2]; every column needs one value per row"),
    (b'{"inputs": "abc"}', "inputs must be a list of rows (each a list of values in the order "
                           f"{COLS}) or an object mapping column name to a list of values"),
    (b'{"inputs": [1.0, 2.0, "x", true, null]}', "inputs[0] must be a list of 5 values, got number"),
    (b'{"dataframe_records": [{"a": "1.5", "b": 1, "c": "x", "d": true}]}',
     "column 'a' row 0: expected double (a JSON number or null), got string \"1.5\""),
    (b'{"dataframe_records": [{"a": 1, "b": 1.5, "c": "x", "d": true}]}',
     "column 'b' row 0: expected long (a JSON integer), got number 1.5"),
    (b'{"dataframe_records": [{"a": 1, "b": 1, "c": 3, "d": true}]}',
     "column 'c' row 0: expected string (a JSON string or null), got integer 3"),
    (b'{"dataframe_records": [{"a": 1, "b": 1, "c": "x", "d": 1}]}',
     "column 'd' row 0: expected boolean (true or false), got integer 1"),
    (b'{"inputs": {"a": [1, true], "b": [1, 1], "c": ["x", "y"], "d": [true, true]}}',
     "column 'a' row 1: expected double (a JSON number or null), got boolean true"),
    (b'{"inputs": {"a": [[1]], "b": [1], "c": ["x"], "d": [true]}}',
     "column 'a' row 0: expected double (a JSON number or null), got array [1]"),
])
def test_malformed_payloads_get_exact_messages(body: bytes, message: str | None) -> None:
    if message is None:  # the control case: the same shape, valid, parses
        assert parse_payload(body, SCHEMA, 100).n_rows == 1
        return
    with pytest.raises(BadRequest) as err:
        parse_payload(body, SCHEMA, 100)
    assert err.value.message == message


def test_row_cap_is_enforced_before_parsing_rows() -> None:
    doc = {"dataframe_split": {"columns": ["a"], "data": [[1]] * 11}}
    with pytest.raises(BadRequest) as err:
        parse(doc, max_rows=10)
    assert err.value.message == "payload has 11 rows, more than the limit of 10; split it into smaller requests"
    assert len(parse({"dataframe_records": [{"a": 1, "b": 1, "c": None, "d": True}] * 10}, max_rows=10)["a"]) == 10


def test_unsupported_signature_type_is_refused() -> None:
    with pytest.raises(ValueError, match="signature column type 'tensor' is not supported"):
        InputSchema(columns=(ColumnSpec("x", "tensor"),))


def test_batch_from_columns_validates_like_a_payload() -> None:
    schema = InputSchema(columns=(ColumnSpec("x", "double"),))
    assert batch_from_columns({"x": [1, 2.5]}, schema).n_rows == 2
    with pytest.raises(BadRequest, match="missing column 'x'"):
        batch_from_columns({"y": [1]}, schema)
