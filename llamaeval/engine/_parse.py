"""Turn an uploaded file's bytes into plain text (and a title when the format has one)."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from llamaeval._errors import LlamaEvalError

__all__ = ["SUPPORTED_EXTENSIONS", "ParseError", "ParsedDocument", "parse_document"]

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".json", ".jsonl", ".csv", ".tsv", ".xml"}
)

# JSON keys whose string value is treated as the document's title.
_TITLE_KEYS = ("title", "name", "headline", "subject")
_MAX_TITLE_CHARS = 300


class ParseError(LlamaEvalError, ValueError):
    """A file could not be turned into text; ``str(err)`` is the human reason."""


@dataclass
class ParsedDocument:
    """Plain text of one file, and its title when the format carries one (else None)."""

    text: str
    title: str | None = None


def parse_document(data: bytes, file_name: str) -> ParsedDocument:
    """Extract the text of ``data`` according to the extension of ``file_name``.

    Raises ParseError with a human reason (unsupported type, not valid UTF-8,
    PDF has no text layer, empty document, ...).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data must be bytes")
    data = bytes(data)
    ext = PurePath(file_name or "").suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = ext or "(no extension)"
        raise ParseError(
            f"unsupported file type {shown}; supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))}"
        )
    if not data.strip():
        raise ParseError("file is empty")
    if ext == ".pdf":
        doc = _parse_pdf(data)
    else:
        text = _decode(data)
        if ext in (".html", ".htm"):
            doc = _parse_html(text)
        elif ext in (".md", ".markdown"):
            doc = _parse_markdown(text)
        elif ext == ".json":
            doc = _parse_json(text)
        elif ext == ".jsonl":
            doc = _parse_jsonl(text)
        elif ext in (".csv", ".tsv"):
            doc = _parse_csv(text, "\t" if ext == ".tsv" else ",")
        elif ext == ".xml":
            doc = _parse_xml(text)
        else:
            doc = ParsedDocument(text=text.strip(), title=_plain_title(text))
    text = _normalise(doc.text)
    if not text:
        raise ParseError("document has no text")
    title = _normalise(doc.title or "")[:_MAX_TITLE_CHARS] or None
    return ParsedDocument(text=text, title=title)


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ParseError(f"not valid UTF-16 (byte {exc.start})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not valid UTF-8 (invalid byte at offset {exc.start})") from None
    if "\x00" in text:
        raise ParseError("file contains NUL bytes; it looks binary, not text")
    return text


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n\s*\n\s*\n+")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


_TITLE_LINE = re.compile(r"\A[ \t]*([^\n]{1,200}?)[ \t]*\r?\n[ \t]*\r?\n\s*\S")


def _plain_title(text: str) -> str | None:
    """A plain-text file's title: its first line, when that line is short (<= 200
    characters) and a blank line separates it from more text (e.g. "Title\n\nBody")."""
    match = _TITLE_LINE.match(text.lstrip("\ufeff\r\n"))
    return match.group(1).strip() or None if match else None


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _parse_markdown(text: str) -> ParsedDocument:
    match = _MD_HEADING.search(text)
    title = match.group(1).strip() if match else None
    if title is None:
        # YAML front matter "title: ..."
        fm = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
        if fm:
            t = re.search(r"^title:\s*(.+)$", fm.group(1), re.MULTILINE)
            title = t.group(1).strip().strip("\"'") if t else None
    return ParsedDocument(text=text, title=title)


def _parse_html(text: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    title = None
    if soup.title and soup.title.get_text(strip=True):
        title = soup.title.get_text(" ", strip=True)
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    if title is None:
        h1 = soup.find("h1")
        if h1 is not None and h1.get_text(strip=True):
            title = h1.get_text(" ", strip=True)
    body = soup.get_text("\n")
    return ParsedDocument(text=body, title=title)


def _parse_pdf(data: bytes) -> ParsedDocument:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception:  # noqa: BLE001 - any failure means we cannot read it
                raise ParseError("PDF is encrypted") from None
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = None
        try:
            meta = reader.metadata
            meta_title = str(meta.title) if meta is not None and meta.title else None
        except Exception:  # noqa: BLE001 - broken metadata is not fatal
            meta_title = None
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"not a readable PDF ({exc.__class__.__name__}: {exc})") from None
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on corrupt input
        raise ParseError(f"not a readable PDF ({exc.__class__.__name__})") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text.strip():
        raise ParseError("PDF has no text layer (scanned images need OCR, which is not supported)")
    return ParsedDocument(text=text, title=meta_title)


def _json_strings(value: Any, key: str | None, out: list[str]) -> None:
    if isinstance(value, str):
        if value.strip():
            out.append(f"{key}: {value}" if key and len(value) < 80 and "\n" not in value else value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _json_strings(v, str(k), out)
    elif isinstance(value, list):
        for v in value:
            _json_strings(v, key, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and key:
        out.append(f"{key}: {value}")


def _json_title(value: Any) -> str | None:
    if isinstance(value, dict):
        for k in _TITLE_KEYS:
            v = value.get(k)
            if isinstance(v, str) and v.strip():
                return v
    return None


def _parse_json(text: str) -> ParsedDocument:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    return _json_document(value)


def _json_document(value: Any) -> ParsedDocument:
    title = _json_title(value)
    parts: list[str] = []
    if isinstance(value, dict):
        # Long free-text fields (text, body, content, ...) first, without their key.
        for k, v in value.items():
            if k in _TITLE_KEYS and v == title:
                continue
            _json_strings(v, str(k), parts)
    else:
        _json_strings(value, None, parts)
    return ParsedDocument(text="\n".join(parts), title=title)


def _parse_jsonl(text: str) -> ParsedDocument:
    parts: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParseError(f"not valid JSON Lines (line {lineno}: {exc.msg})") from None
        doc = _json_document(value)
        parts.append("\n".join(p for p in (doc.title, doc.text) if p))
    return ParsedDocument(text="\n\n".join(parts), title=None)


def _parse_csv(text: str, delimiter: str) -> ParsedDocument:
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        raise ParseError(f"not valid CSV ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return ParsedDocument(text="", title=None)
    header, body = rows[0], rows[1:]
    if not body:
        return ParsedDocument(text=" | ".join(header), title=None)
    lines = []
    for row in body:
        cells = [f"{h.strip()}: {c.strip()}" if h.strip() else c.strip()
                 for h, c in zip(header, row) if c.strip()]
        lines.append("; ".join(cells))
    return ParsedDocument(text="\n".join(lines), title=None)


def _parse_xml(text: str) -> ParsedDocument:
    import xml.etree.ElementTree as ET

    if "<!ENTITY" in text:
        raise ParseError("XML with entity declarations is refused (entity expansion attacks)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ParseError(f"not well-formed XML ({exc})") from None
    title = None
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1].lower() if isinstance(el.tag, str) else ""
        if tag == "title" and el.text and el.text.strip():
            title = el.text.strip()
            break
    body = "\n".join(t.strip() for t in root.itertext() if t.strip())
    return ParsedDocument(text=body, title=title)
