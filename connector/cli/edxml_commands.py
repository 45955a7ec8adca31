"""CLI commands over edXML files: validate, inspect, build, extract."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from ..edxml.build import BuildError, build
from ..edxml.errors import EdxmlError, Problem
from ..edxml.files import ExtractError, document_from_json, extract_to, make_folder, remove_folders
from ..edxml.jsonform import JsonFormError, dumps, to_json
from ..edxml.model import PRIORITIES, Edoc, Message, Status, status_label
from ..edxml.parse import Parsed, parse
from ..input_files import InputFile

EXIT_INVALID = 1

_file_arg = InputFile()


def _non_empty_path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """The option's path; an empty one is a usage error (``Path("")`` would be the current
    directory, which nobody means by leaving the value out)."""
    if value is None:
        return None
    if value == "":
        raise click.BadParameter("an empty path is not a file or folder name", ctx=ctx, param=param)
    return Path(value)


def _echo_problems(problems: list[Problem], *, err: bool = True) -> None:
    for problem in problems:
        click.echo(f"  {problem}", err=err)


def _read(path: Path) -> Parsed | None:
    """Parse a file for a command; print why it cannot be read and return None."""
    try:
        return parse(path, source_name=str(path))
    except EdxmlError as exc:
        click.echo(f"{path}: cannot be read as edXML", err=True)
        _echo_problems(exc.problems)
        return None
    except OSError as exc:
        click.echo(f"{path}: {exc.strerror or exc}", err=True)
        return None


# --------------------------------------------------------------------------- validate


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=_file_arg)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable results.")
def validate_cmd(files: tuple[Path, ...], as_json: bool) -> None:
    """Check edXML files against the schema and the standard's rules.

    Every problem is listed with its line and element path; exit 1 if any file is invalid.
    """
    results = [_validate_one(path) for path in files]
    if as_json:
        click.echo(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        for result in results:
            _print_validation(result)
    sys.exit(0 if all(r["valid"] for r in results) else EXIT_INVALID)


def _validate_one(path: Path) -> dict:
    try:
        with parse(path, source_name=str(path)) as parsed:
            problems = parsed.report.problems
            kind = parsed.message.kind
    except EdxmlError as exc:
        problems, kind = exc.problems, None
    except OSError as exc:
        problems, kind = [Problem(exc.strerror or str(exc), code="io", source=str(path))], None
    errors = [p for p in problems if p.severity == "error"]
    return {
        "file": str(path),
        "kind": kind,
        "valid": kind is not None and not errors,
        "errors": len(errors),
        "warnings": len(problems) - len(errors),
        "problems": [p.to_dict() for p in problems],
    }


def _print_validation(result: dict) -> None:
    verdict = "valid" if result["valid"] else "INVALID"
    kind = f" {result['kind']}" if result["kind"] else ""
    counts = f"{result['errors']} error(s), {result['warnings']} warning(s)"
    click.echo(f"{result['file']}:{kind} {verdict} ({counts})")
    for p in result["problems"]:
        line = f"line {p['line']}" if p["line"] is not None else "-"
        where = f" {p['path']}" if p["path"] else ""
        click.echo(f"  {p['severity']}: {line}{where}: {p['message']}")


# --------------------------------------------------------------------------- inspect


@click.command("inspect")
@click.argument("file", type=_file_arg)
@click.option("--json", "as_json", is_flag=True, help="Print the document JSON (schemas/document.schema.json).")
def inspect_cmd(file: Path, as_json: bool) -> None:
    """Show what a document says: a readable summary, or the document JSON."""
    parsed = _read(file)
    if parsed is None:
        sys.exit(EXIT_INVALID)
    with parsed:
        if as_json:
            click.echo(dumps(parsed.message))
        else:
            click.echo(summary(parsed.message))
        errors = parsed.report.errors
        if parsed.report.problems:
            click.echo(f"{len(errors)} error(s), {len(parsed.report.warnings)} warning(s):", err=True)
            _echo_problems(parsed.report.problems)
    sys.exit(EXIT_INVALID if errors else 0)


def summary(message: Message) -> str:
    """A few lines a clerk can read: who, what, when, which files."""
    if isinstance(message, Status):
        return _status_summary(message)
    return _edoc_summary(message)


def _org(o) -> str:
    return f"{o.organ_name or '?'} ({o.organ_id or 'no code'})"


def _edoc_summary(doc: Edoc) -> str:
    code = "/".join(x for x in (doc.code.number, doc.code.notation) if x) or "-"
    date = doc.promulgation.date.isoformat() if doc.promulgation.date else "-"
    priority = doc.other_info.priority
    lines = [
        "Văn bản điện tử (edoc)",
        f"  Document id : {doc.document_id or '-'}",
        f"  Số/ký hiệu  : {code}",
        f"  Loại        : {doc.document_type.type_name or '-'}",
        f"  Trích yếu   : {doc.subject or '-'}",
        f"  From        : {_org(doc.from_)}",
        *[f"  To          : {_org(o)}" for o in doc.to],
        f"  Ban hành    : {doc.promulgation.place or '-'}, {date}",
        f"  Độ khẩn     : {PRIORITIES.get(priority, '-') if priority is not None else '-'}",
        f"  Người ký    : {doc.signer_info.full_name or '-'}",
    ]
    if doc.business is not None and doc.business.business_doc_type is not None:
        lines.append(f"  Nghiệp vụ   : BussinessDocType {doc.business.business_doc_type}")
    for r in doc.response_for:
        lines.append(f"  Trả lời     : {r.document_id or '-'}")
    lines.append(f"  Attachments : {len(doc.attachments)}")
    for a in doc.attachments:
        content = "no content" if a.data is None else f"{a.size} bytes, sha256 {a.sha256}"
        lines.append(f"    - {a.name} ({a.content_type}, {content}, {a.packaging})")
    if doc.unknown:
        lines.append(f"  Unknown elements kept: {len(doc.unknown)}")
    return "\n".join(lines)


def _status_summary(status: Status) -> str:
    code = status.status_code or "-"
    lines = [
        "Thông điệp trạng thái (status)",
        f"  Status      : {code} {status_label(code)}",
        f"  From        : {_org(status.from_)}",
        *[f"  For         : {r.document_id or '-'} ({r.organ_id or '-'})" for r in status.response_for],
        f"  Description : {status.description or '-'}",
        f"  Time        : {status.timestamp.isoformat() if status.timestamp else '-'}",
    ]
    if status.staff_info is not None:
        lines.append(f"  Staff       : {status.staff_info.staff or '-'} ({status.staff_info.department or '-'})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- build


@click.command("build")
@click.option("--json", "json_file", required=True, type=_file_arg, help="The document JSON.")
@click.option("--attach", "attachments", multiple=True, type=_file_arg, help="A file to attach (repeatable).")
@click.option(
    "--packaging",
    type=click.Choice(["zip", "plain"]),
    default="zip",
    show_default=True,
    help="How attached files travel: a one-entry ZIP as the VNPT library sends, or as they are.",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_non_empty_path)
def build_cmd(json_file: Path, attachments: tuple[Path, ...], packaging: str, output: Path) -> None:
    """Build an edXML file from the document JSON and the files to attach.

    The result is read back and validated before it is moved into place, so a file that
    appears at OUTPUT is complete and valid.
    """
    try:
        data = json.loads(json_file.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(f"{json_file}: not valid JSON: {exc}")
    except RecursionError:
        _fail(f"{json_file}: not valid JSON: it nests too deeply (arrays or objects inside one another)")
    try:
        message = document_from_json(data, list(attachments), packaging)
    except (JsonFormError, ExtractError) as exc:
        _fail(f"{json_file}: {exc}")
    except RecursionError:
        _fail(f"{json_file}: the JSON nests too deeply to be read as a document")
    created = make_folder(output.parent)
    # A short name in the same folder (so the final rename stays on one file system): one
    # derived from the output's could pass the 255-byte limit on names.
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".tmp", dir=output.parent)
    tmp, moved = Path(tmp_name), False
    try:
        with os.fdopen(fd, "wb") as fh:
            build(message, fh)
        with parse(tmp, source_name=str(output)) as check:
            problems = check.report.problems
        if not any(p.severity == "error" for p in problems):
            os.replace(tmp, output)
            moved = True
    except (BuildError, EdxmlError) as exc:
        problems = exc.problems if isinstance(exc, EdxmlError) else []
        reasons = "; ".join(_built_problem(p, data) for p in problems) or str(exc)
        _fail(f"{json_file}: cannot build: {reasons}")
    finally:
        if not moved:  # whatever went wrong, no temporary file (nor folder made for it) is left behind
            tmp.unlink(missing_ok=True)
            remove_folders(created)
    if any(p.severity == "error" for p in problems):
        click.echo(f"{json_file}: the document is not valid edXML:", err=True)
        for problem in problems:
            click.echo(f"  {_built_problem(problem, data)}", err=True)
        sys.exit(EXIT_INVALID)
    _echo_problems(problems)
    click.echo(f"{output}: built {message.kind} {getattr(message, 'document_id', '') or ''}".rstrip())


def _built_problem(problem: Problem, data: object) -> str:
    """A problem of the edXML built from the JSON, placed by the JSON key its value came
    from: the output file was never written, so a line of it would point nowhere."""
    key = json_key(problem.path, data) if problem.path else None
    where = key or (f"edXML {problem.path}" if problem.path else "")
    return f"{where}: {problem.severity}: {problem.message}" if where else f"{problem.severity}: {problem.message}"


# How edXML elements map to keys of the document JSON (schemas/document.schema.json).
_JSON_FRAME = {"edXML", "edXMLEnvelope", "edXMLHeader", "MessageHeader", "edXMLBody", "TraceHeaderList"}
_JSON_LISTS = {  # element -> the key of the list whose items its children are
    "ToPlaces": "to_places",
    "Appendixes": "appendixes",
    "ReceiverList": "receivers",
    "ReplacementInfoList": "replacement_info",
    "OrganIdList": "organ_ids",
    "edXMLManifest": "manifest",
    "AttachmentEncoded": "attachments",
}
_JSON_ITEMS = {"To": "to", "ResponseFor": "response_for", "TraceHeader": "trace_headers"}  # one item each
_JSON_NAMES: dict = {  # where the key is not the element's name in snake_case
    "From": "from",
    "PromulgationInfo": "promulgation",
    ("PromulgationInfo", "PromulgationDate"): "date",
    ("Code", "CodeNumber"): "number",
    ("Code", "CodeNotation"): "notation",
    ("DocumentType", "TypeName"): "name",
    ("Attachment", "AttachmentName"): "name",
}


def json_key(path: str, data: object) -> str | None:
    """The key of ``data`` (the document JSON) that an edXML element path was built from,
    e.g. ``/edXML/.../MessageHeader/To[2]/OrganId`` -> ``to[1].organ_id``; None when the
    element comes from no key that ``data`` has (the frame, a manifest built for the files)."""
    key, node, parent = "", data, ""
    for step in filter(None, path.split("/")):
        name, _, rest = step.partition("[")
        if name in _JSON_FRAME:
            parent = name
            continue
        index = int(rest.rstrip("]")) - 1 if rest.rstrip("]").isdigit() else 0
        if parent in _JSON_LISTS:
            field, item = None, True
        else:
            field = (_JSON_NAMES.get((parent, name)) or _JSON_NAMES.get(name) or _JSON_LISTS.get(name)
                     or _JSON_ITEMS.get(name) or _snake(name))
            item = name in _JSON_ITEMS
        if field is not None:
            if not isinstance(node, dict) or field not in node:
                return None
            node, key = node[field], f"{key}.{field}" if key else field
        if item:
            if not isinstance(node, list) or not 0 <= index < len(node):
                return None
            node, key = node[index], f"{key}[{index}]"
        parent = name
    return key or None


def _snake(name: str) -> str:
    """``OrganizationInCharge`` -> ``organization_in_charge`` (the standard's ``Bussiness``
    spelling is the JSON's ``business``)."""
    name = name.replace("Bussiness", "Business")
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(EXIT_INVALID)


# --------------------------------------------------------------------------- extract


@click.command("extract")
@click.argument("file", type=_file_arg)
@click.option("-d", "--dir", "directory", required=True, type=click.Path(file_okay=False),
              callback=_non_empty_path)
def extract_cmd(file: Path, directory: Path) -> None:
    """Write metadata.json and the decoded attachments (under their safe names) into DIR."""
    parsed = _read(file)
    if parsed is None:
        sys.exit(EXIT_INVALID)
    with parsed:
        errors = parsed.report.errors
        if errors:
            click.echo(f"{file}: not extracted, the document is invalid:", err=True)
            _echo_problems(parsed.report.problems)
            sys.exit(EXIT_INVALID)
        try:
            written = extract_to(parsed.message, directory)
        except ExtractError as exc:
            _fail(f"{file}: {exc}")
        _echo_problems(parsed.report.warnings)
    for path in written:
        click.echo(str(path))


__all__ = ["validate_cmd", "inspect_cmd", "build_cmd", "extract_cmd", "summary", "to_json"]
