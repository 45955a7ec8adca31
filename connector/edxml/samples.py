"""Sample documents with Vietnamese content, for the demo, tests and benchmarks."""

from __future__ import annotations

from datetime import date

from .files import default_document_id
from .model import (
    Attachment,
    Business,
    BytesData,
    Code,
    DocumentType,
    Edoc,
    Organization,
    OtherInfo,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    Status,
    TraceHeader,
    now_vn,
)

AGENCIES: dict[str, Organization] = {
    "000.00.00.H16": Organization(
        organ_id="000.00.00.H16",
        organization_in_charge="UBND tỉnh Đắk Nông",
        organ_name="UBND tỉnh Đắk Nông",
        organ_add="Đường 23/3, phường Nghĩa Đức, thành phố Gia Nghĩa, tỉnh Đắk Nông",
        email="ubnd@daknong.gov.vn",
        telephone="0261 3544 130",
        fax="0261 3544 131",
        website="daknong.gov.vn",
    ),
    "000.00.00.G22": Organization(
        organ_id="000.00.00.G22",
        organization_in_charge="Văn phòng Chính phủ",
        organ_name="Văn phòng Chính phủ",
        organ_add="Số 1 Hoàng Hoa Thám, Quận Ba Đình, Hà Nội",
        email="vpcp@chinhphu.vn",
        telephone="080 43100",
        fax="080 44130",
        website="vpcp.chinhphu.vn",
    ),
}


def make_pdf(title: str, lines: list[str] | None = None) -> bytes:
    """A small, valid one-page PDF (ASCII text; a stand-in for the signed PDF clerks send)."""
    body = [title, *(lines or [])]
    text_ops = ["BT", "/F1 14 Tf", "72 760 Td", "18 TL"]
    for line in body:
        safe = line.encode("ascii", "replace").decode().replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        text_ops.append(f"({safe}) Tj T*")
    text_ops.append("ET")
    stream = "\n".join(text_ops).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def sample_edoc(sender: str = "000.00.00.H16", recipient: str = "000.00.00.G22", number: int = 1) -> Edoc:
    """A công văn from ``sender`` to ``recipient`` with one PDF attached."""
    today = now_vn()
    notation = "UBND-VP" if sender.endswith("H16") else "VPCP-TTĐT"
    pdf = make_pdf(f"Cong van so {number}/{notation}", ["Ve viec ket noi, lien thong van ban dien tu"])
    doc = Edoc(
        from_=AGENCIES.get(sender, Organization(organ_id=sender, organ_name=sender)),
        to=[AGENCIES.get(recipient, Organization(organ_id=recipient, organ_name=recipient))],
        code=Code(str(number), notation),
        promulgation=PromulgationInfo("Gia Nghĩa" if sender.endswith("H16") else "Hà Nội", today.date()),
        document_type=DocumentType("1", "0", "Công văn"),
        subject=f"V/v kết nối, liên thông phần mềm quản lý văn bản (số {number})",
        content="Đề nghị các cơ quan, đơn vị phối hợp triển khai kết nối trục liên thông văn bản quốc gia.",
        signer_info=SignerInfo("KT. CHỦ TỊCH", "Phó Chủ tịch", "Nguyễn Văn An"),
        due_date=date(today.year, 12, 31),
        other_info=OtherInfo(
            priority=1,
            sphere_of_promulgation="Liên thông văn bản quốc gia",
            typer_notation="NVA",
            promulgation_amount=2,
            page_amount=1,
            direction=False,
            appendixes=["Danh sách cơ quan, đơn vị"],
        ),
        steering_type=0,
        to_places=["Như trên", "Lưu: VT"],
        trace_headers=[TraceHeader(sender, today)],
        business=Business(
            business_doc_type=0,
            business_doc_reason="Văn bản điện tử mới",
            paper=0,
            staff_info=StaffInfo("Văn thư", "Trần Thị Bình", "vanthu@example.gov.vn", "0912000001"),
        ),
        attachments=[
            Attachment(
                content_id=f"doc{number}",
                name=f"cong-van-{number}.pdf",
                content_type="application/pdf",
                description="Văn bản ký số",
                packaging="zip",
                data=BytesData(pdf),
            )
        ],
    )
    doc.document_id = default_document_id(doc)
    return doc.with_manifest()


def sample_status(answering: Edoc, code: str = "01", by: str | None = None) -> Status:
    """The status message ``by`` (default: the first recipient) sends about ``answering``."""
    sender = by or (answering.to[0].organ_id if answering.to else "000.00.00.G22")
    descriptions = {"01": "Đã đến", "02": "Từ chối tiếp nhận", "03": "Đã tiếp nhận", "06": "Hoàn thành"}
    return Status(
        from_=AGENCIES.get(sender, Organization(organ_id=sender)),
        response_for=[
            ResponseFor(
                organ_id=answering.from_.organ_id,
                code="/".join(x for x in (answering.code.number, answering.code.notation) if x),
                promulgation_date=answering.promulgation.date,
                document_id=answering.document_id,
            )
        ],
        staff_info=StaffInfo("Văn thư", "Lê Văn Cường", "vanthu@example.gov.vn", "0912000002"),
        status_code=code,
        description=descriptions.get(code, "Cập nhật trạng thái"),
        timestamp=now_vn(),
    )
