"""Small files that are expensive to read, built by hand (for the document-worker tests)."""

from __future__ import annotations

import zlib

from tests.pdf import assemble_pdf


def shared_stream_pdf(pages: int = 8, stream_bytes: int = 500_000) -> bytes:
    """A few-kB PDF whose one FlateDecode content stream (``stream_bytes`` of text operators,
    highly compressible) is the /Contents of every page: each page decodes and extracts it."""
    op = b"BT /F1 12 Tf 72 720 Td (llama alpaca vicuna) Tj ET\n"
    content = op * (stream_bytes // len(op))
    packed = zlib.compress(content, 9)
    page_ids = [6 + i for i in range(pages)]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{i} 0 R".encode() for i in page_ids)
        + f"] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length "
        + str(len(packed)).encode()
        + b" /Filter /FlateDecode >>\nstream\n"
        + packed
        + b"\nendstream",
        b"<< /Font << /F1 3 0 R >> >>",
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources 5 0 R /Contents 4 0 R >>"
    ] * pages
    return assemble_pdf(objects)


def nested_json(depth: int = 2_000) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_pdf(depth: int = 5_000) -> bytes:
    """A one-page PDF whose content stream opens ``depth`` nested arrays (and a dictionary
    object nested as deep), which a recursive parser cannot read."""
    content = b"BT /F1 12 Tf 72 720 Td " + b"[" * depth + b"(x)" + b"]" * depth + b" TJ ET"
    nested = b"<< /A " * depth + b"1" + b" >>" * depth
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R /Deep 6 0 R >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        nested,
    ]
    return assemble_pdf(objects)
