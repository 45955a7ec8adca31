"""The JSON form of edXML messages: lossless both ways, schema-valid, precise errors."""

from __future__ import annotations

import copy
import json
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator

from connector.edxml import jsonform
from connector.edxml.jsonform import JsonFormError, dumps, from_json, loads, to_json, validate
from connector.edxml.model import (
    VN_TZ,
    Attachment,
    BytesData,
    Code,
    DocumentType,
    Edoc,
    Organization,
    PromulgationInfo,
    ResponseFor,
    Status,
    UnknownElement,
)
from tests.edxml.strategies import edocs, messages, statuses

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- fixtures


def sample_edoc() -> Edoc:
    """A document shaped like the VNPT samples (7816/VPCP-TTĐT)."""
    return Edoc(
        from_=Organization(organ_id="000.00.00.G22", organ_name="Văn phòng Chính phủ"),
        to=[Organization(organ_id="000.00.00.H41", organ_name="UBND Tỉnh Nghệ An")],
        document_id="000.00.00.G22,2015/09/30,7816/VPCP-TTĐT",
        code=Code(number="7816", notation="VPCP-TTĐT"),
        promulgation=PromulgationInfo(place="Hà Nội", date=date(2019, 4, 11)),
        document_type=DocumentType(type="1", type_detail="0", type_name="Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        attachments=[
            Attachment(
                content_id="209",
                name="1896_QD-TTg_m_294779.doc",
                content_type="application/msword",
                packaging="zip",
                data=BytesData(b"%PDF-1.4 fake"),
            )
        ],
        unknown=[UnknownElement(path="/edXML/X", line=12, xml="<X>1</X>")],
    ).with_manifest()


def sample_status() -> Status:
    """A rejection (02) like ``tltvbqn__status_rejection_02.edxml``."""
    return Status(
        from_=Organization(organ_id="000.00.00.H41", organ_name="UBND Tỉnh Nghệ An"),
        response_for=[
            ResponseFor(
                organ_id="000.00.00.G22",
                code="7816/VPCP-TTĐT",
                promulgation_date=date(2015, 9, 30),
                document_id="000.00.00.G22,2015/09/30,7816/VPCP-TTĐT",
            )
        ],
        status_code="02",
        description="Từ chối không tiếp nhận văn bản điện tử",
        timestamp=datetime(2015, 9, 20, 11, 8, 36, tzinfo=VN_TZ),
    )


def error_lines(data: Any) -> list[str]:
    """The ``path: message`` lines ``from_json`` raises for ``data``."""
    with pytest.raises(JsonFormError) as info:
        from_json(data)
    assert str(info.value) == "\n".join(info.value.messages)
    return info.value.messages


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(messages(with_unknown=True))
def test_model_json_model_is_identity(msg: Edoc | Status) -> None:
    back = from_json(to_json(msg))
    assert back == msg
    assert back.unknown == msg.unknown  # compare=False in the model, still carried


@PROPERTY
@given(messages(with_unknown=True))
def test_generated_json_follows_the_schema(msg: Edoc | Status) -> None:
    data = to_json(msg)
    assert validate(data) == []
    # A plain validator (no format checks of ours) agrees: nothing depends on our extensions.
    assert list(Draft202012Validator(jsonform.schema()).iter_errors(data)) == []


@PROPERTY
@given(messages(with_unknown=True))
def test_json_model_json_is_identity(msg: Edoc | Status) -> None:
    data = json.loads(dumps(msg))  # through text, as a DMS would see it
    assert to_json(from_json(data)) == data
    assert to_json(loads(dumps(msg))) == data


@PROPERTY
@given(edocs())
def test_attachments_carry_metadata_only(edoc: Edoc) -> None:
    back = from_json(to_json(edoc))
    assert isinstance(back, Edoc)
    for original, restored in zip(edoc.attachments, back.attachments):
        assert restored.data is None
        assert (restored.size, restored.sha256) == (original.size, original.sha256)


@PROPERTY
@given(statuses())
def test_every_key_is_always_present(status: Status) -> None:
    data = to_json(status)
    assert list(data) == list(jsonform.schema()["$defs"]["status"]["properties"])


# --------------------------------------------------------------------------- shapes


def test_edoc_has_required_keys_and_iso_formats() -> None:
    data = to_json(sample_edoc())
    assert data["schema_version"] == "1"
    assert data["kind"] == "edoc"
    assert data["document_id"] == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert data["from"]["organ_id"] == "000.00.00.G22"
    assert data["from"]["organ_name"] == "Văn phòng Chính phủ"
    assert data["to"][0]["organ_id"] == "000.00.00.H41"
    assert data["code"] == {"number": "7816", "notation": "VPCP-TTĐT"}
    assert data["subject"].startswith("V/v kết nối")
    assert data["promulgation"] == {"place": "Hà Nội", "date": "2019-04-11"}
    assert data["document_type"]["name"] == "Công văn"
    attachment = data["attachments"][0]
    assert attachment["name"] == "1896_QD-TTg_m_294779.doc"
    assert attachment["content_type"] == "application/msword"
    assert attachment["size"] == len(b"%PDF-1.4 fake")
    assert re.fullmatch(r"[0-9a-f]{64}", attachment["sha256"])
    assert data["manifest"][0]["content_type"] == "application/zip"
    assert data["unknown_elements"] == [{"path": "/edXML/X", "line": 12, "xml": "<X>1</X>"}]
    # every key, always; but saved_as, which only extraction into a folder adds (when a file was renamed)
    assert list(data) == [k for k in jsonform.schema()["$defs"]["edoc"]["properties"] if k != "saved_as"]
    assert validate(data) == []


def test_absent_values_are_null_or_empty_never_omitted() -> None:
    data = to_json(sample_edoc())
    assert data["content"] is None
    assert data["due_date"] is None
    assert data["business"] is None
    assert data["to_places"] == []
    assert data["other_info"]["appendixes"] == []
    assert data["from"]["fax"] is None
    assert to_json(sample_status())["staff_info"] is None


def test_status_has_required_keys_and_iso_formats() -> None:
    data = to_json(sample_status())
    assert data["kind"] == "status"
    assert data["status_code"] == "02"
    assert data["response_for"][0]["document_id"] == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert data["response_for"][0]["promulgation_date"] == "2015-09-30"
    assert data["description"] == "Từ chối không tiếp nhận văn bản điện tử"
    assert data["timestamp"] == "2015-09-20T11:08:36+07:00"
    assert validate(data) == []


def test_dumps_keeps_vietnamese_readable_and_order_stable() -> None:
    text = dumps(sample_edoc())
    assert "Văn phòng Chính phủ" in text
    assert text.index('"schema_version"') < text.index('"kind"') < text.index('"document_id"')
    assert dumps(sample_edoc()) == text


# --------------------------------------------------------------------------- timestamps


def test_naive_timestamp_is_read_as_vietnam_time() -> None:
    data = to_json(sample_status())
    data["timestamp"] = "2015-09-20T11:08:36"
    status = from_json(data)
    assert status.timestamp == datetime(2015, 9, 20, 11, 8, 36, tzinfo=VN_TZ)
    assert status.timestamp.utcoffset() == timedelta(hours=7)


@pytest.mark.parametrize("value", ["2015-09-20T04:08:36Z", "2015-09-20T04:08:36+00:00", "2015-09-19T23:08:36-05:00"])
def test_other_offsets_keep_the_instant_in_vietnam_time(value: str) -> None:
    data = to_json(sample_status())
    data["timestamp"] = value
    status = from_json(data)
    assert status.timestamp == datetime(2015, 9, 20, 4, 8, 36, tzinfo=timezone.utc)
    assert status.timestamp.utcoffset() == timedelta(hours=7)
    assert to_json(status)["timestamp"] == "2015-09-20T11:08:36+07:00"


def test_empty_optional_text_is_read_as_null() -> None:
    data = to_json(sample_edoc())
    data["content"] = ""
    data["from"]["fax"] = ""
    edoc = from_json(data)
    assert edoc.content is None and edoc.from_.fax is None


def test_optional_keys_may_be_omitted_on_input() -> None:
    data = to_json(sample_edoc())
    for key in ["content", "signer_info", "due_date", "steering_type", "other_info", "to_places",
                "response_for", "trace_headers", "business", "manifest", "unknown_elements"]:
        del data[key]
    for key in ["organization_in_charge", "organ_add", "email", "telephone", "fax", "website"]:
        del data["from"][key]
    del data["attachments"][0]["packaging"]
    del data["attachments"][0]["description"]
    edoc = from_json(data)
    assert edoc.other_info.appendixes == [] and edoc.business is None
    assert edoc.attachments[0].packaging == "plain"


# --------------------------------------------------------------------------- errors


def test_recipient_id_as_number_names_the_path() -> None:
    data = to_json(sample_edoc())
    data["to"].append({"organ_id": "000.00.00.H14"})
    data["to"][1]["organ_id"] = 14
    assert error_lines(data) == ["to[1].organ_id: expected a string, got number 14"]


def test_missing_kind() -> None:
    data = to_json(sample_edoc())
    del data["kind"]
    assert error_lines(data) == ["kind: required key missing"]


def test_unknown_kind() -> None:
    data = to_json(sample_edoc())
    data["kind"] = "memo"
    assert error_lines(data) == ['kind: expected one of "edoc", "status", got "memo"']


def test_impossible_date() -> None:
    data = to_json(sample_edoc())
    data["promulgation"]["date"] = "2019-02-30"
    [line] = error_lines(data)
    assert line.startswith('promulgation.date: not a valid date: "2019-02-30"')


def test_wire_format_date_is_refused_with_the_expected_form() -> None:
    data = to_json(sample_edoc())
    data["due_date"] = "2019/04/11"
    assert error_lines(data) == ['due_date: expected a date YYYY-MM-DD, got "2019/04/11"']


def test_impossible_timestamp() -> None:
    data = to_json(sample_status())
    data["timestamp"] = "2015-09-20T25:08:36+07:00"
    [line] = error_lines(data)
    assert line.startswith('timestamp: not a valid timestamp: "2015-09-20T25:08:36+07:00"')


def test_all_errors_are_listed_at_once() -> None:
    data = to_json(sample_edoc())
    data["to"][0]["organ_id"] = 5
    data["promulgation"]["date"] = "2019-02-30"
    del data["subject"]
    data["code"]["number"] = ""
    data["from"]["organ_name"] = None
    data["from"]["nickname"] = "VPCP"
    data["attachments"][0]["sha256"] = "ABC"
    data["attachments"][0]["size"] = -1
    data["attachments"][0]["packaging"] = "rar"
    data["trace_headers"] = [{"organ_id": "x", "timestamp": "yesterday"}]
    data["business"] = {"business_doc_type": "1"}
    lines = error_lines(data)
    expected = {
        "to[0].organ_id: expected a string, got number 5",
        "subject: required key missing",
        "code.number: must not be empty",
        "from.organ_name: expected a string, got null",
        "from.nickname: unknown key",
        "attachments[0].sha256: expected 64 lowercase hexadecimal digits, got \"ABC\"",
        "attachments[0].size: must be at least 0, got number -1",
        'attachments[0].packaging: expected one of "plain", "zip", got "rar"',
        'trace_headers[0].timestamp: expected a timestamp YYYY-MM-DDTHH:MM:SS+07:00, got "yesterday"',
        'business.business_doc_type: expected an integer or null, got "1"',
    }
    assert expected <= set(lines)
    assert any(line.startswith("promulgation.date: not a valid date") for line in lines)
    assert len(lines) == len(expected) + 1  # each problem once
    problems = validate(data)
    assert [f"{p.path}: {p.message}" for p in problems] == lines
    assert {p.code for p in problems} >= {"json-type", "json-required", "json-additionalProperties"}


def test_status_shape_is_checked() -> None:
    data = to_json(sample_status())
    data["status_code"] = "07"
    data["response_for"] = [{"organ_id": "000.00.00.G22"}]
    data["subject"] = "not a status key"
    lines = error_lines(data)
    assert set(lines) == {
        'status_code: expected one of "01", "02", "03", "04", "05", "06", "13", "15", "16", got "07"',
        "response_for[0].document_id: required key missing",
        "subject: unknown key",
    }


def test_wrong_schema_version() -> None:
    data = to_json(sample_status())
    data["schema_version"] = "2"
    assert error_lines(data) == ['schema_version: expected "1", got "2"']


def test_not_an_object() -> None:
    assert error_lines([1, 2]) == ["(root): expected an object, got an array"]


def test_malformed_json_text() -> None:
    with pytest.raises(JsonFormError) as info:
        loads("{not json")
    assert info.value.messages[0].startswith("(root): not valid JSON")


def test_error_is_a_value_error() -> None:
    assert issubclass(JsonFormError, ValueError)


def test_input_is_not_modified() -> None:
    data = to_json(sample_edoc())
    before = copy.deepcopy(data)
    from_json(data)
    assert data == before


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = jsonform.schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"] and schema["description"]
    assert "null" in schema["description"]


def test_integral_floats_become_ints() -> None:
    """JSON Schema counts 1.0 as an integer; the model must still hold int 1."""
    data = to_json(sample_edoc())
    data["other_info"]["priority"] = 1.0
    data["attachments"][0]["size"] = float(data["attachments"][0]["size"])
    edoc = from_json(data)
    assert type(edoc.other_info.priority) is int and edoc.other_info.priority == 1
    assert type(edoc.attachments[0].size) is int
    assert to_json(edoc)["other_info"]["priority"] == 1


def test_to_json_rejects_other_objects() -> None:
    with pytest.raises(TypeError):
        to_json("not a message")  # type: ignore[arg-type]


def test_real_world_samples_give_valid_lossless_json() -> None:
    """Every sample the parser can read maps to schema-valid JSON that reads back the same."""
    from connector.edxml.errors import EdxmlError
    from connector.edxml.parse import parse
    from tests.conftest import real_world_dir

    checked = 0
    for path in sorted(real_world_dir().glob("*.edxml")):
        try:
            with parse(path.read_bytes()) as parsed:
                message = parsed.message
                data = to_json(message)
        except EdxmlError:
            continue  # the two malformed samples: the parser's tests cover them
        assert validate(data) == [], path.name
        assert from_json(json.loads(json.dumps(data))) == message, path.name
        checked += 1
    assert checked >= 15
