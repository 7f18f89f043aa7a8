"""Seed inputs for the fuzz targets (written into fuzz/corpus/, which git ignores): one
small valid document per format, so that the fuzzer starts inside the parsers.
The first byte of an `extract` input picks the extractor (the order of KINDS in
fuzz_targets/extract.rs); the first byte of a `rows` input picks JSONL, CSV or TSV."""
import io
import os
import sys
import zipfile

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
KINDS = ["text", "html", "pdf", "docx", "odt", "rtf", "eml"]


def pdf(text):
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 595 842] >>",
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        None,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    stream = b"BT /F1 12 Tf 50 700 Td (" + text + b") Tj ET"
    objects[3] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def zipped(members):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return out.getvalue()


documents = {
    "text": "Sehr geehrte Frau Müller, Ihr Antrag aus Köln.".encode("utf-8"),
    "html": b"<html><head><script>x()</script></head><body><h1>Bescheid</h1><p hidden>geheim</p><p>Antrag &amp; Widerspruch</p></body></html>",
    "pdf": pdf(b"Bescheid des Bundesamtes"),
    "docx": zipped([("word/document.xml", '<w:document><w:body><w:p><w:r><w:t>Antrag &amp; Bescheid</w:t><w:tab/></w:r></w:p></w:body></w:document>')]),
    "odt": zipped([("mimetype", "application/vnd.oasis.opendocument.text"), ("content.xml", "<office:document-content><office:body><office:text><text:p>Erste<text:s/>Zeile</text:p></office:text></office:body></office:document-content>")]),
    "rtf": rb"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}\f0 Stra\'dfe \u8364? \par Zeile\tab 2}",
    "eml": b"Subject: Widerspruch\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nGuten Tag\r\n--B\r\nContent-Type: application/rtf; name=a.rtf\r\nContent-Disposition: attachment; filename=a.rtf\r\n\r\n{\\rtf1 Hallo}\r\n--B--\r\n",
}
os.makedirs(os.path.join(root, "extract"), exist_ok=True)
for i, kind in enumerate(KINDS):
    with open(os.path.join(root, "extract", kind), "wb") as f:
        f.write(bytes([i]) + documents[kind])
os.makedirs(os.path.join(root, "decode"), exist_ok=True)
for name, data in [("utf8", documents["text"]), ("latin1", "Straße in Köln".encode("latin-1")),
                   ("utf16", "\ufeffAntrag".encode("utf-16-le"))]:
    with open(os.path.join(root, "decode", name), "wb") as f:
        f.write(data)
os.makedirs(os.path.join(root, "rows"), exist_ok=True)
rows = {"jsonl": b'{"id": "a", "text": "Antrag"}\n{bad}\n{"text": 5}\n', "csv": b'id,text\nr1,"Das Gericht, in Leipzig."\nr2,zu,viele\n',
        "tsv": b"id\ttext\nr1\tAntrag\n"}
for i, (name, data) in enumerate(rows.items()):
    with open(os.path.join(root, "rows", name), "wb") as f:
        f.write(bytes([i]) + data)
os.makedirs(os.path.join(root, "predictions"), exist_ok=True)
with open(os.path.join(root, "predictions", "records"), "wb") as f:
    f.write(b'{"id": "d1", "label": "asyl", "score": 0.9, "scores": [{"label": "asyl", "score": 0.9}]}\n{"id": "d2", "tags": ["B-PER", "O"]}\n')
