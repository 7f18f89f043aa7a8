//! Text out of document formats: PDF (text layer), DOCX and ODT (ZIP containers of
//! XML), HTML (visible text), RTF and e-mail (subject and body; attachments become
//! documents of their own). Every extractor works on bytes already read within the size
//! limit, bounds what it unpacks, and turns every failure, panics of third-party parsers
//! included, into a message for the document's error record.
//!
//! Longer than most files (~500 lines) on purpose: the extractors share the limits, the
//! panic guard and the whitespace rules, and each is 40–80 lines; apart they would
//! scatter those shared rules over seven files.

use std::io::Read;

use quick_xml::events::Event;

use super::encoding::decode_text;

/// One document's text and how it was obtained.
#[derive(Clone, Debug, PartialEq)]
pub struct Extracted {
    pub text: String,
    pub encoding: &'static str,
    /// Which extractor read it: `text`, `pdf`, `docx`, `odt`, `html`, `rtf`, `eml`.
    pub extractor: &'static str,
}

/// A file inside a container (an e-mail's attachment): its name and bytes.
pub struct Attachment {
    pub name: String,
    pub bytes: Vec<u8>,
    /// An e-mail of its own (`message/rfc822`, a forwarded mail): `bytes` is the message.
    pub is_message: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Html,
    Pdf,
    Docx,
    Odt,
    Rtf,
    Eml,
}

impl Kind {
    /// The kind a file name's extension names.
    pub fn of(name: &str) -> Option<Kind> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "md" | "text" => Kind::Text,
            "html" | "htm" | "xhtml" => Kind::Html,
            "pdf" => Kind::Pdf,
            "docx" => Kind::Docx,
            "odt" => Kind::Odt,
            "rtf" => Kind::Rtf,
            "eml" => Kind::Eml,
            _ => return None,
        })
    }
}

impl Kind {
    /// The kind an HTTP Content-Type names (parameters such as `charset` ignored).
    pub fn of_media_type(content_type: &str) -> Option<Kind> {
        let media = content_type.split(';').next()?.trim().to_ascii_lowercase();
        Some(match media.as_str() {
            "text/plain" | "text/markdown" => Kind::Text,
            "text/html" | "application/xhtml+xml" => Kind::Html,
            "application/pdf" => Kind::Pdf,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Kind::Docx,
            "application/vnd.oasis.opendocument.text" => Kind::Odt,
            "application/rtf" | "text/rtf" => Kind::Rtf,
            "message/rfc822" => Kind::Eml,
            _ => return None,
        })
    }
}

/// Text of a single-document file. `max_text_bytes` bounds what a container may unpack.
pub fn extract(kind: Kind, bytes: &[u8], max_text_bytes: u64) -> Result<Extracted, String> {
    let extracted = |text: String, extractor| Extracted { text, encoding: "UTF-8", extractor };
    let result = match kind {
        Kind::Text => decode_text(bytes).map(|(text, encoding)| Extracted { text, encoding, extractor: "text" }),
        Kind::Html => {
            let (markup, encoding) = decode_text(bytes).map_err(|e| e.to_string())?;
            return non_empty(Extracted { text: html_text(&markup), encoding, extractor: "html" });
        }
        Kind::Pdf => return guarded("PDF", || pdf_text(bytes)).and_then(|t| non_empty(extracted(t, "pdf"))),
        Kind::Docx => {
            return zipped_xml(bytes, "word/document.xml", max_text_bytes, docx_text)
                .and_then(|t| non_empty(extracted(t, "docx")))
        }
        Kind::Odt => {
            return zipped_xml(bytes, "content.xml", max_text_bytes, odt_text)
                .and_then(|t| non_empty(extracted(t, "odt")))
        }
        Kind::Rtf => return rtf_text(bytes).and_then(|t| non_empty(extracted(t, "rtf"))),
        Kind::Eml => return email(bytes).and_then(|(text, _)| non_empty(extracted(text, "eml"))),
    };
    result.map_err(|e| e.to_string())
}

/// Refuses extracted text that is blank or holds NUL bytes.
pub fn non_empty(e: Extracted) -> Result<Extracted, String> {
    if e.text.trim().is_empty() {
        return Err(format!("empty document: the {} has no text", e.extractor.to_uppercase()));
    }
    if e.text.contains('\0') {
        return Err("the extracted text contains NUL bytes".into());
    }
    Ok(e)
}

thread_local! {
    /// Set while a third-party parser runs under [`guarded`].
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A third-party parser that panics on hostile input must not end the run: the panic
/// becomes the document's error (and prints nothing; other panics print as before).
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.get() {
                previous(info);
            }
        }));
    });
    // Guards nest (a file's reader around the PDF parser): the outer one stays in force.
    let outer = GUARDED.replace(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.set(outer);
    result.unwrap_or_else(|_| Err(format!("the {what} parser failed on this file (malformed {what})")))
}

/// Deeper page trees than this are taken for malformed (real ones have a few levels).
const MAX_PAGE_TREE_DEPTH: usize = 64;

fn pdf_text(bytes: &[u8]) -> Result<String, String> {
    let document =
        lopdf::Document::load_mem(bytes).map_err(|e| format!("not a readable PDF (truncated or corrupt?): {e}"))?;
    let pages = document.get_pages();
    // pdf-extract follows /Parent up the page tree without end when it has a cycle.
    for &page in pages.values() {
        let mut seen = vec![page];
        let mut node = page;
        while let Ok(parent) =
            document.get_dictionary(node).and_then(|d| d.get(b"Parent")).and_then(|p| p.as_reference())
        {
            if seen.contains(&parent) || seen.len() > MAX_PAGE_TREE_DEPTH {
                return Err("malformed PDF: its page tree loops back on itself".into());
            }
            seen.push(parent);
            node = parent;
        }
    }
    let pages = pages.len();
    let text = pdf_extract::extract_text_from_mem(bytes).map_err(|e| {
        if document.is_encrypted() {
            "encrypted PDF: it needs a password to be read".to_string()
        } else {
            format!("cannot extract the PDF's text: {e}")
        }
    })?;
    if text.trim().is_empty() {
        return Err(format!(
            "scanned PDF without a text layer ({pages} page{}): run OCR on it first",
            if pages == 1 { "" } else { "s" }
        ));
    }
    Ok(text)
}

/// Reads `member` of a ZIP container, at most `limit` bytes unpacked (a ZIP bomb stops
/// there), and turns its XML into text with `to_text`.
fn zipped_xml(
    bytes: &[u8],
    member: &str,
    max_text_bytes: u64,
    to_text: fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    // XML markup is several times the size of its text.
    let limit = max_text_bytes.saturating_mul(8);
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("corrupt ZIP container: {e}"))?;
    let mut entry = archive.by_name(member).map_err(|e| format!("corrupt container: no {member} ({e})"))?;
    if entry.encrypted() {
        return Err("encrypted document: it needs a password to be read".into());
    }
    if entry.size() > limit {
        return Err(format!("{member} unpacks to {} bytes, more than the limit of {limit} (ZIP bomb?)", entry.size()));
    }
    let mut xml = Vec::new();
    (&mut entry)
        .take(limit.saturating_add(1))
        .read_to_end(&mut xml)
        .map_err(|e| format!("corrupt ZIP container: {e}"))?;
    if xml.len() as u64 > limit {
        return Err(format!("{member} unpacks to more than {limit} bytes (ZIP bomb?)"));
    }
    let xml = String::from_utf8(xml).map_err(|_| format!("{member} is not UTF-8 XML"))?;
    to_text(&xml)
}

/// Walks XML events: `on_element(name, is_end)` may add text at element boundaries;
/// text inside `text_elements` (all text where that is empty) is kept.
fn xml_text(xml: &str, text_elements: &[&str], on_element: impl Fn(&str, bool, &mut String)) -> Result<String, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = String::new();
    let mut inside = 0usize;
    let keep = |name: &str| text_elements.contains(&name);
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))? {
            Event::Start(e) => {
                inside += usize::from(keep(e.name().as_ref()));
                on_element(e.name().as_ref(), false, &mut out);
            }
            Event::Empty(e) => on_element(e.name().as_ref(), false, &mut out),
            Event::End(e) => {
                inside -= usize::from(keep(e.name().as_ref()) && inside > 0);
                on_element(e.name().as_ref(), true, &mut out);
            }
            Event::Text(t) if inside > 0 || text_elements.is_empty() => out.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if inside > 0 || text_elements.is_empty() => match r.resolve_char_ref() {
                Ok(Some(c)) => out.push(c),
                _ => out.push_str(match r.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                }),
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

fn docx_text(xml: &str) -> Result<String, String> {
    xml_text(xml, &["w:t"], |name, end, out| match (name, end) {
        ("w:p", true) | ("w:br" | "w:cr", false) => out.push('\n'),
        ("w:tab", false) => out.push('\t'),
        _ => {}
    })
}

fn odt_text(xml: &str) -> Result<String, String> {
    xml_text(xml, &["office:text"], |name, end, out| match (name, end) {
        ("text:p" | "text:h", true) | ("text:line-break", false) => out.push('\n'),
        ("text:tab", false) => out.push('\t'),
        ("text:s", false) => out.push(' '),
        _ => {}
    })
}

/// Elements whose content is never shown.
const INVISIBLE: [&str; 8] = ["head", "script", "style", "noscript", "template", "svg", "iframe", "object"];
/// Elements after which the text breaks a line.
const BLOCKS: [&str; 22] = [
    "p",
    "div",
    "br",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "dd",
    "dt",
];

/// The visible text of an HTML page: no scripts, styles, hidden elements or markup.
pub fn html_text(markup: &str) -> String {
    use scraper::node::Node;
    let document = scraper::Html::parse_document(markup);
    let mut out = String::new();
    let mut hidden_depth = 0usize;
    for edge in document.tree.root().traverse() {
        match edge {
            ego_tree::iter::Edge::Open(node) => match node.value() {
                Node::Element(e) if hidden_depth > 0 || is_hidden(e) => hidden_depth += 1,
                Node::Text(t) if hidden_depth == 0 => out.push_str(t),
                _ => {}
            },
            ego_tree::iter::Edge::Close(node) => {
                if let Node::Element(e) = node.value() {
                    if hidden_depth > 0 {
                        hidden_depth -= 1;
                    } else if BLOCKS.contains(&e.name()) {
                        out.push('\n');
                    }
                }
            }
        }
    }
    // Collapse the whitespace of the markup's layout; keep line breaks between blocks.
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_hidden(e: &scraper::node::Element) -> bool {
    let style = e.attr("style").unwrap_or("").replace(' ', "").to_ascii_lowercase();
    INVISIBLE.contains(&e.name())
        || e.attr("hidden").is_some()
        || e.attr("aria-hidden") == Some("true")
        || style.contains("display:none")
        || style.contains("visibility:hidden")
}

/// RTF groups whose content is not text of the document.
const RTF_SKIPPED: [&str; 12] = [
    "fonttbl",
    "colortbl",
    "stylesheet",
    "info",
    "pict",
    "header",
    "footer",
    "object",
    "themedata",
    "datastore",
    "xmlnstbl",
    "listtable",
];

/// The text of an RTF document: control words for paragraphs, tabs, hex and Unicode
/// escapes (`\'e4`, `\u228?`) in the document's ANSI code page; other destinations skipped.
fn rtf_text(bytes: &[u8]) -> Result<String, String> {
    if !bytes.starts_with(b"{\\rtf") {
        return Err("not an RTF file (it does not start with {\\rtf)".into());
    }
    let mut out = String::new();
    let mut codepage = encoding_rs::WINDOWS_1252;
    // Per group: skipped?, characters to skip after \u (\ucN).
    let mut stack: Vec<(bool, usize)> = vec![(false, 1)];
    let mut pending_bytes: Vec<u8> = Vec::new();
    let mut skip_chars = 0usize;
    let mut i = 0;
    let flush = |pending: &mut Vec<u8>, out: &mut String, cp: &'static encoding_rs::Encoding| {
        if !pending.is_empty() {
            out.push_str(&cp.decode_without_bom_handling(pending).0);
            pending.clear();
        }
    };
    while i < bytes.len() {
        let (skipped, uc) = *stack.last().expect("the outer group stays");
        match bytes[i] {
            b'{' => {
                stack.push((skipped, uc));
                i += 1;
            }
            b'}' => {
                if stack.len() > 1 {
                    stack.pop();
                }
                i += 1;
            }
            b'\\' => {
                i += 1;
                let Some(&c) = bytes.get(i) else { break };
                if c == b'\'' {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    i += 3;
                    if let (Some(b), false) = (hex, skipped) {
                        if skip_chars > 0 {
                            skip_chars -= 1;
                        } else {
                            pending_bytes.push(b);
                        }
                    }
                    continue;
                }
                if !c.is_ascii_alphabetic() {
                    // A control symbol: \\ \{ \} are text, \* marks a destination to skip.
                    match c {
                        b'*' => stack.last_mut().expect("a group").0 = true,
                        b'\\' | b'{' | b'}' if !skipped => {
                            flush(&mut pending_bytes, &mut out, codepage);
                            out.push(c as char);
                        }
                        b'~' if !skipped => out.push('\u{a0}'),
                        _ => {}
                    }
                    i += 1;
                    continue;
                }
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let word = std::str::from_utf8(&bytes[start..i]).unwrap_or("");
                let number_start = i;
                if i < bytes.len() && (bytes[i] == b'-' || bytes[i].is_ascii_digit()) {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let number: Option<i32> =
                    std::str::from_utf8(&bytes[number_start..i]).ok().and_then(|n| n.parse().ok());
                if bytes.get(i) == Some(&b' ') {
                    i += 1;
                }
                flush(&mut pending_bytes, &mut out, codepage);
                match word {
                    w if RTF_SKIPPED.contains(&w) => stack.last_mut().expect("a group").0 = true,
                    "ansicpg" => {
                        if let Some(cp) =
                            number.and_then(|n| encoding_rs::Encoding::for_label(format!("windows-{n}").as_bytes()))
                        {
                            codepage = cp;
                        }
                    }
                    "uc" => stack.last_mut().expect("a group").1 = number.unwrap_or(1).max(0) as usize,
                    "u" if !skipped => {
                        let code = number.unwrap_or(0);
                        let code = if code < 0 { code + 65536 } else { code } as u32;
                        out.extend(char::from_u32(code));
                        skip_chars = uc;
                    }
                    "par" | "line" | "sect" | "page" if !skipped => out.push('\n'),
                    "tab" if !skipped => out.push('\t'),
                    _ => {}
                }
            }
            b'\r' | b'\n' => i += 1,
            c => {
                i += 1;
                if skipped {
                    continue;
                }
                if skip_chars > 0 {
                    skip_chars -= 1;
                    continue;
                }
                pending_bytes.push(c);
            }
        }
    }
    flush(&mut pending_bytes, &mut out, codepage);
    Ok(out)
}

/// An e-mail's subject and body as text, and its attachments.
pub fn email(bytes: &[u8]) -> Result<(String, Vec<Attachment>), String> {
    let message = mail_parser::MessageParser::default().parse(bytes).ok_or("not a readable e-mail message")?;
    let mut text = String::new();
    if let Some(subject) = message.subject() {
        text.push_str(subject);
        text.push_str("\n\n");
    }
    for i in 0..message.text_body.len() {
        if let Some(body) = message.body_text(i) {
            text.push_str(&body);
            text.push('\n');
        }
    }
    use mail_parser::MimeHeaders;
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(i, part)| {
            let unnamed = || format!("attachment-{}{}", i + 1, if part.is_message() { ".eml" } else { "" });
            Attachment {
                name: part.attachment_name().map_or_else(unnamed, str::to_string),
                bytes: part.contents().to_vec(),
                is_message: part.is_message(),
            }
        })
        .collect();
    Ok((text, attachments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pdf_that_makes_the_parser_panic_is_an_error() {
        // Found by the `extract` fuzz target: pdf-extract panics on a missing dictionary key.
        let pdf = include_bytes!("../../tests/fixtures/fuzz/pdf-missing-key.pdf");
        let error = extract(Kind::Pdf, pdf, 1 << 20).unwrap_err();
        assert!(error.contains("the PDF parser failed"), "{error}");
    }

    #[test]
    fn a_pdf_whose_page_is_its_own_parent_is_an_error_not_a_hang() {
        // Found by the `extract` fuzz target: pdf-extract looped for ever on it.
        let pdf = include_bytes!("../../tests/fixtures/fuzz/pdf-parent-cycle.pdf");
        let error = extract(Kind::Pdf, pdf, 1 << 20).unwrap_err();
        assert!(error.contains("page tree loops"), "{error}");
    }

    #[test]
    fn html_keeps_visible_text_only() {
        let page = "<html><head><title>T</title><style>p{}</style></head><body><h1>Bescheid</h1>\
                    <script>var x = 1;</script><p>Sehr geehrte&nbsp;Frau M&uuml;ller,</p><div hidden>geheim</div>\
                    <p style=\"display: none\">unsichtbar</p><ul><li>eins</li><li>zwei</li></ul></body></html>";
        assert_eq!(html_text(page), "Bescheid\nSehr geehrte Frau Müller,\neins\nzwei");
    }

    #[test]
    fn rtf_decodes_escapes_and_skips_tables() {
        let rtf = br"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}{\*\generator X;}\f0 Stra\'dfe \u8364? und \{x\}\par Zeile\tab 2}";
        assert_eq!(rtf_text(rtf).unwrap(), "Straße € und {x}\nZeile\t2");
    }

    #[test]
    fn docx_and_odt_xml_to_text() {
        let docx = r#"<w:document><w:body><w:p><w:r><w:t>Antrag &amp; Bescheid</w:t></w:r></w:p><w:p><w:r><w:t xml:space="preserve">vom </w:t><w:tab/><w:t>1. März</w:t></w:r></w:p></w:body></w:document>"#;
        assert_eq!(docx_text(docx).unwrap(), "Antrag & Bescheid\nvom \t1. März\n");
        let odt = r#"<office:document-content><office:body><office:text><text:h>Titel</text:h><text:p>Erste<text:s/>Zeile</text:p></office:text></office:body></office:document-content>"#;
        assert_eq!(odt_text(odt).unwrap(), "Titel\nErste Zeile\n");
    }
}
