"""parse_document: one tiny file per supported format, and each refusal with its reason."""

from __future__ import annotations

import io
import json

import pytest

from llamaeval.engine import SUPPORTED_EXTENSIONS, ParseError, parse_document


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF whose text layer holds ``text`` (valid xref offsets)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n".encode() + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def blank_pdf() -> bytes:
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(width=200, height=200)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def test_txt_keeps_text_and_normalises_whitespace():
    doc = parse_document("Hello   wörld\r\n\r\n\r\n\r\nsecond  line\n".encode(), "a.txt")
    assert doc.text == "Hello wörld\n\nsecond line"
    assert doc.title == "Hello wörld"


def test_txt_title_is_a_short_first_line_before_a_blank_line():
    doc = parse_document(b"Shock waves in nozzles\n\nThe flow was measured.", "d.txt")
    assert doc.title == "Shock waves in nozzles"
    assert doc.text == "Shock waves in nozzles\n\nThe flow was measured."  # the title stays in the text
    assert parse_document(b"one paragraph\nwithout a blank line", "d.txt").title is None
    assert parse_document(("x" * 300 + "\n\nbody").encode(), "d.txt").title is None
    assert parse_document(b"only a title\n\n", "d.txt").title is None


def test_txt_utf16_with_bom():
    assert parse_document("héllo".encode("utf-16"), "a.txt").text == "héllo"


def test_markdown_title_is_first_heading():
    doc = parse_document(b"intro\n\n## Wind tunnels\n\nbody text", "n.md")
    assert doc.title == "Wind tunnels"
    assert "body text" in doc.text


def test_html_drops_scripts_and_takes_title():
    html = b"<html><head><title>Page T</title><style>p{}</style></head><body><h1>Head</h1>" \
           b"<script>var x = 1;</script><p>Visible <b>words</b></p></body></html>"
    doc = parse_document(html, "p.HTML")
    assert doc.title == "Page T"
    assert "Visible" in doc.text and "words" in doc.text
    assert "var x" not in doc.text and "p{}" not in doc.text


def test_html_title_falls_back_to_h1():
    assert parse_document(b"<h1>Only heading</h1><p>x y</p>", "p.htm").title == "Only heading"


def test_pdf_text_layer():
    doc = parse_document(make_pdf("Boundary layer transition"), "paper.pdf")
    assert "Boundary layer transition" in doc.text


def test_pdf_without_text_layer_is_refused():
    with pytest.raises(ParseError, match="no text layer"):
        parse_document(blank_pdf(), "scan.pdf")


def test_corrupt_pdf_is_refused():
    with pytest.raises(ParseError, match="PDF"):
        parse_document(b"%PDF-1.4 garbage garbage", "x.pdf")


def test_json_extracts_strings_and_title():
    data = {"title": "Shock waves", "body": "Long text about shocks.\nMore.", "tags": ["aero", "flow"],
            "year": 1962, "nested": {"note": "inner value"}}
    doc = parse_document(json.dumps(data).encode(), "d.json")
    assert doc.title == "Shock waves"
    assert "Long text about shocks." in doc.text
    assert "tags: aero" in doc.text and "year: 1962" in doc.text and "note: inner value" in doc.text
    assert "Shock waves" not in doc.text  # the title is not repeated in the body


def test_invalid_json_reason():
    with pytest.raises(ParseError, match="not valid JSON"):
        parse_document(b"{oops", "d.json")


def test_jsonl_csv_tsv_xml():
    assert "alpha" in parse_document(b'{"text": "alpha"}\n{"text": "beta"}\n', "r.jsonl").text
    csv_doc = parse_document(b"name,city\nAda,London\nAlan,Wilmslow\n", "t.csv")
    assert csv_doc.text.splitlines() == ["name: Ada; city: London", "name: Alan; city: Wilmslow"]
    assert parse_document(b"a\tb\n1\t2\n", "t.tsv").text == "a: 1; b: 2"
    xml = parse_document(b"<doc><title>X T</title><p>para one</p><p>two</p></doc>", "x.xml")
    assert xml.title == "X T" and "para one" in xml.text


def test_xml_entities_refused():
    with pytest.raises(ParseError, match="entity"):
        parse_document(b'<!DOCTYPE d [<!ENTITY a "aaaa">]><d>&a;</d>', "x.xml")


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (b"hello", "a.exe", "unsupported file type .exe"),
        (b"hello", "noext", "unsupported file type (no extension)"),
        (b"caf\xe9 au lait", "a.txt", "not valid UTF-8"),
        (b"   \n\t ", "a.txt", "file is empty"),
        (b"<html><script>x()</script></html>", "a.html", "no text"),
        (b"abc\x00def", "a.md", "binary"),
    ],
)
def test_refusals_have_reasons(data, name, reason):
    with pytest.raises(ParseError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_document(data, name)


def test_supported_extensions_listed():
    assert {".txt", ".md", ".html", ".htm", ".pdf", ".json"} <= SUPPORTED_EXTENSIONS
    from llamaeval import LlamaEvalError

    assert issubclass(ParseError, ValueError) and issubclass(ParseError, LlamaEvalError)
