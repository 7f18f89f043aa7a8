//! Generates a corpus of real and broken documents (nothing binary is committed): one
//! good file per format, and the bad input nightly intake meets. Each file comes with
//! what `classify` must make of it.

use std::fs;
use std::io::Write;
use std::path::Path;

/// What a file must give: records (id suffix, extractor or the words its error contains).
pub struct Expected {
    pub id_suffix: String,
    pub outcome: Outcome,
}

pub enum Outcome {
    /// Read by this extractor; the text contains this word.
    Read { extractor: &'static str, contains: &'static str },
    /// An error record whose message contains this.
    Error(&'static str),
    /// Either (an unreadable file is readable for root).
    Either,
}

fn read(id: &str, extractor: &'static str, contains: &'static str) -> Expected {
    Expected { id_suffix: id.into(), outcome: Outcome::Read { extractor, contains } }
}

fn error(id: &str, message: &'static str) -> Expected {
    Expected { id_suffix: id.into(), outcome: Outcome::Error(message) }
}

pub const BRIEF: &str =
    "Sehr geehrte Frau Müller, Ihr Antrag auf Aufenthaltserlaubnis vom 3. März wurde in Köln geprüft.";

/// A PDF with one page: with `text` as its text layer, or with no text at all (a scan).
pub fn pdf(text: Option<&str>) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
    let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
    let operations = match text {
        Some(text) => vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("Td", vec![50.into(), 700.into()]),
            Operation::new("Tj", vec![Object::string_literal(text)]),
            Operation::new("ET", vec![]),
        ],
        None => vec![],
    };
    let content_id = doc.add_object(Stream::new(dictionary! {}, Content { operations }.encode().unwrap()));
    let page_id = doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content_id});
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1, "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog_id);
    if text == Some("encrypted") {
        // A standard security handler whose password is not empty: nobody here knows it.
        let encrypt_id = doc.add_object(dictionary! {
            "Filter" => "Standard", "V" => 1, "R" => 2, "P" => -4,
            "O" => Object::string_literal(vec![7u8; 32]), "U" => Object::string_literal(vec![9u8; 32]),
        });
        doc.trailer.set("Encrypt", encrypt_id);
        doc.trailer.set("ID", vec![Object::string_literal(vec![1u8; 16]), Object::string_literal(vec![1u8; 16])]);
    }
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

/// A ZIP container with these members, deflated.
pub fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in members {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    out.into_inner()
}

pub fn docx(paragraphs: &[&str]) -> Vec<u8> {
    let body: String = paragraphs.iter().map(|p| format!("<w:p><w:r><w:t>{p}</w:t></w:r></w:p>")).collect();
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    zip(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", document.as_bytes())])
}

pub fn odt(paragraphs: &[&str]) -> Vec<u8> {
    let body: String = paragraphs.iter().map(|p| format!("<text:p>{p}</text:p>")).collect();
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>{body}</office:text></office:body></office:document-content>"#
    );
    zip(&[("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", content.as_bytes())])
}

/// An e-mail with a text body and two attachments: an RTF letter and a photo.
pub fn eml() -> Vec<u8> {
    use base64_encode as b64;
    let rtf = br"{\rtf1\ansi\ansicpg1252 Widerspruch gegen den Bescheid aus M\'fcnchen.\par}";
    format!(
        "From: buerger@example.org\r\nTo: poststelle@example.org\r\nSubject: =?utf-8?q?Widerspruch_Aktenzeichen_4711?=\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Guten Tag, anbei mein Widerspruch aus Köln.\r\n--XX\r\nContent-Type: application/rtf; name=\"widerspruch.rtf\"\r\n\
         Content-Disposition: attachment; filename=\"widerspruch.rtf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX\r\n\
         Content-Type: image/jpeg; name=\"foto.jpg\"\r\nContent-Disposition: attachment; filename=\"foto.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        b64(rtf),
        b64(&[0xff, 0xd8, 0xff, 0xe0, 0, 16])
    )
    .into_bytes()
}

/// A mail that forwards [`eml`] as an attachment (`message/rfc822`).
pub fn forwarded_eml() -> Vec<u8> {
    let mut mail =
        "From: poststelle@example.org\r\nTo: referat@example.org\r\nSubject: WG: Widerspruch\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"YY\"\r\n\r\n--YY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Zur Bearbeitung weitergeleitet.\r\n--YY\r\nContent-Type: message/rfc822\r\n\
         Content-Disposition: attachment; filename=\"widerspruch.eml\"\r\n\r\n"
            .as_bytes()
            .to_vec();
    mail.extend_from_slice(&eml());
    mail.extend_from_slice(b"\r\n--YY--\r\n");
    mail
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// Writes the corpus into `dir` (a 200 MB file among them); returns what each file must give.
pub fn write_corpus(dir: &Path) -> Vec<Expected> {
    let file = |name: &str, bytes: &[u8]| fs::write(dir.join(name), bytes).unwrap();
    let mut expected = Vec::new();

    file("good.txt", BRIEF.as_bytes());
    expected.push(read("good.txt", "text", "Aufenthaltserlaubnis"));
    file("good.html", format!("<html><head><style>body{{}}</style><script>alert(1)</script></head><body><h1>Bescheid</h1><p>{BRIEF}</p></body></html>").as_bytes());
    expected.push(read("good.html", "html", "Aufenthaltserlaubnis"));
    file("good.pdf", &pdf(Some("Bescheid des Bundesamtes in Nuernberg")));
    expected.push(read("good.pdf", "pdf", "Bundesamtes"));
    file("good.docx", &docx(&["Bescheid", BRIEF]));
    expected.push(read("good.docx", "docx", "Aufenthaltserlaubnis"));
    file("good.odt", &odt(&["Bescheid", BRIEF]));
    expected.push(read("good.odt", "odt", "Aufenthaltserlaubnis"));
    file("good.rtf", br"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}\f0 Antrag auf Einb\'fcrgerung\par}");
    expected.push(read("good.rtf", "rtf", "Einbürgerung"));
    file("mail.eml", &eml());
    expected.push(read("mail.eml", "eml", "Widerspruch Aktenzeichen 4711"));
    expected.push(read("mail.eml#1:widerspruch.rtf", "rtf", "München"));
    file("forwarded.eml", &forwarded_eml());
    expected.push(read("forwarded.eml", "eml", "Zur Bearbeitung weitergeleitet"));
    expected.push(read("forwarded.eml#1:widerspruch.eml", "eml", "Widerspruch Aktenzeichen 4711"));
    expected.push(read("forwarded.eml#1:widerspruch.eml#1:widerspruch.rtf", "rtf", "München"));
    file("latin1.txt", "Straße in Köln, Größe".encode_latin1().as_slice());
    expected.push(read("latin1.txt", "text", "Straße"));
    let mut mixed = "Grüße aus Köln. ".as_bytes().to_vec();
    mixed.extend_from_slice(&"Straße".encode_latin1());
    file("mixed-encodings.txt", &mixed);
    expected.push(read("mixed-encodings.txt", "text", "Köln"));

    file("empty.txt", b"");
    expected.push(error("empty.txt", "empty document"));
    file("blank.txt", b"  \n\t \n");
    expected.push(error("blank.txt", "empty document"));
    file("binary.txt", &(0..4096u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>());
    expected.push(error("binary.txt", "binary data"));
    file("nul-bytes.txt", b"Antrag\0\0\0vom Amt");
    expected.push(error("nul-bytes.txt", "NUL bytes"));
    file("empty.pdf", b"");
    expected.push(error("empty.pdf", "not a readable PDF"));
    let good_pdf = pdf(Some("Bescheid des Bundesamtes"));
    file("truncated.pdf", &good_pdf[..good_pdf.len() / 2]);
    expected.push(error("truncated.pdf", "PDF"));
    file("scan.pdf", &pdf(None));
    expected.push(error("scan.pdf", "scanned PDF without a text layer"));
    file("encrypted.pdf", &pdf(Some("encrypted")));
    expected.push(error("encrypted.pdf", "encrypted PDF"));
    file("corrupt.docx", b"PK\x03\x04 this is not a zip container at all");
    expected.push(error("corrupt.docx", "corrupt ZIP container"));
    file("no-body.odt", &zip(&[("mimetype", b"application/vnd.oasis.opendocument.text")]));
    expected.push(error("no-body.odt", "no content.xml"));
    // 300 MB of markup deflated to a few hundred KB.
    let bomb_xml = vec![b' '; 300 << 20];
    file("bomb.docx", &zip(&[("word/document.xml", &bomb_xml)]));
    expected.push(error("bomb.docx", "ZIP bomb"));
    file("broken.rtf", b"Das ist kein RTF");
    expected.push(error("broken.rtf", "not an RTF file"));
    file("scripts-only.html", b"<html><script>var geheim = 1;</script><style>p{}</style></html>");
    expected.push(error("scripts-only.html", "empty document"));
    // One 200 MB line: over the size limit, refused without reading it whole.
    let mut huge = fs::File::create(dir.join("huge-line.txt")).unwrap();
    let block = vec![b'a'; 1 << 20];
    for _ in 0..200 {
        huge.write_all(&block).unwrap();
    }
    expected.push(error("huge-line.txt", "larger than"));
    file(
        "rows.jsonl",
        b"{\"id\": \"row-ok\", \"text\": \"Antrag aus Bonn.\"}\n{\"id\": \"broken\", \"text\": \n{\"text\": 5}\n",
    );
    expected.push(read("row-ok", "jsonl", "Bonn"));
    expected.push(error("rows.jsonl:2", "malformed JSON"));
    expected.push(error("rows.jsonl:3", "not a string"));
    file("ragged.csv", "id,text\nc1,Antrag aus Trier\nc2,zu,viele,felder\n".as_bytes());
    expected.push(read("c1", "csv", "Trier"));
    expected.push(error("ragged.csv:3", "row has 4 fields"));
    file("photo.png", b"\x89PNG\r\n\x1a\n");
    expected.push(error("photo.png", "unsupported file type"));
    file("unreadable.txt", BRIEF.as_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.join("unreadable.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    }
    expected.push(Expected { id_suffix: "unreadable.txt".into(), outcome: Outcome::Either });
    #[cfg(unix)]
    {
        fs::create_dir(dir.join("loop")).unwrap();
        std::os::unix::fs::symlink("..", dir.join("loop/up")).unwrap();
        expected.push(error("loop/up", "symbolic link loop"));
    }
    expected
}

trait Latin1 {
    fn encode_latin1(&self) -> Vec<u8>;
}

impl Latin1 for str {
    fn encode_latin1(&self) -> Vec<u8> {
        self.chars().map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character")).collect()
    }
}
