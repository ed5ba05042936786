//! Text with the SSML markup a synthesizer renders itself: prosody, emphasis, sentences,
//! paragraphs and `<say-as>`, in one voice and language. A SPEAK's plan holds it as a
//! [`PlanItem::Speech`](crate::PlanItem::Speech) between the items that must stay apart
//! (marks, breaks, audio), so that markers and audio keep their places while the text in
//! between keeps its intonation.

use crate::headers::Prosody;
use crate::say_as::{self, SayAsText};

/// A voice's gender (`Voice-Gender`, `<voice gender>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gender {
    /// `male`.
    Male,
    /// `female`.
    Female,
    /// `neutral`.
    Neutral,
}

impl Gender {
    /// `male`, `female` or `neutral`, in any case.
    pub fn parse(value: &str) -> Option<Gender> {
        let value = value.trim();
        [
            ("male", Gender::Male),
            ("female", Gender::Female),
            ("neutral", Gender::Neutral),
        ]
        .into_iter()
        .find_map(|(name, g)| name.eq_ignore_ascii_case(value).then_some(g))
    }

    /// The SSML name.
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
            Gender::Neutral => "neutral",
        }
    }
}

/// The voice a piece of text asks for (`<voice>` or the `Voice-*` parameters); every field
/// is a preference the synthesizer matches as well as it can.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VoiceSelection {
    /// A synthesizer's voice name.
    pub name: Option<String>,
    /// The voice's gender.
    pub gender: Option<Gender>,
    /// The voice's age in years.
    pub age: Option<u32>,
    /// Which of several matching voices (1 = the first).
    pub variant: Option<u32>,
}

impl VoiceSelection {
    /// True when nothing is asked for.
    pub fn is_empty(&self) -> bool {
        *self == VoiceSelection::default()
    }

    /// `changes`' values where it has them, ours elsewhere.
    pub fn overlaid(&self, changes: &VoiceSelection) -> VoiceSelection {
        VoiceSelection {
            name: changes.name.clone().or_else(|| self.name.clone()),
            gender: changes.gender.or(self.gender),
            age: changes.age.or(self.age),
            variant: changes.variant.or(self.variant),
        }
    }
}

/// An SSML element whose effect a synthesizer renders within the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Markup {
    /// `<p>`.
    Paragraph,
    /// `<s>`.
    Sentence,
    /// `<emphasis level>`: `none`, `reduced`, `moderate` or `strong` (x-strong is strong).
    Emphasis(&'static str),
    /// `<prosody>` in percent of the enclosing speech (100 = unchanged).
    Prosody(Prosody),
}

/// One piece of a [`Speech`]: text, the start or end of markup, or a `<say-as>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpeechPart {
    /// Text as written (whitespace not yet collapsed).
    Text(String),
    /// Markup starts; the matching [`SpeechPart::Close`] ends it.
    Open(Markup),
    /// The innermost open markup ends.
    Close,
    /// `<say-as>`, rendered once the language is known.
    SayAs {
        /// `interpret-as`.
        interpret_as: String,
        /// `format`.
        format: Option<String>,
        /// The content.
        text: String,
    },
}

/// Text in one voice and language with the markup a synthesizer renders itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Speech {
    /// Text, markup and say-as in order; every Open has its Close.
    pub parts: Vec<SpeechPart>,
    /// The voice asked for.
    pub voice: VoiceSelection,
    /// The language asked for (`xml:lang`).
    pub language: Option<String>,
}

impl Speech {
    /// The content of an SSML `<speak>` (no root element) for a synthesizer that reads
    /// `<p>`, `<s>`, `<emphasis>`, `<prosody>` with percentages and `<say-as
    /// interpret-as="characters">`; every other say-as is rendered into words for
    /// `language`. Text is escaped and whitespace collapsed.
    pub fn to_ssml(&self, language: &str) -> String {
        let mut out = SsmlWriter::default();
        let mut open: Vec<Markup> = Vec::new();
        for part in &self.parts {
            match part {
                SpeechPart::Text(text) => out.text(text),
                SpeechPart::Open(markup) => {
                    open.push(*markup);
                    match markup {
                        Markup::Paragraph => out.open("<p>"),
                        Markup::Sentence => out.open("<s>"),
                        Markup::Emphasis(level) => {
                            out.open(&format!("<emphasis level=\"{level}\">"))
                        }
                        Markup::Prosody(p) => {
                            let mut tag = String::from("<prosody");
                            for (name, value) in
                                [("rate", p.rate), ("pitch", p.pitch), ("volume", p.volume)]
                            {
                                if let Some(v) = value {
                                    tag.push_str(&format!(" {name}=\"{v}%\""));
                                }
                            }
                            tag.push('>');
                            out.open(&tag);
                        }
                    }
                }
                SpeechPart::Close => {
                    if let Some(markup) = open.pop() {
                        out.close(closing_tag(markup));
                    }
                }
                SpeechPart::SayAs {
                    interpret_as,
                    format,
                    text,
                } => match say_as::render(interpret_as, format.as_deref(), text, language) {
                    SayAsText::Words(words) => out.text(&words),
                    SayAsText::Characters(chars) => {
                        out.open("<say-as interpret-as=\"characters\">");
                        out.text(&chars);
                        out.close("</say-as>");
                    }
                },
            }
        }
        // Parts from the SSML reader are balanced; this keeps hand-made ones well-formed.
        while let Some(markup) = open.pop() {
            out.close(closing_tag(markup));
        }
        out.out
    }

    /// The words alone, for a synthesizer without SSML: say-as rendered for `language`,
    /// characters spaced apart, sentences and paragraphs apart.
    pub fn plain_text(&self, language: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                SpeechPart::Text(text) => out.push_str(text),
                SpeechPart::Open(_) | SpeechPart::Close => out.push(' '),
                SpeechPart::SayAs {
                    interpret_as,
                    format,
                    text,
                } => match say_as::render(interpret_as, format.as_deref(), text, language) {
                    SayAsText::Words(words) => out.push_str(&words),
                    SayAsText::Characters(chars) => {
                        for c in chars.chars().filter(|c| !c.is_whitespace()) {
                            out.push(' ');
                            out.push(c);
                        }
                        out.push(' ');
                    }
                },
            }
        }
        collapse_whitespace(&out)
    }
}

fn closing_tag(markup: Markup) -> &'static str {
    match markup {
        Markup::Paragraph => "</p>",
        Markup::Sentence => "</s>",
        Markup::Emphasis(_) => "</emphasis>",
        Markup::Prosody(_) => "</prosody>",
    }
}

/// Writes SSML text and tags with whitespace collapsed to single spaces, none at the start,
/// the end or just inside an opening tag.
#[derive(Default)]
struct SsmlWriter {
    out: String,
    /// Whitespace was seen and not written yet.
    space: bool,
    /// Nothing but opening tags since the start.
    after_open: bool,
}

impl SsmlWriter {
    fn text(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_whitespace() {
                self.space = true;
                continue;
            }
            self.flush_space();
            match c {
                '&' => self.out.push_str("&amp;"),
                '<' => self.out.push_str("&lt;"),
                '>' => self.out.push_str("&gt;"),
                '"' => self.out.push_str("&quot;"),
                '\'' => self.out.push_str("&apos;"),
                c => self.out.push(c),
            }
        }
    }

    fn open(&mut self, tag: &str) {
        self.flush_space();
        self.out.push_str(tag);
        self.after_open = true;
    }

    /// Whitespace before a closing tag moves after it.
    fn close(&mut self, tag: &str) {
        self.out.push_str(tag);
        self.after_open = false;
    }

    fn flush_space(&mut self) {
        if self.space && !self.out.is_empty() && !self.after_open {
            self.out.push(' ');
        }
        self.space = false;
        self.after_open = false;
    }
}

pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_markup_say_as_and_escapes() {
        let speech = Speech {
            parts: vec![
                SpeechPart::Text(" Tom & Jerry  ".into()),
                SpeechPart::Open(Markup::Prosody(Prosody {
                    rate: Some(150),
                    volume: None,
                    pitch: Some(80),
                })),
                SpeechPart::Open(Markup::Emphasis("strong")),
                SpeechPart::Text("fast".into()),
                SpeechPart::Close,
                SpeechPart::Close,
                SpeechPart::Text(" on ".into()),
                SpeechPart::SayAs {
                    interpret_as: "date".into(),
                    format: Some("ymd".into()),
                    text: "2026-11-24".into(),
                },
                SpeechPart::Text(" ".into()),
                SpeechPart::Open(Markup::Sentence),
                SpeechPart::Text("code ".into()),
                SpeechPart::SayAs {
                    interpret_as: "characters".into(),
                    format: None,
                    text: "AB<".into(),
                },
                SpeechPart::Close,
            ],
            voice: VoiceSelection::default(),
            language: None,
        };
        assert_eq!(
            speech.to_ssml("en-US"),
            "Tom &amp; Jerry <prosody rate=\"150%\" pitch=\"80%\"><emphasis level=\"strong\">\
             fast</emphasis></prosody> on November 24th, 2026 <s>code <say-as \
             interpret-as=\"characters\">AB&lt;</say-as></s>"
        );
        assert_eq!(
            speech.plain_text("de"),
            "Tom & Jerry fast on 24. November 2026 code A B <"
        );
    }

    #[test]
    fn genders_and_voice_overlays() {
        assert_eq!(Gender::parse(" Female"), Some(Gender::Female));
        assert_eq!(Gender::parse("other"), None);
        let outer = VoiceSelection {
            name: Some("en-gb".into()),
            gender: Some(Gender::Male),
            ..VoiceSelection::default()
        };
        let inner = VoiceSelection {
            gender: Some(Gender::Female),
            age: Some(70),
            ..VoiceSelection::default()
        };
        assert_eq!(
            outer.overlaid(&inner),
            VoiceSelection {
                name: Some("en-gb".into()),
                gender: Some(Gender::Female),
                age: Some(70),
                variant: None
            }
        );
        assert!(VoiceSelection::default().is_empty() && !inner.is_empty());
    }
}
