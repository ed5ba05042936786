//! SPEAK bodies → play plans: `application/ssml+xml` (and its older name
//! `application/synthesis+ssml`), `text/uri-list` and `text/plain`.

use std::time::Duration;

use quick_xml::events::{BytesStart, Event};

use crate::headers::{Headers, Prosody, names};
use crate::speech::{Gender, Markup, Speech, SpeechPart, VoiceSelection, collapse_whitespace};

/// One thing to play, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanItem {
    /// An audio URI (file, http(s), `source:NAME`, imap, fbmc).
    Audio {
        /// The URI as written in the body.
        uri: String,
        /// SSML fallback content, to speak only if the URI fails.
        fallback: Option<String>,
    },
    /// Text to speak, without markup.
    Text {
        /// The text, whitespace collapsed.
        text: String,
        /// The voice asked for by name (`<voice name>`).
        voice: Option<String>,
        /// The language asked for (`xml:lang`).
        language: Option<String>,
    },
    /// Text with markup the synthesizer renders (prosody, emphasis, sentences, say-as), or
    /// asking for a voice by more than its name.
    Speech(Speech),
    /// Silence.
    Break(Duration),
    /// An SSML mark: report SPEECH-MARKER when playback reaches it.
    Mark(String),
}

/// The items of one SPEAK, in play order.
pub type PlayPlan = Vec<PlanItem>;

/// The longest break a body may ask for.
pub const MAX_BREAK: Duration = Duration::from_secs(3600);

/// Most elements nested inside each other in SSML.
const MAX_DEPTH: usize = 64;

/// How much of SSML a synthesizer resource reads (RFC 6787: speechsynth, basicsynth).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SsmlSubset {
    /// `speechsynth`: all of SSML 1.0.
    #[default]
    Full,
    /// `basicsynth`: only the elements of [`BASIC_SSML_ELEMENTS`]; any other element fails
    /// the SPEAK with `002 parse-failure`.
    Basic,
}

/// The SSML elements a `basicsynth` resource understands (RFC 6787).
pub const BASIC_SSML_ELEMENTS: [&str; 4] = ["speak", "audio", "say-as", "mark"];

/// A SPEAK body that cannot become a play plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not a body type the media player plays (maps to status 408).
    #[error(
        "unsupported Content-Type {0:?}: use application/ssml+xml, text/uri-list or text/plain"
    )]
    UnsupportedContentType(String),
    /// The body is not UTF-8.
    #[error("the body is not valid UTF-8 at byte {0}")]
    NotUtf8(usize),
    /// The SSML is not well-formed XML.
    #[error("SSML is not well-formed XML near byte {position}: {message}")]
    Xml {
        /// Byte offset into the body.
        position: u64,
        /// The XML parser's message.
        message: String,
    },
    /// The SSML root element is not `<speak>`.
    #[error("SSML must have <speak> as its root element, found <{0}>")]
    NotSpeak(String),
    /// An element lacks an attribute it needs.
    #[error("<{element}> needs a {attribute} attribute")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
    },
    /// A `<break>` with an unusable time or strength.
    #[error("<break> {0:?} is not a time like 500ms or 2s (up to 3600s) nor a known strength")]
    BadBreak(String),
    /// Elements nested deeper than the limit.
    #[error("SSML nests elements more than {MAX_DEPTH} deep")]
    TooDeep,
    /// A text/uri-list without any URI.
    #[error("text/uri-list holds no URI (only comments or blank lines)")]
    EmptyUriList,
    /// An element outside the SSML subset of a `basicsynth` resource.
    #[error(
        "<{0}> is not supported by a basicsynth resource, whose SSML is limited to <speak>, \
         <audio>, <say-as> and <mark> (RFC 6787): use a speechsynth channel"
    )]
    NotInBasicSubset(String),
}

impl BodyError {
    /// Whether this is a body we cannot play at all (408) rather than one we failed to parse
    /// (SPEAK-COMPLETE with `002 parse-failure`).
    pub fn is_unsupported_type(&self) -> bool {
        matches!(self, BodyError::UnsupportedContentType(_))
    }
}

/// Whether a (parameter-free, lower-case) media type is one [`parse_speak_body`] reads.
pub fn is_supported_content_type(content_type: &str) -> bool {
    matches!(
        content_type,
        "application/ssml+xml" | "application/synthesis+ssml" | "text/uri-list" | "text/plain"
    )
}

/// Turns a SPEAK body into a play plan for a `speechsynth` resource. `content_type` may carry
/// parameters.
pub fn parse_speak_body(content_type: &str, body: &[u8]) -> Result<PlayPlan, BodyError> {
    parse_speak_body_in(SsmlSubset::Full, content_type, body)
}

/// Turns a SPEAK body into a play plan for a resource that reads `subset` of SSML.
/// Plain text and URI lists are the same for every resource.
pub fn parse_speak_body_in(
    subset: SsmlSubset,
    content_type: &str,
    body: &[u8],
) -> Result<PlayPlan, BodyError> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !is_supported_content_type(&media_type) {
        return Err(BodyError::UnsupportedContentType(media_type));
    }
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotUtf8(e.valid_up_to()))?;
    match media_type.as_str() {
        "text/uri-list" => parse_uri_list(text),
        "text/plain" => Ok(parse_plain(text)),
        _ => parse_ssml(text, subset),
    }
}

fn parse_plain(text: &str) -> PlayPlan {
    let text = collapse_whitespace(text);
    if text.is_empty() {
        return Vec::new();
    }
    vec![PlanItem::Text {
        text,
        voice: None,
        language: None,
    }]
}

/// RFC 2483: one URI per line, `#` starts a comment line.
fn parse_uri_list(text: &str) -> Result<PlayPlan, BodyError> {
    let plan: PlayPlan = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|uri| PlanItem::Audio {
            uri: uri.to_string(),
            fallback: None,
        })
        .collect();
    if plan.is_empty() {
        return Err(BodyError::EmptyUriList);
    }
    Ok(plan)
}

/// What an open element contributes to the text inside it.
#[derive(Clone, Debug, Default)]
struct Scope {
    voice: VoiceSelection,
    language: Option<String>,
    /// Text inside is dropped (`<desc>`, `<meta>`, `<sub>` content, …).
    silent: bool,
    /// Closing this element closes an `<audio>`.
    audio: bool,
    /// The markup elements open here, outermost first, each with its element's number.
    markup: Vec<(u32, Markup)>,
    /// The `<say-as>` open here: its element's number, `interpret-as` and `format`.
    say_as: Option<(u32, String, Option<String>)>,
}

/// The text gathered since the last item that is not text, in one voice and language.
#[derive(Default)]
struct TextRun {
    parts: Vec<SpeechPart>,
    voice: VoiceSelection,
    language: Option<String>,
    /// The element numbers of the markup open in `parts`, outermost first.
    open: Vec<u32>,
    /// The element number of the say-as that `parts` ends with.
    say_as: Option<u32>,
}

impl TextRun {
    /// Whether the run holds anything to say.
    fn has_words(&self) -> bool {
        self.parts.iter().any(|p| match p {
            SpeechPart::Text(t) | SpeechPart::SayAs { text: t, .. } => !t.trim().is_empty(),
            SpeechPart::Open(_) | SpeechPart::Close => false,
        })
    }

    /// Closes and opens markup so that what follows is inside exactly `markup`.
    fn enter(&mut self, markup: &[(u32, Markup)]) {
        let common = self
            .open
            .iter()
            .zip(markup)
            .take_while(|(open, (id, _))| *open == id)
            .count();
        while self.open.len() > common {
            self.open.pop();
            self.parts.push(SpeechPart::Close);
            self.say_as = None;
        }
        for (id, m) in &markup[common..] {
            self.open.push(*id);
            self.parts.push(SpeechPart::Open(*m));
            self.say_as = None;
        }
    }

    fn push_text(&mut self, scope: &Scope, text: &str) {
        self.enter(&scope.markup);
        match &scope.say_as {
            Some((id, interpret_as, format)) => match self.parts.last_mut() {
                Some(SpeechPart::SayAs { text: t, .. }) if self.say_as == Some(*id) => {
                    t.push_str(text)
                }
                _ => {
                    self.parts.push(SpeechPart::SayAs {
                        interpret_as: interpret_as.clone(),
                        format: format.clone(),
                        text: text.to_string(),
                    });
                    self.say_as = Some(*id);
                }
            },
            None => {
                self.say_as = None;
                match self.parts.last_mut() {
                    Some(SpeechPart::Text(t)) => t.push_str(text),
                    _ => self.parts.push(SpeechPart::Text(text.to_string())),
                }
            }
        }
    }

    /// The run as a plan item, or `None` when it holds no words; the run is empty
    /// afterwards. Text whose only markup is sentences and paragraphs, in a voice chosen by
    /// name at most, is plain text: each sentence ends with a full stop.
    fn take(&mut self) -> Option<PlanItem> {
        self.enter(&[]);
        let run = std::mem::take(self);
        if !run.has_words() {
            return None;
        }
        let structural = |p: &SpeechPart| match p {
            SpeechPart::Text(_) | SpeechPart::Close => true,
            SpeechPart::Open(m) => matches!(m, Markup::Sentence | Markup::Paragraph),
            SpeechPart::SayAs { .. } => false,
        };
        let plain = run.parts.iter().all(structural)
            && run.voice.gender.is_none()
            && run.voice.age.is_none()
            && run.voice.variant.is_none();
        if !plain {
            return Some(PlanItem::Speech(Speech {
                parts: run.parts,
                voice: run.voice,
                language: run.language,
            }));
        }
        let mut text = String::new();
        for part in &run.parts {
            match part {
                SpeechPart::Text(t) => text.push_str(t),
                SpeechPart::Close => {
                    let written = text.trim_end();
                    if !written.is_empty()
                        && !written.ends_with(['.', '!', '?', ';', ':', '\u{3002}'])
                    {
                        text.truncate(written.len());
                        text.push('.');
                    }
                    text.push(' ');
                }
                _ => text.push(' '),
            }
        }
        Some(PlanItem::Text {
            text: collapse_whitespace(&text),
            voice: run.voice.name,
            language: run.language,
        })
    }
}

struct SsmlPlan {
    items: PlayPlan,
    run: TextRun,
    /// The open `<audio>`: its index in `items` and its fallback text so far.
    audio: Option<(usize, String)>,
    /// Numbers the markup and say-as elements, so that two alike in a row stay two.
    elements: u32,
}

impl SsmlPlan {
    fn add_text(&mut self, scope: &Scope, text: &str) {
        if scope.silent || text.is_empty() {
            return;
        }
        if let Some((_, fallback)) = self.audio.as_mut() {
            fallback.push_str(text);
            return;
        }
        if self.run.has_words()
            && (self.run.voice != scope.voice || self.run.language != scope.language)
        {
            self.flush_text();
        }
        if !self.run.has_words() {
            self.run = TextRun {
                voice: scope.voice.clone(),
                language: scope.language.clone(),
                ..TextRun::default()
            };
        }
        self.run.push_text(scope, text);
    }

    fn flush_text(&mut self) {
        if let Some(item) = self.run.take() {
            self.items.push(item);
        }
    }

    fn push(&mut self, item: PlanItem) {
        if self.audio.is_some() {
            // Breaks and marks inside <audio> belong to its fallback; not played.
            return;
        }
        self.flush_text();
        self.items.push(item);
    }

    fn next_element(&mut self) -> u32 {
        self.elements = self.elements.wrapping_add(1);
        self.elements
    }
}

fn parse_ssml(text: &str, subset: SsmlSubset) -> Result<PlayPlan, BodyError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let xml_error = |reader: &quick_xml::Reader<&[u8]>, e: &dyn std::fmt::Display| BodyError::Xml {
        position: reader.error_position(),
        message: e.to_string(),
    };
    let mut plan = SsmlPlan {
        items: Vec::new(),
        run: TextRun::default(),
        audio: None,
        elements: 0,
    };
    let mut stack: Vec<(String, Scope)> = Vec::new();
    let mut seen_root = false;
    loop {
        let event = reader.read_event().map_err(|e| xml_error(&reader, &e))?;
        match event {
            Event::Start(start) | Event::Empty(start)
                if stack.is_empty() && !seen_root && local_name(&start) != "speak" =>
            {
                return Err(BodyError::NotSpeak(local_name(&start)));
            }
            Event::Start(start) => {
                seen_root = true;
                if stack.len() >= MAX_DEPTH {
                    return Err(BodyError::TooDeep);
                }
                let parent = stack.last().map(|(_, s)| s.clone()).unwrap_or_default();
                let name = local_name(&start);
                check_subset(subset, &name)?;
                let scope = open_element(&mut plan, &parent, &name, &start, false)?;
                stack.push((name, scope));
            }
            Event::Empty(start) => {
                seen_root = true;
                let parent = stack.last().map(|(_, s)| s.clone()).unwrap_or_default();
                let name = local_name(&start);
                check_subset(subset, &name)?;
                let scope = open_element(&mut plan, &parent, &name, &start, true)?;
                close_element(&mut plan, &scope);
            }
            Event::End(_) => {
                if let Some((_, scope)) = stack.pop() {
                    close_element(&mut plan, &scope);
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                if stack.is_empty() {
                    if !content.trim().is_empty() {
                        return Err(BodyError::Xml {
                            position: reader.buffer_position(),
                            message: "text outside <speak>".to_string(),
                        });
                    }
                    continue;
                }
                if let Some((_, scope)) = stack.last() {
                    plan.add_text(scope, &content);
                }
            }
            Event::CData(c) => {
                let content = c.xml10_content();
                if let Some((_, scope)) = stack.last() {
                    plan.add_text(scope, &content);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match quick_xml::escape::resolve_predefined_entity(&r) {
                        Some(s) => s.to_string(),
                        None => {
                            return Err(BodyError::Xml {
                                position: reader.buffer_position(),
                                message: format!("unknown entity &{};", &*r),
                            });
                        }
                    },
                    Err(e) => return Err(xml_error(&reader, &e)),
                };
                if let Some((_, scope)) = stack.last() {
                    plan.add_text(scope, &resolved);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if let Some((name, _)) = stack.last() {
        return Err(BodyError::Xml {
            position: reader.buffer_position(),
            message: format!("<{name}> is not closed"),
        });
    }
    if !seen_root {
        return Err(BodyError::Xml {
            position: 0,
            message: "no <speak> element".to_string(),
        });
    }
    plan.flush_text();
    Ok(plan.items)
}

fn check_subset(subset: SsmlSubset, element: &str) -> Result<(), BodyError> {
    match subset {
        SsmlSubset::Basic if !BASIC_SSML_ELEMENTS.contains(&element) => {
            Err(BodyError::NotInBasicSubset(element.to_string()))
        }
        _ => Ok(()),
    }
}

fn local_name(start: &BytesStart<'_>) -> String {
    start.local_name().as_ref().to_string()
}

fn attribute(start: &BytesStart<'_>, wanted: &str) -> Option<String> {
    start.attributes().flatten().find_map(|a| {
        (a.key.as_ref() == wanted)
            .then(|| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
            .flatten()
    })
}

fn open_element(
    plan: &mut SsmlPlan,
    parent: &Scope,
    name: &str,
    start: &BytesStart<'_>,
    empty: bool,
) -> Result<Scope, BodyError> {
    let mut scope = Scope {
        audio: false,
        ..parent.clone()
    };
    if let Some(lang) = attribute(start, "xml:lang") {
        scope.language = Some(lang);
    }
    match name {
        "p" | "paragraph" => open_markup(plan, &mut scope, Markup::Paragraph),
        "s" | "sentence" => open_markup(plan, &mut scope, Markup::Sentence),
        "emphasis" => {
            let level = match attribute(start, "level").as_deref().map(str::trim) {
                Some("none") => None,
                Some("reduced") => Some("reduced"),
                Some("strong" | "x-strong") => Some("strong"),
                _ => Some("moderate"),
            };
            if let Some(level) = level {
                open_markup(plan, &mut scope, Markup::Emphasis(level));
            }
        }
        "prosody" => {
            let mut headers = Headers::new();
            for (attr, header) in [
                ("rate", names::PROSODY_RATE),
                ("pitch", names::PROSODY_PITCH),
                ("volume", names::PROSODY_VOLUME),
            ] {
                if let Some(value) = attribute(start, attr) {
                    headers.push(header, value);
                }
            }
            // Values the synthesizer cannot honour (pitch in Hz, contour, duration) leave
            // the text as it is.
            let (prosody, _) = Prosody::from_headers(&headers);
            if !prosody.is_empty() {
                open_markup(plan, &mut scope, Markup::Prosody(prosody));
            }
        }
        "voice" => {
            let asked = VoiceSelection {
                name: attribute(start, "name")
                    .and_then(|n| n.split_whitespace().next().map(str::to_string)),
                gender: attribute(start, "gender").and_then(|g| Gender::parse(&g)),
                age: attribute(start, "age").and_then(|a| a.trim().parse().ok()),
                variant: attribute(start, "variant").and_then(|v| v.trim().parse().ok()),
            };
            scope.voice = if asked.name.is_some() {
                // A named voice replaces the enclosing choice; its other attributes refine it.
                asked
            } else {
                scope.voice.overlaid(&asked)
            };
            if let Some(lang) = attribute(start, "languages") {
                scope.language = lang.split_whitespace().next().map(str::to_string);
            }
        }
        "say-as" => {
            // Without interpret-as (which SSML requires) the text is read as written.
            if let Some(interpret_as) = attribute(start, "interpret-as") {
                let id = plan.next_element();
                scope.say_as = Some((id, interpret_as, attribute(start, "format")));
            }
        }
        "lang" => {}
        "audio" => {
            let uri = attribute(start, "src").ok_or(BodyError::MissingAttribute {
                element: "audio",
                attribute: "src",
            })?;
            if plan.audio.is_none() {
                plan.push(PlanItem::Audio {
                    uri,
                    fallback: None,
                });
                if !empty {
                    scope.audio = true;
                    plan.audio = Some((plan.items.len() - 1, String::new()));
                }
            }
        }
        "break" => {
            let duration = break_duration(start)?;
            if !duration.is_zero() {
                plan.push(PlanItem::Break(duration));
            }
        }
        "mark" => {
            let mark = attribute(start, "name").ok_or(BodyError::MissingAttribute {
                element: "mark",
                attribute: "name",
            })?;
            plan.push(PlanItem::Mark(mark));
        }
        "sub" => {
            if let Some(alias) = attribute(start, "alias") {
                plan.add_text(&scope, &format!(" {alias} "));
            }
            scope.silent = true;
        }
        "desc" | "meta" | "metadata" | "lexicon" | "lookup" => scope.silent = true,
        // phoneme, token, w, speak and unknown elements: the text inside is spoken as it is.
        _ => {}
    }
    Ok(scope)
}

/// Text inside `scope` is inside `markup` too.
fn open_markup(plan: &mut SsmlPlan, scope: &mut Scope, markup: Markup) {
    let id = plan.next_element();
    scope.markup.push((id, markup));
}

fn close_element(plan: &mut SsmlPlan, scope: &Scope) {
    if scope.audio
        && let Some((index, fallback)) = plan.audio.take()
    {
        let fallback = collapse_whitespace(&fallback);
        if let Some(PlanItem::Audio { fallback: slot, .. }) = plan.items.get_mut(index) {
            *slot = (!fallback.is_empty()).then_some(fallback);
        }
    }
}

fn break_duration(start: &BytesStart<'_>) -> Result<Duration, BodyError> {
    if let Some(time) = attribute(start, "time") {
        return parse_break_time(&time).ok_or(BodyError::BadBreak(time));
    }
    let strength = attribute(start, "strength").unwrap_or_else(|| "medium".to_string());
    let ms = match strength.as_str() {
        "none" => 0,
        "x-weak" => 100,
        "weak" => 250,
        "medium" => 500,
        "strong" => 750,
        "x-strong" => 1000,
        _ => return Err(BodyError::BadBreak(strength)),
    };
    Ok(Duration::from_millis(ms))
}

/// SSML time designation: a non-negative decimal followed by `s` or `ms`.
fn parse_break_time(time: &str) -> Option<Duration> {
    let time = time.trim();
    let (number, scale) = if let Some(n) = time.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = time.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    if number.is_empty()
        || number.len() > 12
        || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return None;
    }
    let seconds = number.parse::<f64>().ok()? * scale;
    let duration = Duration::try_from_secs_f64(seconds).ok()?;
    (duration <= MAX_BREAK).then_some(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str, voice: Option<&str>, lang: Option<&str>) -> PlanItem {
        PlanItem::Text {
            text: t.to_string(),
            voice: voice.map(str::to_string),
            language: lang.map(str::to_string),
        }
    }

    /// A Speech item's voice, language and SSML (rendered for its language, else en-US).
    fn speech(item: &PlanItem) -> (VoiceSelection, Option<String>, String) {
        match item {
            PlanItem::Speech(s) => (
                s.voice.clone(),
                s.language.clone(),
                s.to_ssml(s.language.as_deref().unwrap_or("en-US")),
            ),
            other => panic!("not speech: {other:?}"),
        }
    }

    fn named(name: &str) -> VoiceSelection {
        VoiceSelection {
            name: Some(name.into()),
            ..VoiceSelection::default()
        }
    }

    #[test]
    fn ssml_with_every_element() {
        let ssml = r#"<?xml version="1.0"?>
<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">
  Hello <say-as interpret-as="characters">AB</say-as> &amp; welcome.
  <break time="500ms"/>
  <mark name="m1"/>
  <audio src="file:///moh/a.wav">Sorry, the music is missing.<break time="1s"/></audio>
  <audio src="source:MP3"/>
  <voice name="Mary" xml:lang="en-GB"><p><s>One.</s><s>Two.</s></p></voice>
  <prosody rate="slow">Slow <sub alias="World Wide Web">WWW</sub> text</prosody>
  <break strength="strong"/><break time="1.5s"/><break strength="none"/>
  <!-- a comment -->
  <![CDATA[x < y]]>
</speak>"#;
        let plan = parse_speak_body("application/ssml+xml", ssml.as_bytes()).unwrap();
        assert_eq!(plan.len(), 10, "{plan:#?}");
        assert_eq!(
            speech(&plan[0]),
            (
                VoiceSelection::default(),
                Some("en-US".into()),
                r#"Hello <say-as interpret-as="characters">AB</say-as> &amp; welcome."#.into()
            )
        );
        assert_eq!(
            plan[1..5],
            [
                PlanItem::Break(Duration::from_millis(500)),
                PlanItem::Mark("m1".into()),
                PlanItem::Audio {
                    uri: "file:///moh/a.wav".into(),
                    fallback: Some("Sorry, the music is missing.".into())
                },
                PlanItem::Audio {
                    uri: "source:MP3".into(),
                    fallback: None
                },
            ]
        );
        assert_eq!(plan[5], text("One. Two.", Some("Mary"), Some("en-GB")));
        assert_eq!(
            speech(&plan[6]),
            (
                VoiceSelection::default(),
                Some("en-US".into()),
                r#"<prosody rate="75%">Slow World Wide Web text</prosody>"#.into()
            )
        );
        assert_eq!(
            plan[7..],
            [
                PlanItem::Break(Duration::from_millis(750)),
                PlanItem::Break(Duration::from_millis(1500)),
                text("x < y", None, Some("en-US")),
            ]
        );
    }

    #[test]
    fn markup_is_closed_at_marks_breaks_and_audio_and_opened_again_after() {
        let ssml = r#"<speak xml:lang="en-US"><prosody rate="+50%" volume="loud">
            Your balance <emphasis level="strong">is</emphasis><mark name="amount"/>
            <say-as interpret-as="cardinal">1,234</say-as> dollars<break time="300ms"/>
            due <say-as interpret-as="date" format="mdy">2026-11-24</say-as> at
            <say-as interpret-as="time" format="hms24">14:05</say-as>.</prosody>
            Call <say-as interpret-as="telephone">555-0100</say-as>,
            code <say-as interpret-as="digits">1234</say-as>.</speak>"#;
        let plan = parse_speak_body("application/ssml+xml", ssml.as_bytes()).unwrap();
        let ssml_of = |i: usize| speech(&plan[i]).2;
        assert_eq!(plan.len(), 5, "{plan:#?}");
        assert_eq!(
            ssml_of(0),
            r#"<prosody rate="150%" volume="150%">Your balance <emphasis level="strong">is</emphasis></prosody>"#
        );
        assert_eq!(plan[1], PlanItem::Mark("amount".into()));
        assert_eq!(
            ssml_of(2),
            r#"<prosody rate="150%" volume="150%">1234 dollars</prosody>"#
        );
        assert_eq!(plan[3], PlanItem::Break(Duration::from_millis(300)));
        assert_eq!(
            ssml_of(4),
            r#"<prosody rate="150%" volume="150%">due November 24th, 2026 at 14 oh 5.</prosody> Call 5 5 5, 0 1 0 0, code 1 2 3 4."#
        );
        // The say-as is rendered for the language the text is spoken in, known only then.
        let PlanItem::Speech(due) = &plan[4] else {
            panic!()
        };
        assert!(
            due.plain_text("de-DE")
                .starts_with("due 24. November 2026 at 14 Uhr 5"),
            "{}",
            due.plain_text("de-DE")
        );
    }

    #[test]
    fn voices_by_gender_and_age_and_languages() {
        let ssml = r#"<speak xml:lang="en-US">Hi
            <voice gender="female" age="70">from grandma</voice>
            <voice name="en-gb"><voice gender="female">a British woman</voice></voice>
            <voice xml:lang="de-DE">auf Deutsch</voice>
            <voice name="Mary">plain</voice></speak>"#;
        let plan = parse_speak_body("application/ssml+xml", ssml.as_bytes()).unwrap();
        assert_eq!(plan.len(), 5, "{plan:#?}");
        assert_eq!(plan[0], text("Hi", None, Some("en-US")));
        assert_eq!(
            speech(&plan[1]),
            (
                VoiceSelection {
                    gender: Some(Gender::Female),
                    age: Some(70),
                    ..VoiceSelection::default()
                },
                Some("en-US".into()),
                "from grandma".into()
            )
        );
        assert_eq!(
            speech(&plan[2]).0,
            VoiceSelection {
                gender: Some(Gender::Female),
                ..named("en-gb")
            }
        );
        assert_eq!(plan[3], text("auf Deutsch", None, Some("de-DE")));
        assert_eq!(plan[4], text("plain", Some("Mary"), Some("en-US")));
    }

    #[test]
    fn basicsynth_reads_only_speak_audio_say_as_and_mark() {
        let basic = |body: &str| {
            parse_speak_body_in(SsmlSubset::Basic, "application/ssml+xml", body.as_bytes())
        };
        let plan = basic(
            r#"<?xml version="1.0"?><speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis">
            You owe <say-as interpret-as="currency">$42</say-as>.<mark name="m"/>
            <audio src="a.wav">the fallback</audio></speak>"#,
        )
        .unwrap();
        assert_eq!(plan.len(), 3, "{plan:#?}");
        assert_eq!(speech(&plan[0]).2, "You owe $42.");
        assert_eq!(
            plan[1..],
            [
                PlanItem::Mark("m".into()),
                PlanItem::Audio {
                    uri: "a.wav".into(),
                    fallback: Some("the fallback".into())
                },
            ]
        );
        for element in [
            "prosody", "voice", "break", "p", "s", "emphasis", "sub", "phoneme",
        ] {
            let body = format!("<speak>Hi <{element}>there</{element}></speak>");
            let e = basic(&body).unwrap_err();
            assert_eq!(e, BodyError::NotInBasicSubset(element.into()));
            assert!(e.to_string().contains(&format!("<{element}>")), "{e}");
            // The same body is fine for speechsynth.
            assert!(parse_speak_body("application/ssml+xml", body.as_bytes()).is_ok());
        }
        // Also inside an <audio>'s fallback, and as an empty element.
        assert_eq!(
            basic(r#"<speak><audio src="a.wav"><break time="1s"/>x</audio></speak>"#),
            Err(BodyError::NotInBasicSubset("break".into()))
        );
        // Plain text and URI lists are not SSML: the same for both resources.
        assert!(parse_speak_body_in(SsmlSubset::Basic, "text/plain", b"Hello").is_ok());
        assert!(parse_speak_body_in(SsmlSubset::Basic, "text/uri-list", b"a.wav").is_ok());
    }

    #[test]
    fn sentences_do_not_run_together() {
        for body in [
            "<speak><s>One</s><s>Two</s></speak>",
            "<speak><p><s>One.</s> <s>Two</s></p></speak>",
        ] {
            let plan = parse_speak_body("application/synthesis+ssml", body.as_bytes()).unwrap();
            assert_eq!(plan, vec![text("One. Two.", None, None)], "{body}");
        }
        // With other markup the synthesizer reads the sentences itself.
        let plan = parse_speak_body(
            "application/ssml+xml",
            b"<speak><s>One</s><s><emphasis>Two</emphasis></s></speak>",
        )
        .unwrap();
        assert_eq!(
            speech(&plan[0]).2,
            r#"<s>One</s><s><emphasis level="moderate">Two</emphasis></s>"#
        );
    }

    #[test]
    fn ssml_errors_name_the_problem() {
        type Expectation = fn(&BodyError) -> bool;
        let cases: [(&str, Expectation); 8] = [
            ("<speak>unclosed", |e| matches!(e, BodyError::Xml { .. })),
            ("<speak><p></s></speak>", |e| {
                matches!(e, BodyError::Xml { .. })
            }),
            (
                "<html>hi</html>",
                |e| matches!(e, BodyError::NotSpeak(n) if n == "html"),
            ),
            ("<speak><audio/></speak>", |e| {
                matches!(
                    e,
                    BodyError::MissingAttribute {
                        element: "audio",
                        ..
                    }
                )
            }),
            ("<speak><mark/></speak>", |e| {
                matches!(
                    e,
                    BodyError::MissingAttribute {
                        element: "mark",
                        ..
                    }
                )
            }),
            ("<speak><break time=\"5 minutes\"/></speak>", |e| {
                matches!(e, BodyError::BadBreak(_))
            }),
            ("<speak><break time=\"99999999s\"/></speak>", |e| {
                matches!(e, BodyError::BadBreak(_))
            }),
            ("<speak>&bogus;</speak>", |e| {
                matches!(e, BodyError::Xml { .. })
            }),
        ];
        for (body, is_expected) in cases {
            let e = parse_speak_body("application/ssml+xml", body.as_bytes()).unwrap_err();
            assert!(is_expected(&e), "{body}: {e}");
            assert!(!e.to_string().is_empty());
        }
        let deep = format!("<speak>{}</speak>", "<p>".repeat(100));
        assert_eq!(
            parse_speak_body("application/ssml+xml", deep.as_bytes()),
            Err(BodyError::TooDeep)
        );
        assert_eq!(
            parse_speak_body("application/ssml+xml", b""),
            Err(BodyError::Xml {
                position: 0,
                message: "no <speak> element".into()
            })
        );
    }

    #[test]
    fn uri_list_and_plain_text() {
        let plan = parse_speak_body(
            "text/uri-list",
            b"# greeting\r\nfile:///a.wav\r\n\r\nsource:moh\n  http://x/b.mp3  \n",
        )
        .unwrap();
        let uris: Vec<_> = plan
            .iter()
            .map(|i| match i {
                PlanItem::Audio { uri, .. } => uri.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(uris, ["file:///a.wav", "source:moh", "http://x/b.mp3"]);
        assert_eq!(
            parse_speak_body("text/uri-list", b"# only a comment\n"),
            Err(BodyError::EmptyUriList)
        );
        assert_eq!(
            parse_speak_body("text/plain; charset=utf-8", b" Hello\r\n  world "),
            Ok(vec![text("Hello world", None, None)])
        );
        assert_eq!(parse_speak_body("text/plain", b""), Ok(vec![]));
        assert_eq!(
            parse_speak_body("text/plain", &[0x66, 0xff]),
            Err(BodyError::NotUtf8(1))
        );
        let e = parse_speak_body("application/pls+xml", b"x").unwrap_err();
        assert!(e.is_unsupported_type());
    }

    #[test]
    fn break_times() {
        assert_eq!(parse_break_time("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_break_time("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_break_time("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_break_time("3601s"), None);
        assert_eq!(parse_break_time("-1s"), None);
        assert_eq!(parse_break_time("s"), None);
        assert_eq!(parse_break_time("1..2s"), None);
    }
}
