//! Navigating a BODYSTRUCTURE by IMAP part numbers (RFC 3501 §6.4.5), numbered the same
//! way as [`crate::mime`] numbers mail-parser's tree.

use std::borrow::Cow;

use async_imap::imap_proto::{BodyContentCommon, BodyStructure};

use crate::mime::is_audio;

/// What BODYSTRUCTURE says about one leaf part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeafPart {
    pub section: String,
    pub content_type: String,
    pub file_name: Option<String>,
    /// Size of the encoded body in octets.
    pub octets: u32,
}

/// One addressable part of a message: a leaf (with what BODYSTRUCTURE says about it),
/// or a multipart or attached message (`leaf` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StructurePart {
    pub section: String,
    pub leaf: Option<LeafPart>,
}

/// Every part a section number can name, in message order: children of a multipart by
/// position, the parts of an attached message below the message's own number, and `1`
/// for the body of a non-multipart message.
pub(crate) fn parts(root: &BodyStructure<'_>) -> Vec<StructurePart> {
    let mut out = Vec::new();
    walk_message_body(root, "", &mut out);
    out
}

/// Leaf parts that may carry audio, in message order: those whose type and name say so,
/// and `text/plain` ones with an audio file name (BODYSTRUCTURE reports an untyped part
/// as `text/plain`), to be confirmed from their MIME header.
pub(crate) fn audio_candidates(parts: &[StructurePart]) -> Vec<LeafPart> {
    parts
        .iter()
        .filter_map(|p| p.leaf.as_ref())
        .filter(|leaf| {
            is_audio(Some(&leaf.content_type), leaf.file_name.as_deref())
                || (leaf.content_type == "text/plain" && is_audio(None, leaf.file_name.as_deref()))
        })
        .cloned()
        .collect()
}

/// Describes a leaf part; `None` for multiparts and attached messages.
fn leaf(bs: &BodyStructure<'_>, section: &str) -> Option<LeafPart> {
    let (common, other) = match bs {
        BodyStructure::Basic { common, other, .. } | BodyStructure::Text { common, other, .. } => {
            (common, other)
        }
        _ => return None,
    };
    Some(LeafPart {
        section: section.to_owned(),
        content_type: format!("{}/{}", common.ty.ty, common.ty.subtype).to_ascii_lowercase(),
        file_name: file_name(common),
        octets: other.octets,
    })
}

fn walk_message_body(body: &BodyStructure<'_>, prefix: &str, out: &mut Vec<StructurePart>) {
    match body {
        BodyStructure::Multipart { bodies, .. } => {
            for (i, b) in bodies.iter().enumerate() {
                walk_part(b, &join(prefix, i + 1), out);
            }
        }
        other => walk_part(other, &join(prefix, 1), out),
    }
}

fn walk_part(bs: &BodyStructure<'_>, section: &str, out: &mut Vec<StructurePart>) {
    out.push(StructurePart {
        section: section.to_owned(),
        leaf: leaf(bs, section),
    });
    match bs {
        BodyStructure::Multipart { bodies, .. } => {
            for (i, b) in bodies.iter().enumerate() {
                walk_part(b, &join(section, i + 1), out);
            }
        }
        BodyStructure::Message { body, .. } => walk_message_body(body, section, out),
        _ => {}
    }
}

fn join(prefix: &str, n: usize) -> String {
    if prefix.is_empty() {
        n.to_string()
    } else {
        format!("{prefix}.{n}")
    }
}

/// `filename` of the disposition or `name` of the type; RFC 2231 forms (`filename*`)
/// are percent-decoded after their charset and language.
fn file_name(common: &BodyContentCommon<'_>) -> Option<String> {
    let disposition = common.disposition.as_ref().and_then(|d| d.params.as_ref());
    param(disposition, "filename").or_else(|| param(common.ty.params.as_ref(), "name"))
}

fn param(params: Option<&Vec<(Cow<'_, str>, Cow<'_, str>)>>, name: &str) -> Option<String> {
    let params = params?;
    if let Some((_, v)) = params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        return Some(v.to_string());
    }
    let extended = format!("{name}*");
    let (_, v) = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&extended))?;
    let encoded = v.rsplit('\'').next().unwrap_or(v);
    Some(percent_decode_lossy(encoded))
}

fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
