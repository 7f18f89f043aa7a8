//! Bytes to text. UTF-8 first (with or without BOM), UTF-16 with a BOM, otherwise the
//! legacy encoding that chardetng finds most likely for German text (in practice
//! Windows-1252, the superset of Latin-1 that German archives use).

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty document (no text)")]
    Empty,
    #[error("binary data, not text ({0})")]
    Binary(&'static str),
}

/// Share of control characters above which decoded bytes are taken for binary data.
const MAX_CONTROL_SHARE: f64 = 0.05;

pub fn decode_text(bytes: &[u8]) -> Result<(String, &'static str), DecodeError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return check_text(text.into_owned(), encoding.name());
    }
    if bytes.contains(&0) {
        return Err(DecodeError::Binary("contains NUL bytes"));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return check_text(text.to_owned(), UTF_8.name());
    }
    if let Some(text) = mixed_utf8_and_legacy(bytes) {
        return check_text(text, "UTF-8+windows-1252");
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let encoding = detector.guess(Some(b"de"), false);
    // UTF-16 without a BOM is not guessed: it contains NUL bytes and was refused above.
    debug_assert!(encoding != UTF_16LE && encoding != UTF_16BE);
    let (text, _) = encoding.decode_without_bom_handling(bytes);
    check_text(text.into_owned(), encoding.name())
}

/// Text pasted together from UTF-8 and legacy sources: where the bytes hold valid
/// multi-byte UTF-8 sequences, those stay, and the bytes that are not UTF-8 are read as
/// Windows-1252. None when there is no multi-byte UTF-8 at all (then it is legacy text).
fn mixed_utf8_and_legacy(bytes: &[u8]) -> Option<String> {
    let chunks: Vec<std::str::Utf8Chunk> = bytes.utf8_chunks().collect();
    if chunks.iter().all(|c| c.valid().is_ascii()) {
        return None;
    }
    let mut text = String::with_capacity(bytes.len());
    for chunk in chunks {
        text.push_str(chunk.valid());
        text.push_str(&encoding_rs::WINDOWS_1252.decode_without_bom_handling(chunk.invalid()).0);
    }
    Some(text)
}

fn check_text(text: String, encoding: &'static str) -> Result<(String, &'static str), DecodeError> {
    if text.trim().is_empty() {
        return Err(DecodeError::Empty);
    }
    let total = text.chars().count();
    let control = text.chars().filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}')).count();
    if control as f64 > MAX_CONTROL_SHARE * total as f64 {
        return Err(DecodeError::Binary("mostly control characters"));
    }
    Ok((text, encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_utf8_and_latin1_keeps_both() {
        let mut bytes = "Grüße aus Köln, ".as_bytes().to_vec();
        bytes.extend_from_slice(b"Stra\xdfe");
        assert_eq!(decode_text(&bytes).unwrap(), ("Grüße aus Köln, Straße".into(), "UTF-8+windows-1252"));
    }

    #[test]
    fn utf8_with_and_without_bom() {
        assert_eq!(decode_text("Straße".as_bytes()).unwrap(), ("Straße".into(), "UTF-8"));
        assert_eq!(decode_text(b"\xEF\xBB\xBFStra\xC3\x9Fe").unwrap(), ("Straße".into(), "UTF-8"));
    }

    #[test]
    fn windows_1252_is_detected_for_german() {
        let bytes = b"Der Kl\xe4ger begehrt die \xc4nderung des Bescheids gem\xe4\xdf \xa7 3 AsylG \x96 ohne Erfolg.";
        let (text, encoding) = decode_text(bytes).unwrap();
        assert_eq!(encoding, "windows-1252");
        assert_eq!(text, "Der Kläger begehrt die Änderung des Bescheids gemäß § 3 AsylG – ohne Erfolg.");
    }

    #[test]
    fn utf16_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "Grüße".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(decode_text(&bytes).unwrap(), ("Grüße".into(), "UTF-16LE"));
    }

    #[test]
    fn empty_and_binary_are_refused() {
        assert_eq!(decode_text(b"").unwrap_err(), DecodeError::Empty);
        assert_eq!(decode_text(b" \n\t ").unwrap_err(), DecodeError::Empty);
        assert!(matches!(decode_text(b"PK\x03\x04\x00\x00").unwrap_err(), DecodeError::Binary(_)));
        assert!(matches!(decode_text(&[0x01, 0x02, 0x03, 0x04, b'a']).unwrap_err(), DecodeError::Binary(_)));
    }
}
