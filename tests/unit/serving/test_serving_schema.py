"""Payload parsing: every MLflow scoring format, and the exact message of every rejection."""

from __future__ import annotations

import orjson
import pytest

from shipway.serving.schema import (
    BAD_REQUEST,
    INVALID_PARAMETER_VALUE,
    BadRequest,
    ColumnSpec,
    InputSchema,
    batch_from_columns,
    parse_csv,
    parse_payload,
)

SCHEMA = InputSchema(columns=(
    ColumnSpec("a", "double"), ColumnSpec("b", "long"), ColumnSpec("c", "string"),
    ColumnSpec("d", "boolean"), ColumnSpec("e", "double", required=False),
))
KEYS = "dataframe_split, dataframe_records, inputs, instances"
COLS = "[a, b, c, d, e]"
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


@pytest.mark.parametrize("key", ["inputs", "instances"])
def test_rows_without_names_are_refused_as_mlflow_does_for_a_column_signature(key: str) -> None:
    rows = [[1.5, 1, "x", True, 0.5], [2.0, 2, None, False, None]]
    with pytest.raises(BadRequest) as err:
        parse({key: rows})
    assert err.value.code == INVALID_PARAMETER_VALUE
    assert err.value.message.startswith(f"{key} is a list of rows without column names, but the model "
                                        f"expects named columns {COLS}")


def test_params_and_unknown_top_level_keys_are_carried_and_ignored_like_mlflow() -> None:
    doc = {"dataframe_records": [{"a": 1.5, "b": 1, "c": "x", "d": True}], "params": {"k": 3}, "client": "x"}
    batch = parse_payload(orjson.dumps(doc), SCHEMA, 10)
    assert batch.params == {"k": 3}
    assert batch.columns["a"] == [1.5]


@pytest.mark.parametrize(("value", "expected"), [
    ("1.5", 1.5), ("-2", -2.0), ("1e3", 1000.0), (True, 1.0), (False, 0.0), (3, 3), (None, None)])
def test_numeric_strings_and_booleans_convert_in_a_double_column_like_mlflow(value: object,
                                                                           expected: object) -> None:
    doc = {"dataframe_records": [{"a": value, "b": 1, "c": "x", "d": True}]}
    assert parse(doc)["a"] == [expected]


def test_missing_column_is_invalid_parameter_value_and_parse_errors_are_bad_request() -> None:
    with pytest.raises(BadRequest) as missing:
        parse({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, "x"]]}})
    assert missing.value.code == INVALID_PARAMETER_VALUE
    with pytest.raises(BadRequest) as broken:
        parse_payload(b"{", SCHEMA, 10)
    assert broken.value.code == BAD_REQUEST


def test_csv_bodies_parse_with_the_signature_types() -> None:
    body = b"d,c,b,a\ntrue,x,1,1.5\nFalse,,2,2\n"
    assert dict(parse_csv(body, SCHEMA, 10).columns) == EXPECTED


@pytest.mark.parametrize(("body", "message"), [
    (b"", "CSV body is empty; send a header row with the columns [a, b, c, d, e] and one line per row"),
    (b"a,b,c,d\nx,1,y,true\n", "CSV column 'a' row 0: 'x' is not a valid double"),
    (b"a,b,c,d\n1,1.5,y,true\n", "CSV column 'b' row 0: '1.5' is not a valid long"),
    (b"a,b,c,d\n1,1,y,maybe\n", "CSV column 'd' row 0: 'maybe' is not a valid boolean"),
    (b"a,b,c,d\n1,2,x,true,5,6\n", "CSV line 2 has 6 fields but the header has 4"),
    (b"a,b,c\n1,2,x\n", f"missing column 'd'; the model expects the columns {COLS}"),
    (b"\xff\xfe", "CSV body is not valid UTF-8: 'utf-8' codec can't decode byte 0xff in position 0: "
                   "invalid start byte"),
])
def test_bad_csv_bodies_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_csv(body, SCHEMA, 10)
    assert err.value.message == message


def test_extra_columns_are_ignored_like_mlflow() -> None:
    doc = {"dataframe_records": [{"a": 1.5, "b": 1, "c": "x", "d": True, "zzz": 1}]}
    assert parse(doc)["a"] == [1.5]




@pytest.mark.parametrize(("body", "message"), [
    (b"{not json",
     "request body is not valid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)"),
    (b"[1, 2]", f"request body must be a JSON object with exactly one of the keys: {KEYS}, got array"),
    (b'{"data": []}', f"request body has no input key (got ['data']); expected exactly one of: {KEYS}"),
    (b"{}", f"request body has no input key (got []); expected exactly one of: {KEYS}"),
    (b'{"inputs": [], "dataframe_records": []}',
     f"request body has several input keys ('inputs', 'dataframe_records'); send exactly one of: {KEYS}"),
    (b'{"dataframe_split": [1]}', "dataframe_split must be an object with keys 'columns' and 'data'"),
    (b'{"dataframe_split": {"columns": ["a"], "data": [], "orient": 1}}',
     "unknown key 'dataframe_split.orient'; expected 'columns' and 'data'"),
    (b'{"dataframe_split": {"data": [[1]]}}',
     f"dataframe_split.columns is required: a list of column names such as {COLS}"),
    (b'{"dataframe_split": {"columns": ["a", 1], "data": [[1]]}}',
     "dataframe_split.columns must be a list of column-name strings"),
    (b'{"dataframe_split": {"columns": ["a", "b", "c", "d", "a"], "data": [[1, 1, "x", true, 1]]}}',
     "dataframe_split.columns has column 'a' more than once"),
    (b'{"dataframe_split": {"columns": ["a"]}}',
     "dataframe_split.data is required: a list of rows, each a list of values"),
    (b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": []}}',
     "payload has no rows; send at least one row"),
    (b'{"dataframe_split": {"columns": ["a"], "data": []}}',
     f"missing column 'b'; the model expects the columns {COLS}"),
    (b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "x", true], [3]]}}',
     "dataframe_split.data[1] has 1 values but there are 4 columns"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}',
     f"missing column 'c'; the model expects the columns {COLS}"),
    (b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [5]}}',
     "dataframe_split.data[0] must be a list of 4 values, got integer"),
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
    (b'{"inputs": "abc"}', "inputs must be an object mapping column name to a list of values, or a list of "
                           "objects mapping column name to value"),
    (b'{"dataframe_records": [{"a": "1.5x", "b": 1, "c": "x", "d": true}]}',
     "column 'a' row 0: expected double (a JSON number, a numeric string or null), got string \"1.5x\""),
    (b'{"dataframe_records": [{"a": 1, "b": 1.5, "c": "x", "d": true}]}',
     "column 'b' row 0: expected long (a JSON integer), got number 1.5"),
    (b'{"dataframe_records": [{"a": 1, "b": 1, "c": 3, "d": true}]}',
     "column 'c' row 0: expected string (a JSON string or null), got integer 3"),
    (b'{"dataframe_records": [{"a": 1, "b": 1, "c": "x", "d": 1}]}',
     "column 'd' row 0: expected boolean (true or false), got integer 1"),
    (b'{"inputs": {"a": [[1]], "b": [1], "c": ["x"], "d": [true]}}',
     "inputs column 'a' row 0: expected a value, got an array"),
    (b'{"inputs": {"a": [{"v": 1}], "b": [1], "c": ["x"], "d": [true]}}',
     "inputs column 'a' row 0: expected a value, got an object"),
    (b'{"dataframe_records": [{"a": [1], "b": 1, "c": "x", "d": true}]}',
     "column 'a' row 0: expected double (a JSON number, a numeric string or null), got array [1]"),
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


NUMERIC = InputSchema(columns=(ColumnSpec("a", "double"), ColumnSpec("b", "double")))


@pytest.mark.parametrize(("rows", "code"), [
    ([[1.0, 2.0]], INVALID_PARAMETER_VALUE),        # well-formed rows, but no names
    ([[1.0, "abc"]], BAD_REQUEST),                  # text cannot form the numeric array
    ([[1.0, [2.0]]], BAD_REQUEST),                  # nested
    ([[1.0, 2.0], [1.0]], BAD_REQUEST),             # ragged
])
def test_positional_rows_fail_with_mlflows_code(rows: list[object], code: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_payload(orjson.dumps({"inputs": rows}), NUMERIC, 10)
    assert err.value.code == code


@pytest.mark.parametrize(("doc", "code"), [
    ({"dataframe_split": {"columns": [], "data": []}}, INVALID_PARAMETER_VALUE),
    ({"dataframe_split": {"columns": ["a", "b"], "data": []}}, BAD_REQUEST),
    ({"inputs": []}, INVALID_PARAMETER_VALUE),
    ({"inputs": "abc"}, INVALID_PARAMETER_VALUE),
])
def test_missing_columns_are_reported_before_an_empty_payload(doc: object, code: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_payload(orjson.dumps(doc), NUMERIC, 10)
    assert err.value.code == code


def test_a_json_body_sent_as_csv_is_missing_columns_like_mlflow() -> None:
    with pytest.raises(BadRequest) as err:
        parse_csv(b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}', NUMERIC, 10)
    assert err.value.code == INVALID_PARAMETER_VALUE


def test_a_csv_leading_field_on_every_row_is_the_index_as_in_pandas() -> None:
    batch = parse_csv(b"a,b,c,d\n7,1.5,1,x,true\n", SCHEMA, 10)
    assert (batch.columns["a"], batch.columns["d"]) == ([1.5], [True])


FLOATS = InputSchema(columns=(ColumnSpec("x", "double"), ColumnSpec("y", "float"),
                              ColumnSpec("z", "double", required=False)))


@pytest.mark.parametrize(("doc", "expected"), [
    ({"dataframe_split": {"columns": ["x", "y", "z"], "data": [[1.5, 2, None], [0.0, -1, 3.25]]}},
     {"x": [1.5, 0.0], "y": [2, -1], "z": [None, 3.25]}),
    ({"dataframe_split": {"columns": ["x", "y", "z"], "data": [[True, "2.5", 1]]}},
     {"x": [1.0], "y": [2.5], "z": [1]}),
    ({"dataframe_split": {"columns": ["z", "y", "x"], "data": [[1, 2, 3]]}}, {"x": [3], "y": [2], "z": [1]}),
    ({"dataframe_split": {"columns": ["x", "y"], "data": [[1, 2]]}}, {"x": [1], "y": [2], "z": [None]}),
    ({"dataframe_split": {"columns": ["x", "y", "z", "extra"], "data": [[1, 2, 3, "s"]]}},
     {"x": [1], "y": [2], "z": [3]}),
    ({"dataframe_records": [{"x": 1.0, "y": 2.0, "z": 3.0}]}, {"x": [1.0], "y": [2.0], "z": [3.0]}),
], ids=["numbers-and-nulls", "bool-and-numeric-string", "reordered", "optional-missing", "extra-column",
        "records"])
def test_an_all_float_signature_parses_exactly_as_full_validation(doc: object,
                                                                 expected: dict[str, list[object]]) -> None:
    # The all-float fast path must give what the per-column validation gives (values converted,
    # signature order, optional columns filled), whichever path a request takes.
    batch = parse_payload(orjson.dumps(doc), FLOATS, 10)
    assert dict(batch.columns) == expected
    assert list(batch.columns) == ["x", "y", "z"]
    assert [type(v) for v in batch.columns["x"]] == [type(v) for v in expected["x"]]
    assert dict(batch_from_columns(expected, FLOATS).columns) == expected


@pytest.mark.parametrize(("row", "message"), [
    ([1.0, "abc", 2.0], "column 'y' row 0: expected float (a JSON number, a numeric string or null), "
                        "got string \"abc\""),
    ([1.0, [2.0], 2.0], "column 'y' row 0: expected float (a JSON number, a numeric string or null), got array [2.0]"),
    ([{"v": 1}, 2.0, 2.0], "column 'x' row 0: expected double (a JSON number, a numeric string or null), "
                           "got object {\"v\":1}"),
])
def test_an_all_float_signature_still_names_the_bad_cell(row: list[object], message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_payload(orjson.dumps({"dataframe_split": {"columns": ["x", "y", "z"], "data": [row]}}), FLOATS, 10)
    assert err.value.message == message
    assert err.value.code == BAD_REQUEST
