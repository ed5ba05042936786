//! SPEAK bodies → play plans: `application/ssml+xml` (and its older name
//! `application/synthesis+ssml`), `text/uri-list` and `text/plain`.

use std::time::Duration;

use quick_xml::events::{BytesStart, Event};

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
    /// Text to speak.
    Text {
        /// The text, whitespace collapsed.
        text: String,
        /// The voice asked for (`<voice name>`, else its gender).
        voice: Option<String>,
        /// The language asked for (`xml:lang`).
        language: Option<String>,
    },
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

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What an open element contributes to the text inside it.
#[derive(Clone, Debug, Default)]
struct Scope {
    voice: Option<String>,
    language: Option<String>,
    /// Text inside is dropped (`<desc>`, `<meta>`, `<sub>` content, …).
    silent: bool,
    /// Closing this element closes an `<audio>`.
    audio: bool,
    /// A block element (`<p>`, `<s>`): text does not run on across its edges.
    block: bool,
}

struct SsmlPlan {
    items: PlayPlan,
    /// Text gathered since the last non-text item, with the scope it was spoken in.
    text: String,
    text_voice: Option<String>,
    text_language: Option<String>,
    /// The open `<audio>`: its index in `items` and its fallback text so far.
    audio: Option<(usize, String)>,
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
        if !self.text.trim().is_empty()
            && (self.text_voice != scope.voice || self.text_language != scope.language)
        {
            self.flush_text();
        }
        if self.text.trim().is_empty() {
            self.text_voice = scope.voice.clone();
            self.text_language = scope.language.clone();
        }
        self.text.push_str(text);
    }

    fn flush_text(&mut self) {
        let text = collapse_whitespace(&self.text);
        self.text.clear();
        if !text.is_empty() {
            self.items.push(PlanItem::Text {
                text,
                voice: self.text_voice.take(),
                language: self.text_language.take(),
            });
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
}

fn parse_ssml(text: &str, subset: SsmlSubset) -> Result<PlayPlan, BodyError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let xml_error = |reader: &quick_xml::Reader<&[u8]>, e: &dyn std::fmt::Display| BodyError::Xml {
        position: reader.error_position(),
        message: e.to_string(),
    };
    let mut plan = SsmlPlan {
        items: Vec::new(),
        text: String::new(),
        text_voice: None,
        text_language: None,
        audio: None,
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
        block: false,
        ..parent.clone()
    };
    if let Some(lang) = attribute(start, "xml:lang") {
        scope.language = Some(lang);
    }
    match name {
        "p" | "s" | "paragraph" | "sentence" => {
            scope.block = true;
            plan.add_text(&scope, " ");
        }
        "voice" => {
            if let Some(v) = attribute(start, "name").or_else(|| attribute(start, "gender")) {
                scope.voice = Some(v);
            }
            if let Some(lang) = attribute(start, "languages") {
                scope.language = lang.split_whitespace().next().map(str::to_string);
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
        // say-as, prosody, emphasis, phoneme, token, w, speak and unknown elements: the text
        // inside is spoken as it is.
        _ => {}
    }
    Ok(scope)
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
    if scope.block {
        plan.add_text(scope, " ");
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
        assert_eq!(
            plan,
            vec![
                text("Hello AB & welcome.", None, Some("en-US")),
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
                text("One. Two.", Some("Mary"), Some("en-GB")),
                text("Slow World Wide Web text", None, Some("en-US")),
                PlanItem::Break(Duration::from_millis(750)),
                PlanItem::Break(Duration::from_millis(1500)),
                text("x < y", None, Some("en-US")),
            ]
        );
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
        );
        assert_eq!(
            plan,
            Ok(vec![
                text("You owe $42.", None, None),
                PlanItem::Mark("m".into()),
                PlanItem::Audio {
                    uri: "a.wav".into(),
                    fallback: Some("the fallback".into())
                },
            ])
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
        let plan = parse_speak_body(
            "application/synthesis+ssml",
            b"<speak><s>One.</s><s>Two.</s></speak>",
        )
        .unwrap();
        assert_eq!(plan, vec![text("One. Two.", None, None)]);
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
