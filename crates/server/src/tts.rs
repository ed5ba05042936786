//! Text-to-speech: a [`SpeechEngine`] renders an [`Utterance`] (text or SSML, voice,
//! language, rate, pitch, volume) into a [`Clip`] like any audio file, and
//! [`TextToSpeech`] puts a byte-bounded cache in front of it, so that a prompt spoken again
//! is not synthesised again and identical requests that arrive together share one
//! synthesis.
//!
//! The engine today is espeak-ng ([`EspeakNg`]), run as one subprocess per utterance
//! rather than linked as a library. A process keeps the server safe from the engine: a
//! crash (espeak-ng 1.51 segfaults on some voice names, `-v Annie`) fails one SPEAK with
//! `004 error` instead of ending every call; the build needs no C library or headers; and
//! libespeak-ng's global state (one voice, one set of parameters per process) would
//! otherwise serialise every channel behind a lock. The cost, measured on the 2-core test
//! machine: starting espeak-ng and loading its voice takes about 15 ms, synthesising a
//! 20-word sentence (6.4 s of speech) about 10 ms more, and decoding and resampling its
//! 22.05 kHz output to 8 kHz about 10 ms — some 35 ms in all, 180 times real time (the
//! first utterance of an engine also lists the voices, about 30 ms). The cache takes even
//! that away for repeated prompts.
//!
//! The installed voices are learnt once per engine (`espeak-ng --voices`, and
//! `--voices=variant` for the variants that give a gender or an age), and BCP 47 tags map
//! onto them case-insensitively, falling back from region to language (`en-AU` → `en`,
//! which espeak-ng serves with `en-gb`). A language no voice speaks is
//! [`TtsError::Language`], `005 language-unsupported` for MRCP.

use crate::config;
use imss_media::{Clip, decode_bytes, resample_to_8k};
use imss_mrcp::{Gender, SpeakSettings, Speech, VoiceSelection};
use lru::LruCache;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// Why text could not be spoken; each maps to an MRCP completion cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TtsError {
    /// The engine is not installed, not configured or failed (`004 error`).
    #[error("text-to-speech engine {engine:?} cannot run: {detail}")]
    Unavailable {
        /// Engine name from `[tts]`.
        engine: String,
        /// What went wrong.
        detail: String,
    },
    /// The engine refused the voice (`005 language-unsupported`).
    #[error("voice {voice:?} is not available: {detail}")]
    Voice {
        /// The voice asked for.
        voice: String,
        /// The engine's message.
        detail: String,
    },
    /// No installed voice speaks the language (`005 language-unsupported`).
    #[error("language {language:?} is not supported: {detail}")]
    Language {
        /// The BCP 47 tag asked for.
        language: String,
        /// What the engine offers instead.
        detail: String,
    },
    /// The engine's output could not be decoded (`004 error`).
    #[error("text-to-speech output unreadable: {0}")]
    Output(String),
}

/// Longest text rendered at once, in bytes: more is cut, not a reason to block.
const MAX_TEXT: usize = 64 * 1024;

/// How fast, how high and how loud a voice speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpeechStyle {
    /// Speaking rate in words per minute (80 to 450 are used).
    pub rate_wpm: u32,
    /// Base pitch in percent of the voice's own (100 = unchanged).
    pub pitch_percent: u16,
    /// Loudness in percent of the voice's own (0 = silent, 100 = unchanged, 200 at most).
    pub volume_percent: u16,
}

impl SpeechStyle {
    /// `[tts]`'s rate, pitch and volume.
    pub fn from_config(config: &config::Tts) -> SpeechStyle {
        SpeechStyle {
            rate_wpm: config.rate_wpm,
            pitch_percent: config.pitch_percent,
            volume_percent: config.volume_percent,
        }
    }

    /// This style with an MRCP prosody (`Prosody-Rate`, `-Pitch`, `-Volume`) applied: its
    /// percentages scale ours.
    pub fn with_prosody(self, prosody: &imss_mrcp::Prosody) -> SpeechStyle {
        let scale = |base: u32, percent: Option<u16>| {
            percent.map_or(base, |p| base.saturating_mul(u32::from(p)) / 100)
        };
        let percent = |base: u16, p: Option<u16>, max: u32| {
            u16::try_from(scale(u32::from(base), p).min(max)).unwrap_or(u16::MAX)
        };
        SpeechStyle {
            rate_wpm: scale(self.rate_wpm, prosody.rate),
            pitch_percent: percent(self.pitch_percent, prosody.pitch, 400),
            volume_percent: percent(self.volume_percent, prosody.volume, 200),
        }
    }
}

/// One piece of text to render, with everything that changes how it sounds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Utterance {
    /// Plain text, or the content of an SSML `<speak>` (no root element) when `ssml`.
    pub text: String,
    /// Whether `text` is SSML markup.
    pub ssml: bool,
    /// An engine voice name (`en-gb`, a variant such as `Annie`, or `voice+variant`).
    pub voice: Option<String>,
    /// The voice's gender.
    pub gender: Option<Gender>,
    /// The voice's age in years.
    pub age: Option<u32>,
    /// The language, a BCP 47 tag; `None` for the engine's default voice.
    pub language: Option<String>,
    /// Rate, pitch and volume.
    pub style: SpeechStyle,
}

impl Utterance {
    /// Plain `text` in the default voice.
    pub fn new(text: impl Into<String>, style: SpeechStyle) -> Utterance {
        Utterance {
            text: text.into(),
            ssml: false,
            voice: None,
            gender: None,
            age: None,
            language: None,
            style,
        }
    }
}

/// What a SPEAK's text is spoken with where its SSML does not say: the session's `Voice-*`,
/// `Speech-Language` and `Prosody-*` parameters over `[tts]`.
#[derive(Clone, Debug)]
pub struct SpeakDefaults {
    /// `Voice-Name`, `Voice-Gender`, `Voice-Age`.
    pub voice: VoiceSelection,
    /// `Speech-Language`.
    pub language: Option<String>,
    /// The language `<say-as>` is read in when nothing names one: `[tts] voice`.
    pub fallback_language: String,
    /// `[tts]` with `Prosody-*` applied.
    pub style: SpeechStyle,
}

impl SpeakDefaults {
    /// The defaults of a SPEAK with `settings` on a server configured with `config`.
    pub fn new(config: &config::Tts, settings: &SpeakSettings) -> SpeakDefaults {
        SpeakDefaults {
            voice: VoiceSelection {
                name: settings.voice_name.clone(),
                gender: settings.voice_gender.as_deref().and_then(Gender::parse),
                age: settings.params.voice_age().ok().flatten(),
                variant: settings.params.voice_variant().ok().flatten(),
            },
            language: settings.speech_language.clone(),
            fallback_language: config.voice.clone(),
            style: SpeechStyle::from_config(config).with_prosody(&settings.prosody),
        }
    }

    /// Plain text, in the voice it names (`<voice name>`) or else the session's, and in
    /// its language (`xml:lang`) or else the session's.
    pub fn text(&self, text: &str, voice: Option<&str>, language: Option<&str>) -> Utterance {
        let asked = VoiceSelection {
            name: voice.map(str::to_string),
            ..VoiceSelection::default()
        };
        self.utterance(text.to_string(), false, &asked, language)
    }

    /// Text with markup, rendered as SSML for the language it is spoken in.
    pub fn speech(&self, speech: &Speech) -> Utterance {
        let language = speech.language.as_deref().or(self.language.as_deref());
        let ssml = speech.to_ssml(language.unwrap_or(&self.fallback_language));
        self.utterance(ssml, true, &speech.voice, speech.language.as_deref())
    }

    fn utterance(
        &self,
        text: String,
        ssml: bool,
        asked: &VoiceSelection,
        language: Option<&str>,
    ) -> Utterance {
        // A voice the text names replaces the session's; other choices refine it.
        let voice = if asked.name.is_some() {
            asked.clone()
        } else {
            self.voice.overlaid(asked)
        };
        Utterance {
            text,
            ssml,
            voice: voice.name,
            gender: voice.gender,
            age: voice.age,
            language: language.or(self.language.as_deref()).map(str::to_string),
            style: self.style,
        }
    }
}

/// A speech synthesizer.
pub trait SpeechEngine: Send + Sync {
    /// The name `[tts] engine` gives it; part of every cache key.
    fn name(&self) -> &str;

    /// Whether some voice speaks the language of BCP 47 `tag`.
    fn supports_language(&self, tag: &str) -> bool;

    /// Renders `utterance` as 8 kHz audio. Blocking: call it from the blocking pool.
    fn synthesize(&self, utterance: &Utterance) -> Result<Clip, TtsError>;
}

/// espeak-ng, run once per utterance (see the module documentation for why).
pub struct EspeakNg {
    name: String,
    program: PathBuf,
    default_voice: String,
    catalog: OnceLock<Arc<VoiceCatalog>>,
    runs: AtomicU64,
}

impl EspeakNg {
    /// The engine `program` (`espeak-ng`, found on `PATH`, or a path), speaking in
    /// `default_voice` (an espeak-ng voice such as `en-us`) when an utterance names neither
    /// a voice nor a language.
    pub fn new(program: impl Into<PathBuf>, default_voice: &str) -> EspeakNg {
        let program = program.into();
        EspeakNg {
            name: program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "espeak-ng".into()),
            program,
            default_voice: default_voice.to_string(),
            catalog: OnceLock::new(),
            runs: AtomicU64::new(0),
        }
    }

    /// How many times this engine has synthesised (processes started for speech).
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    fn unavailable(&self, detail: impl Into<String>) -> TtsError {
        TtsError::Unavailable {
            engine: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// The installed voices, learnt on first use. A failure is not kept: the next call
    /// tries again (the package may be installed meanwhile).
    fn catalog(&self) -> Result<&VoiceCatalog, TtsError> {
        if let Some(catalog) = self.catalog.get() {
            return Ok(catalog);
        }
        let list = |arg: &str| -> Result<String, TtsError> {
            let out = Command::new(&self.program)
                .arg(arg)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| self.unavailable(format!("{e} (Debian package espeak-ng)")))?;
            if !out.status.success() {
                return Err(self.unavailable(format!(
                    "{arg}: {} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let catalog = VoiceCatalog::parse(&list("--voices")?, &list("--voices=variant")?);
        if catalog.voices.is_empty() {
            return Err(self.unavailable("no voices installed (Debian package espeak-ng-data)"));
        }
        tracing::debug!(
            engine = %self.name,
            voices = catalog.voices.len(),
            variants = catalog.variants.len(),
            "text-to-speech voices learnt"
        );
        Ok(self.catalog.get_or_init(|| Arc::new(catalog)))
    }

    /// The `-v` argument for `utterance`: a voice file, and a variant for its gender, age
    /// or name.
    fn voice_argument(&self, utterance: &Utterance) -> Result<String, TtsError> {
        let catalog = self.catalog()?;
        let by_language = match &utterance.language {
            Some(tag) => {
                Some(
                    catalog
                        .voice_for_language(tag)
                        .ok_or_else(|| TtsError::Language {
                            language: tag.clone(),
                            detail: format!("no {} voice speaks it", self.name),
                        })?,
                )
            }
            None => None,
        };
        let default = || {
            catalog
                .voice_named(&self.default_voice)
                .or_else(|| catalog.voice_for_language(&self.default_voice))
                .ok_or_else(|| TtsError::Voice {
                    voice: self.default_voice.clone(),
                    detail: format!("[tts] voice names no installed {} voice", self.name),
                })
        };
        // A name may be a voice, a variant, or both as `voice+variant`.
        let (mut voice, mut variant) = (None, None);
        if let Some(name) = &utterance.voice {
            let (voice_part, variant_part) = match name.split_once('+') {
                Some((v, variant)) => (v, Some(variant)),
                None => (name.as_str(), None),
            };
            voice = catalog.voice_named(voice_part);
            variant = variant_part
                .or(voice.is_none().then_some(voice_part))
                .and_then(|v| catalog.variant_named(v));
            if voice.is_none() && variant.is_none() {
                tracing::debug!(voice = %name, "no such voice; choosing by language and gender");
            }
        }
        let voice = match (voice, by_language) {
            (Some(v), _) => v,
            // The configured voice when it speaks the language asked for.
            (None, Some(v)) => match (&utterance.language, default()) {
                (Some(tag), Ok(d)) if d.serves(tag) => d,
                _ => v,
            },
            (None, None) => default()?,
        };
        let variant = variant.or_else(|| catalog.variant_for(utterance.gender, utterance.age));
        Ok(match variant {
            Some(variant) => format!("{}+{}", voice.file, variant.file),
            None => voice.file.clone(),
        })
    }
}

impl SpeechEngine for EspeakNg {
    fn name(&self) -> &str {
        &self.name
    }

    fn supports_language(&self, tag: &str) -> bool {
        self.catalog()
            .is_ok_and(|c| c.voice_for_language(tag).is_some())
    }

    fn synthesize(&self, utterance: &Utterance) -> Result<Clip, TtsError> {
        let voice = self.voice_argument(utterance)?;
        let style = &utterance.style;
        let text = &utterance.text[..floor_char_boundary(&utterance.text, MAX_TEXT)];
        let mut command = Command::new(&self.program);
        command.args([
            "-v",
            &voice,
            "-s",
            &style.rate_wpm.clamp(80, 450).to_string(),
            // -p: 0–99, 50 the voice's own; -a: 0–200, 100 the voice's own.
            "-p",
            &(u32::from(style.pitch_percent) / 2).min(99).to_string(),
            "-a",
            &u32::from(style.volume_percent).min(200).to_string(),
            "--stdout",
        ]);
        let ssml;
        let text = if utterance.ssml {
            command.arg("-m");
            ssml = format!("<speak>{text}</speak>");
            ssml.as_str()
        } else {
            text
        };
        self.runs.fetch_add(1, Ordering::Relaxed);
        let out = command
            .arg("--")
            .arg(text)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.unavailable(format!("{e} (Debian package espeak-ng)")))?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !out.status.success() || out.stdout.len() <= 44 {
            if stderr.to_ascii_lowercase().contains("voice") {
                return Err(TtsError::Voice {
                    voice,
                    detail: stderr,
                });
            }
            return Err(self.unavailable(if stderr.is_empty() {
                format!("{} with voice {voice}", out.status)
            } else {
                stderr
            }));
        }
        let pcm =
            decode_bytes(out.stdout, Some("wav")).map_err(|e| TtsError::Output(e.to_string()))?;
        let samples = resample_to_8k(&pcm).map_err(|e| TtsError::Output(e.to_string()))?;
        Ok(Clip::from_samples_8k(&samples))
    }
}

/// A voice for one language, from `espeak-ng --voices`.
#[derive(Clone, Debug, PartialEq)]
struct LanguageVoice {
    /// Its language (`en-us`), lower case.
    id: String,
    /// Its name (`English_(America)`).
    name: String,
    /// Its file (`gmw/en-US`), what `-v` is given.
    file: String,
    /// Languages it speaks, lower case, with espeak-ng's priority (lower is better).
    languages: Vec<(String, u32)>,
}

impl LanguageVoice {
    /// Whether this voice is the one for `tag` or speaks it as one of its languages.
    fn serves(&self, tag: &str) -> bool {
        let tag = normalise_tag(tag);
        self.languages.iter().any(|(l, _)| *l == tag)
    }
}

/// A variant (`+f3`), from `espeak-ng --voices=variant`.
#[derive(Clone, Debug, PartialEq)]
struct Variant {
    /// Its name (`female3`).
    name: String,
    /// Its file under `!v/` (`f3`), what follows the `+`.
    file: String,
    gender: Option<Gender>,
    age: Option<u32>,
}

/// The voices and variants installed.
#[derive(Debug, Default)]
struct VoiceCatalog {
    voices: Vec<LanguageVoice>,
    variants: Vec<Variant>,
}

/// Variants chosen for a gender when no age is asked for, best first: espeak-ng's
/// clearest adult voices.
const PREFERRED_VARIANTS: [(Gender, &[&str]); 2] = [
    (Gender::Female, &["f3", "f2", "f4", "f5", "f1"]),
    (Gender::Male, &["m3", "m2", "m1", "m4"]),
];

/// The age taken for a variant that states none.
const ADULT_AGE: u32 = 35;

impl VoiceCatalog {
    /// Reads the tables espeak-ng prints: `Pty Language Age/Gender VoiceName File Other
    /// Languages`, the last column as `(tag priority)` groups.
    fn parse(voices: &str, variants: &str) -> VoiceCatalog {
        let rows = |table: &str| -> Vec<Vec<String>> {
            table
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .filter(|cols| cols.len() >= 5)
                .collect()
        };
        let mut catalog = VoiceCatalog::default();
        for cols in rows(voices) {
            let id = cols[1].to_ascii_lowercase();
            let mut languages = vec![(id.clone(), cols[0].parse().unwrap_or(5))];
            let others = cols[5..].join(" ");
            for group in others.split(['(', ')']) {
                let mut it = group.split_whitespace();
                if let (Some(tag), Some(priority)) = (it.next(), it.next()) {
                    languages.push((tag.to_ascii_lowercase(), priority.parse().unwrap_or(5)));
                }
            }
            catalog.voices.push(LanguageVoice {
                id,
                name: cols[3].clone(),
                file: cols[4].clone(),
                languages,
            });
        }
        for cols in rows(variants) {
            let (age, gender) = cols[2].split_once('/').unwrap_or(("--", "-"));
            let Some(file) = cols[4].strip_prefix("!v/") else {
                continue;
            };
            catalog.variants.push(Variant {
                name: cols[3].clone(),
                file: file.to_string(),
                gender: match gender {
                    "M" => Some(Gender::Male),
                    "F" => Some(Gender::Female),
                    _ => None,
                },
                age: age.parse().ok(),
            });
        }
        catalog
    }

    /// The voice for BCP 47 `tag`: the best one for the whole tag, else for the tag without
    /// its last subtag, and so on down to the language.
    fn voice_for_language(&self, tag: &str) -> Option<&LanguageVoice> {
        let mut tag = normalise_tag(tag);
        loop {
            let best = self
                .voices
                .iter()
                .filter_map(|v| {
                    v.languages
                        .iter()
                        .find(|(l, _)| *l == tag)
                        .map(|(_, priority)| (*priority, v))
                })
                .min_by_key(|(priority, _)| *priority);
            if let Some((_, voice)) = best {
                return Some(voice);
            }
            tag.truncate(tag.rfind('-')?);
        }
    }

    /// The voice `name` names: its language (`en-us`), its name (`English_(America)`,
    /// spaces for underscores allowed) or its file (`gmw/en-US`), in any case.
    fn voice_named(&self, name: &str) -> Option<&LanguageVoice> {
        let wanted = name.trim().replace(' ', "_");
        self.voices.iter().find(|v| {
            v.id.eq_ignore_ascii_case(&wanted)
                || v.name.eq_ignore_ascii_case(&wanted)
                || v.file.eq_ignore_ascii_case(&wanted)
        })
    }

    /// The variant `name` names, by its name (`Annie`, `female3`) or file (`f3`).
    fn variant_named(&self, name: &str) -> Option<&Variant> {
        let wanted = name.trim();
        self.variants
            .iter()
            .find(|v| v.name.eq_ignore_ascii_case(wanted) || v.file.eq_ignore_ascii_case(wanted))
    }

    /// The variant for a gender and age: without an age, the preferred one of the gender;
    /// with one, the variant of that gender (male when none is given: espeak-ng's voices
    /// are male) whose age is nearest. Nothing for neutral or nothing asked.
    fn variant_for(&self, gender: Option<Gender>, age: Option<u32>) -> Option<&Variant> {
        let gender = match (gender, age) {
            (Some(Gender::Neutral), _) | (None, None) => return None,
            // An adult age alone keeps the voice as it is.
            (None, Some(a)) if a < 60 => return None,
            (None, Some(_)) => Gender::Male,
            (Some(g), _) => g,
        };
        let preferred = PREFERRED_VARIANTS
            .iter()
            .find(|(g, _)| *g == gender)
            .map_or(&[][..], |(_, names)| *names);
        let rank = |v: &Variant| {
            preferred
                .iter()
                .position(|p| *p == v.file)
                .unwrap_or(preferred.len())
        };
        self.variants
            .iter()
            .filter(|v| v.gender == Some(gender))
            .min_by_key(|v| {
                let distance = age.map_or(0, |a| a.abs_diff(v.age.unwrap_or(ADULT_AGE)));
                (distance, rank(v))
            })
    }
}

/// A BCP 47 tag in espeak-ng's spelling: lower case, `-` between subtags.
fn normalise_tag(tag: &str) -> String {
    tag.trim().to_ascii_lowercase().replace('_', "-")
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

/// Counters of a [`TextToSpeech`]'s cache, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests the engine rendered.
    pub misses: u64,
    /// Requests that waited for an identical one already being rendered.
    pub joined: u64,
    /// Clips held.
    pub entries: usize,
    /// Bytes held (clips and their keys).
    pub bytes: usize,
}

/// An engine with a cache of what it rendered.
pub struct TextToSpeech {
    engine: Arc<dyn SpeechEngine>,
    max_bytes: usize,
    cache: Mutex<CacheState>,
    in_flight: Mutex<HashMap<Utterance, Arc<Pending>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    joined: AtomicU64,
    synthesis: crate::metrics::LatencyHistogram,
}

struct CacheState {
    clips: LruCache<Utterance, Arc<Clip>>,
    bytes: usize,
}

/// A synthesis under way that identical requests wait for.
#[derive(Default)]
struct Pending {
    result: Mutex<Option<Result<Arc<Clip>, TtsError>>>,
    ready: Condvar,
}

impl Pending {
    fn finish(&self, result: Result<Arc<Clip>, TtsError>) {
        *lock(&self.result) = Some(result);
        self.ready.notify_all();
    }

    fn wait(&self) -> Result<Arc<Clip>, TtsError> {
        let mut slot = lock(&self.result);
        loop {
            if let Some(result) = slot.as_ref() {
                return result.clone();
            }
            slot = self
                .ready
                .wait(slot)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// The request that renders an utterance for everyone waiting on it; if it ends without a
/// result (the engine panicked), the waiters get an error rather than waiting forever.
struct Lead<'a> {
    tts: &'a TextToSpeech,
    utterance: &'a Utterance,
    pending: Arc<Pending>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        lock(&self.tts.in_flight).remove(self.utterance);
        if lock(&self.pending.result).is_none() {
            self.pending.finish(Err(TtsError::Output(
                "the synthesis ended without a result".into(),
            )));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TextToSpeech {
    /// `engine` with a cache of at most `cache_bytes` of clips (0: none kept).
    pub fn new(engine: Arc<dyn SpeechEngine>, cache_bytes: usize) -> TextToSpeech {
        TextToSpeech {
            engine,
            max_bytes: cache_bytes,
            cache: Mutex::new(CacheState {
                clips: LruCache::unbounded(),
                bytes: 0,
            }),
            in_flight: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            synthesis: crate::metrics::LatencyHistogram::default(),
        }
    }

    /// The engine `[tts]` names, with its cache.
    pub fn from_config(config: &config::Tts) -> Result<TextToSpeech, TtsError> {
        let engine: Arc<dyn SpeechEngine> = match config.engine.as_str() {
            "espeak-ng" | "espeak" => Arc::new(EspeakNg::new(&config.engine, &config.voice)),
            other => {
                return Err(TtsError::Unavailable {
                    engine: other.into(),
                    detail: "only espeak-ng is supported".into(),
                });
            }
        };
        let bytes = usize::try_from(config.cache_mib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20);
        Ok(TextToSpeech::new(engine, bytes))
    }

    /// The engine.
    pub fn engine(&self) -> &dyn SpeechEngine {
        self.engine.as_ref()
    }

    /// The clip of `utterance`: from the cache, from an identical request being rendered
    /// now, or rendered by the engine. Blocking: call it from the blocking pool.
    pub fn speak(&self, utterance: &Utterance) -> Result<Arc<Clip>, TtsError> {
        if let Some(clip) = self.cached(utterance) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(clip);
        }
        let (pending, leads) = {
            let mut in_flight = lock(&self.in_flight);
            match in_flight.get(utterance) {
                Some(p) => (p.clone(), false),
                None => {
                    let p = Arc::new(Pending::default());
                    in_flight.insert(utterance.clone(), p.clone());
                    (p, true)
                }
            }
        };
        if !leads {
            self.joined.fetch_add(1, Ordering::Relaxed);
            return pending.wait();
        }
        let lead = Lead {
            tts: self,
            utterance,
            pending,
        };
        // A request that finished between the look-up above and now left its clip here.
        if let Some(clip) = self.cached(utterance) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            lead.pending.finish(Ok(clip.clone()));
            return Ok(clip);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = self.engine.synthesize(utterance).map(Arc::new);
        self.synthesis.observe(started.elapsed());
        if let Ok(clip) = &result {
            self.keep(utterance, clip);
        }
        lead.pending.finish(result.clone());
        result
    }

    /// How long the engine took per synthesis, for metrics.
    pub fn synthesis_latency(&self) -> &crate::metrics::LatencyHistogram {
        &self.synthesis
    }

    /// Cache and in-flight counters.
    pub fn stats(&self) -> CacheStats {
        let cache = lock(&self.cache);
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
            entries: cache.clips.len(),
            bytes: cache.bytes,
        }
    }

    fn cached(&self, utterance: &Utterance) -> Option<Arc<Clip>> {
        lock(&self.cache).clips.get(utterance).cloned()
    }

    fn keep(&self, utterance: &Utterance, clip: &Arc<Clip>) {
        let size = entry_bytes(utterance, clip);
        if size > self.max_bytes {
            return;
        }
        let mut cache = lock(&self.cache);
        if let Some(old) = cache.clips.pop(utterance) {
            cache.bytes -= entry_bytes(utterance, &old);
        }
        while cache.bytes + size > self.max_bytes {
            match cache.clips.pop_lru() {
                Some((key, old)) => cache.bytes -= entry_bytes(&key, &old),
                None => break,
            }
        }
        cache.bytes += size;
        cache.clips.put(utterance.clone(), clip.clone());
    }
}

/// What a cache entry costs: the clip and its key's text.
fn entry_bytes(utterance: &Utterance, clip: &Clip) -> usize {
    clip.memory_bytes()
        + std::mem::size_of::<Utterance>()
        + utterance.text.len()
        + utterance.voice.as_ref().map_or(0, String::len)
        + utterance.language.as_ref().map_or(0, String::len)
}

/// The text-to-speech of `config`, made on first use and shared by every SPEAK of the
/// process with the same `[tts]` (one cache for all channels).
pub fn service(config: &config::Tts) -> Result<Arc<TextToSpeech>, TtsError> {
    static SERVICES: Mutex<Vec<(config::Tts, Arc<TextToSpeech>)>> = Mutex::new(Vec::new());
    let mut services = lock(&SERVICES);
    if let Some((_, tts)) = services.iter().find(|(c, _)| c == config) {
        return Ok(tts.clone());
    }
    let tts = Arc::new(TextToSpeech::from_config(config)?);
    services.push((config.clone(), tts.clone()));
    Ok(tts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imss_mrcp::{Headers, PlanItem, Prosody, parse_speak_body};
    use std::time::Duration;

    /// Twenty words.
    const SENTENCE: &str = "The quick brown fox jumps over the lazy dog while seven tired \
                            clerks answer every ringing telephone in the office.";

    /// What `espeak-ng --voices` and `--voices=variant` print (1.51, abridged).
    const VOICES: &str = "Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  de              --/M      German             gmw/de
 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 5  en-gb-x-rp      --/M      English_(Received_Pronunciation) gmw/en-GB-x-rp       (en-gb 4)(en 5)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  es-419          --/M      Spanish_(Latin_America) roa/es-419           (es-mx 6)(es 6)
 5  es              --/M      Spanish_(Spain)    roa/es
 5  fr-be           --/M      French_(Belgium)   roa/fr-BE            (fr 8)
 5  fr-fr           --/M      French_(France)    roa/fr               (fr 5)
 5  cmn             --/M      Chinese_(Mandarin,_latin_as_English) sit/cmn              (zh-cmn 5)(zh 5)
";
    const VARIANTS: &str =
        "Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  variant         --/F      Annie              !v/Annie
 5  variant         --/F      female2            !v/f2
 5  variant         --/F      female3            !v/f3
 5  variant         --/M      male3              !v/m3
 5  variant         30/M      travis             !v/travis
 5  variant         50/M      male8              !v/m8
 5  variant         70/F      female1            !v/f1
 5  variant         70/M      male1              !v/m1
 5  variant         90/F      grandma            !v/grandma
";

    fn style(rate_wpm: u32) -> SpeechStyle {
        SpeechStyle {
            rate_wpm,
            pitch_percent: 100,
            volume_percent: 100,
        }
    }

    fn settings(headers: &[(&str, &str)]) -> SpeakSettings {
        let mut params = Headers::new();
        for (name, value) in headers {
            params.push(name, *value);
        }
        SpeakSettings {
            kill_on_barge_in: true,
            speech_language: params.speech_language().map(str::to_string),
            voice_name: params.voice_name().map(str::to_string),
            voice_gender: params.voice_gender().ok().flatten().map(str::to_string),
            fetch_timeout: None,
            speak_length: None,
            prosody: Prosody::from_headers(&params).0,
            content_base: None,
            logging_tag: None,
            params,
        }
    }

    fn defaults(headers: &[(&str, &str)]) -> SpeakDefaults {
        SpeakDefaults::new(&config::Tts::default(), &settings(headers))
    }

    #[test]
    fn prosody_scales_rate_pitch_and_volume() {
        let prosody = Prosody {
            rate: Some(200),
            volume: Some(0),
            pitch: Some(150),
        };
        assert_eq!(
            style(175).with_prosody(&prosody),
            SpeechStyle {
                rate_wpm: 350,
                pitch_percent: 150,
                volume_percent: 0
            }
        );
        assert_eq!(style(175).with_prosody(&Prosody::default()), style(175));
        let loud = SpeechStyle {
            volume_percent: 150,
            ..style(175)
        };
        assert_eq!(
            loud.with_prosody(&Prosody {
                volume: Some(200),
                ..Prosody::default()
            })
            .volume_percent,
            200,
            "at most twice the voice's own"
        );
    }

    #[test]
    fn language_tags_map_to_voices_with_region_fallback() {
        let catalog = VoiceCatalog::parse(VOICES, VARIANTS);
        let file = |tag: &str| catalog.voice_for_language(tag).map(|v| v.file.as_str());
        assert_eq!(file("en-US"), Some("gmw/en-US"));
        assert_eq!(file("EN_us"), Some("gmw/en-US"));
        assert_eq!(file("en-GB"), Some("gmw/en"));
        assert_eq!(file("en-AU"), Some("gmw/en"), "en, best served by en-gb");
        assert_eq!(file("en"), Some("gmw/en"));
        assert_eq!(file("de-DE"), Some("gmw/de"));
        assert_eq!(file("de-CH-1996"), Some("gmw/de"));
        assert_eq!(file("fr"), Some("roa/fr"));
        assert_eq!(file("fr-CA"), Some("roa/fr"));
        assert_eq!(file("es-MX"), Some("roa/es-419"));
        assert_eq!(file("es-ES"), Some("roa/es"));
        assert_eq!(file("zh-CN"), Some("sit/cmn"));
        assert_eq!(file("xx-YY"), None);
        assert_eq!(file(""), None);
        let named = |name: &str| catalog.voice_named(name).map(|v| v.file.as_str());
        assert_eq!(named("en-gb"), Some("gmw/en"));
        assert_eq!(named("English (America)"), Some("gmw/en-US"));
        assert_eq!(named("roa/FR"), Some("roa/fr"));
        assert_eq!(named("Mary"), None);
        assert!(catalog.voices[3].serves("EN") && !catalog.voices[3].serves("en-gb"));
    }

    #[test]
    fn gender_and_age_choose_variants() {
        let catalog = VoiceCatalog::parse(VOICES, VARIANTS);
        let variant =
            |g: Option<Gender>, age: Option<u32>| catalog.variant_for(g, age).map(|v| &*v.file);
        assert_eq!(variant(Some(Gender::Female), None), Some("f3"));
        assert_eq!(variant(Some(Gender::Male), None), Some("m3"));
        assert_eq!(variant(Some(Gender::Female), Some(80)), Some("f1"));
        assert_eq!(variant(Some(Gender::Female), Some(95)), Some("grandma"));
        assert_eq!(variant(Some(Gender::Male), Some(50)), Some("m8"));
        assert_eq!(variant(None, Some(75)), Some("m1"));
        assert_eq!(variant(None, Some(30)), None);
        assert_eq!(variant(Some(Gender::Neutral), Some(30)), None);
        assert_eq!(variant(None, None), None);
        assert_eq!(
            catalog.variant_named("annie").map(|v| &*v.file),
            Some("Annie")
        );
        assert_eq!(catalog.variant_named("F2").map(|v| &*v.file), Some("f2"));
    }

    #[test]
    fn utterances_take_the_session_defaults_where_the_text_says_nothing() {
        let d = defaults(&[
            ("Voice-Gender", "female"),
            ("Voice-Age", "70"),
            ("Speech-Language", "de-DE"),
            ("Prosody-Rate", "fast"),
        ]);
        let plain = d.text("Hallo", None, None);
        assert_eq!(
            plain,
            Utterance {
                text: "Hallo".into(),
                ssml: false,
                voice: None,
                gender: Some(Gender::Female),
                age: Some(70),
                language: Some("de-DE".into()),
                style: SpeechStyle {
                    rate_wpm: 262,
                    ..style(175)
                },
            }
        );
        // A voice the text names replaces the session's gender and age.
        let named = d.text("Hello", Some("en-gb"), Some("en-GB"));
        assert_eq!(
            (named.voice.as_deref(), named.gender, named.age),
            (Some("en-gb"), None, None)
        );
        assert_eq!(named.language.as_deref(), Some("en-GB"));
        // SSML without xml:lang: say-as is read in the session's language.
        let plan = parse_speak_body(
            "application/ssml+xml",
            br#"<speak><voice gender="male">Am <say-as interpret-as="date">2026-11-24</say-as></voice></speak>"#,
        )
        .expect("plan");
        let [PlanItem::Speech(speech)] = &plan[..] else {
            panic!("{plan:?}")
        };
        let u = d.speech(speech);
        assert!(u.ssml);
        assert_eq!(u.text, "Am 24. November 2026");
        assert_eq!((u.gender, u.age), (Some(Gender::Male), Some(70)));
        assert_eq!(u.language.as_deref(), Some("de-DE"));
    }

    /// An engine that counts its runs and can be held until released, for the cache alone.
    struct Counting {
        runs: AtomicU64,
        gate: Mutex<bool>,
        opened: Condvar,
    }

    impl SpeechEngine for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn supports_language(&self, _: &str) -> bool {
            true
        }
        fn synthesize(&self, u: &Utterance) -> Result<Clip, TtsError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let mut open = lock(&self.gate);
            while !*open {
                open = self.opened.wait(open).expect("gate");
            }
            if u.text == "fail" {
                return Err(TtsError::Output("asked to fail".into()));
            }
            // One 10 ms block per character.
            Ok(Clip::from_samples_8k(&vec![0.5; 80 * u.text.len()]))
        }
    }

    fn counting(open: bool) -> Arc<Counting> {
        Arc::new(Counting {
            runs: AtomicU64::new(0),
            gate: Mutex::new(open),
            opened: Condvar::new(),
        })
    }

    #[test]
    fn identical_requests_in_flight_share_one_synthesis() {
        let engine = counting(false);
        let tts = Arc::new(TextToSpeech::new(engine.clone(), 1 << 20));
        let u = Utterance::new("hello", style(175));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (tts, u) = (tts.clone(), u.clone());
                std::thread::spawn(move || tts.speak(&u))
            })
            .collect();
        // Let every thread reach the engine or the in-flight entry, then release the engine.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tts.stats().joined < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        *lock(&engine.gate) = true;
        engine.opened.notify_all();
        let clips: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread").expect("clip"))
            .collect();
        assert_eq!(engine.runs.load(Ordering::SeqCst), 1);
        assert!(clips.iter().all(|c| Arc::ptr_eq(c, &clips[0])));
        let stats = tts.stats();
        assert_eq!((stats.misses, stats.joined, stats.entries), (1, 3, 1));
        // Errors are shared too, but not kept.
        let fail = Utterance::new("fail", style(175));
        assert!(tts.speak(&fail).is_err() && tts.speak(&fail).is_err());
        assert_eq!(engine.runs.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_and_keyed_by_everything_that_changes_the_audio() {
        let engine = counting(true);
        let one = entry_bytes(
            &Utterance::new("aaaa", style(175)),
            &Clip::from_samples_8k(&[0.5; 320]),
        );
        let tts = TextToSpeech::new(engine.clone(), 2 * one);
        let a = Utterance::new("aaaa", style(175));
        let b = Utterance::new("bbbb", style(175));
        let c = Utterance::new("cccc", style(175));
        for u in [&a, &b, &a, &c] {
            tts.speak(u).expect("clip");
        }
        // a hit once; c evicted b, the least recently used.
        let stats = tts.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 3, 2));
        assert!(stats.bytes <= 2 * one);
        tts.speak(&a).expect("a");
        tts.speak(&b).expect("b");
        assert_eq!(tts.stats().misses, 4, "b was synthesised again");
        // Rate, pitch, volume, voice and language each make a new entry.
        let variants = [
            Utterance {
                style: style(200),
                ..a.clone()
            },
            Utterance {
                style: SpeechStyle {
                    pitch_percent: 120,
                    ..style(175)
                },
                ..a.clone()
            },
            Utterance {
                style: SpeechStyle {
                    volume_percent: 50,
                    ..style(175)
                },
                ..a.clone()
            },
            Utterance {
                gender: Some(Gender::Female),
                ..a.clone()
            },
            Utterance {
                language: Some("de".into()),
                ..a.clone()
            },
            Utterance {
                ssml: true,
                ..a.clone()
            },
        ];
        for u in &variants {
            tts.speak(u).expect("clip");
        }
        assert_eq!(tts.stats().misses, 10);
        // A clip larger than the whole cache is served, not kept.
        let tiny = TextToSpeech::new(engine, 10);
        tiny.speak(&a).expect("a");
        assert_eq!(tiny.stats().entries, 0);
    }

    fn require_espeak() -> Arc<EspeakNg> {
        assert!(
            std::path::Path::new("/usr/bin/espeak-ng").exists(),
            "espeak-ng is required: install the Debian package espeak-ng (scripts/test does)"
        );
        Arc::new(EspeakNg::new("espeak-ng", "en-us"))
    }

    /// RMS of each 10 ms block.
    fn block_rms(samples: &[f32]) -> Vec<f32> {
        samples
            .chunks(80)
            .map(|b| (b.iter().map(|s| s * s).sum::<f32>() / b.len() as f32).sqrt())
            .collect()
    }

    /// Share of 10 ms blocks with speech in them.
    fn speech_share(clip: &Clip) -> f64 {
        let blocks = block_rms(&clip.to_pcm());
        blocks.iter().filter(|r| **r > 0.02).count() as f64 / blocks.len().max(1) as f64
    }

    /// The longest quiet stretch between the first and the last speech.
    fn longest_pause(samples: &[f32]) -> Duration {
        let blocks = block_rms(samples);
        let loud: Vec<usize> = (0..blocks.len()).filter(|i| blocks[*i] > 0.01).collect();
        let gap = loud.windows(2).map(|w| w[1] - w[0] - 1).max().unwrap_or(0);
        Duration::from_millis(10 * gap as u64)
    }

    /// Median fundamental frequency of the voiced 40 ms frames, by autocorrelation.
    fn median_f0(clip: &Clip) -> f64 {
        let pcm = clip.to_pcm();
        let mut f0s: Vec<f64> = pcm
            .chunks_exact(320)
            .filter(|f| f.iter().map(|s| s * s).sum::<f32>() / 320.0 > 0.002)
            .map(|f| {
                let corr = |lag: usize| (0..320 - lag).map(|i| f[i] * f[i + lag]).sum::<f32>();
                // 70–400 Hz at 8 kHz.
                let lag = (20..115)
                    .max_by(|a, b| corr(*a).total_cmp(&corr(*b)))
                    .unwrap_or(20);
                8000.0 / lag as f64
            })
            .collect();
        assert!(!f0s.is_empty(), "no voiced frames");
        f0s.sort_by(f64::total_cmp);
        f0s[f0s.len() / 2]
    }

    #[test]
    fn twenty_words_last_as_long_as_the_rate_says() {
        let engine = require_espeak();
        let normal = engine
            .synthesize(&Utterance::new(SENTENCE, style(175)))
            .expect("tts");
        let seconds = normal.duration().as_secs_f64();
        assert!((6.0..8.0).contains(&seconds), "{seconds:.2} s at 175 wpm");
        assert!(speech_share(&normal) > 0.5, "speech, not silence");
        let fast = engine
            .synthesize(&Utterance::new(SENTENCE, style(350)))
            .expect("tts");
        let ratio = fast.duration().as_secs_f64() / seconds;
        assert!((0.4..0.65).contains(&ratio), "350 wpm: {ratio:.2} of 175");
        let silent = engine
            .synthesize(&Utterance::new(
                SENTENCE,
                SpeechStyle {
                    volume_percent: 0,
                    ..style(175)
                },
            ))
            .expect("tts");
        assert_eq!(speech_share(&silent), 0.0, "volume 0 is silence");
    }

    #[test]
    fn prosody_rate_and_voice_gender_change_the_speech() {
        let engine = require_espeak();
        let speak = |d: &SpeakDefaults| engine.synthesize(&d.text(SENTENCE, None, None));
        let normal = speak(&defaults(&[])).expect("tts");
        let fast = speak(&defaults(&[("Prosody-Rate", "x-fast")])).expect("tts");
        assert!(
            fast.duration().as_secs_f64() < 0.7 * normal.duration().as_secs_f64(),
            "x-fast: {:?} against {:?}",
            fast.duration(),
            normal.duration()
        );
        let female = speak(&defaults(&[("Voice-Gender", "female")])).expect("tts");
        let male = speak(&defaults(&[("Voice-Gender", "male")])).expect("tts");
        let (f, m) = (median_f0(&female), median_f0(&male));
        assert!(f > 1.4 * m, "female {f:.0} Hz, male {m:.0} Hz");
        // SSML prosody inside the text is honoured by the engine too.
        let plan = parse_speak_body(
            "application/ssml+xml",
            format!(r#"<speak xml:lang="en-US"><prosody rate="200%">{SENTENCE}</prosody></speak>"#)
                .as_bytes(),
        )
        .expect("plan");
        let [PlanItem::Speech(speech)] = &plan[..] else {
            panic!("{plan:?}")
        };
        let ssml_fast = engine
            .synthesize(&defaults(&[]).speech(speech))
            .expect("tts");
        let ratio = ssml_fast.duration().as_secs_f64() / normal.duration().as_secs_f64();
        assert!(
            (0.4..0.7).contains(&ratio),
            "<prosody rate=200%>: {ratio:.2}"
        );
    }

    #[test]
    fn languages_the_engine_lacks_are_language_errors() {
        let engine = require_espeak();
        assert!(engine.supports_language("en-US") && engine.supports_language("DE-de"));
        assert!(!engine.supports_language("xx-YY"));
        let plan = parse_speak_body(
            "application/ssml+xml",
            br#"<speak xml:lang="xx-YY">Hello</speak>"#,
        )
        .expect("plan");
        let [
            PlanItem::Text {
                text,
                voice,
                language,
            },
        ] = &plan[..]
        else {
            panic!("{plan:?}")
        };
        let u = defaults(&[]).text(text, voice.as_deref(), language.as_deref());
        assert_eq!(
            engine.synthesize(&u),
            Err(TtsError::Language {
                language: "xx-YY".into(),
                detail: "no espeak-ng voice speaks it".into()
            })
        );
        // A voice name does not make an unknown language speakable.
        let named = defaults(&[("Voice-Name", "en-us"), ("Speech-Language", "xx-YY")]);
        assert!(matches!(
            engine.synthesize(&named.text("Hello", None, None)),
            Err(TtsError::Language { .. })
        ));
        assert_eq!(engine.runs(), 0, "refused before any synthesis");
        // German text in a German voice; an unknown voice name falls back to the language's.
        let german = defaults(&[("Speech-Language", "de-DE"), ("Voice-Name", "Mary")]);
        let clip = engine
            .synthesize(&german.text("Guten Tag", None, None))
            .expect("tts");
        assert!(speech_share(&clip) > 0.3);
        // Variants by name go after a language voice (espeak-ng crashes given one alone).
        for name in ["Annie", "en-gb+f2", "female3"] {
            let d = defaults(&[("Voice-Name", name)]);
            let clip = engine.synthesize(&d.text("Good morning", None, None));
            assert!(speech_share(&clip.expect(name)) > 0.3, "{name}");
        }
        // A misconfigured default voice is a voice error.
        let broken = EspeakNg::new("espeak-ng", "qq-nosuchvoice");
        assert!(matches!(
            broken.synthesize(&Utterance::new("hi", style(175))),
            Err(TtsError::Voice { .. })
        ));
        let missing = EspeakNg::new("/nonexistent/espeak-ng", "en-us");
        assert!(matches!(
            missing.synthesize(&Utterance::new("hi", style(175))),
            Err(TtsError::Unavailable { .. })
        ));
    }

    #[test]
    fn a_break_is_silence_between_the_two_parts() {
        let engine = require_espeak();
        let plan = parse_speak_body(
            "application/ssml+xml",
            br#"<speak xml:lang="en-US">Press one for sales.<break time="500ms"/><prosody rate="fast">Press two for support.</prosody></speak>"#,
        )
        .expect("plan");
        let d = defaults(&[]);
        let mut pcm = Vec::new();
        for item in &plan {
            match item {
                PlanItem::Text {
                    text,
                    voice,
                    language,
                } => pcm.extend(
                    engine
                        .synthesize(&d.text(text, voice.as_deref(), language.as_deref()))
                        .expect("tts")
                        .to_pcm(),
                ),
                PlanItem::Speech(s) => {
                    pcm.extend(engine.synthesize(&d.speech(s)).expect("tts").to_pcm())
                }
                PlanItem::Break(t) => pcm.extend(vec![0.0; (t.as_secs_f64() * 8000.0) as usize]),
                other => panic!("{other:?}"),
            }
        }
        let pause = longest_pause(&pcm);
        assert!(
            pause >= Duration::from_millis(450),
            "{pause:?} between the parts"
        );
        // Without the break the parts are closer than that.
        let whole = engine
            .synthesize(&d.text("Press one for sales. Press two for support.", None, None))
            .expect("tts");
        assert!(longest_pause(&whole.to_pcm()) < Duration::from_millis(450));
    }

    /// The phonemes espeak-ng says for an utterance's SSML (its `-x` output).
    fn phonemes(ssml: &str) -> String {
        let out = Command::new("espeak-ng")
            .args(["-q", "-x", "-m", "-v", "en-us", "--"])
            .arg(format!("<speak>{ssml}</speak>"))
            .output()
            .expect("espeak-ng");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn say_as_is_read_in_words() {
        require_espeak();
        let plan = parse_speak_body(
            "application/ssml+xml",
            br#"<speak xml:lang="en-US">
                <say-as interpret-as="date" format="mdy">2026-11-24</say-as>
                <say-as interpret-as="time">14:05</say-as>
                <say-as interpret-as="digits">1234</say-as>
                <say-as interpret-as="characters">AB</say-as></speak>"#,
        )
        .expect("plan");
        let [PlanItem::Speech(speech)] = &plan[..] else {
            panic!("{plan:?}")
        };
        let said = phonemes(&defaults(&[]).speech(speech).text);
        for (what, expected) in [
            ("November", "noUv'Emb3"),
            ("twenty-fourth", "tw'Ent2i f'o@T"),
            ("fourteen oh five", "f'o@ti:n 'oU f'aIv"),
            ("one two three four", "w'Vn t'u: Tr'i: f'o@"),
            ("the letter A", ",eI"),
        ] {
            assert!(said.contains(expected), "{what}: {said}");
        }
    }

    #[test]
    fn a_repeated_prompt_is_not_synthesised_again() {
        let engine = require_espeak();
        let tts = TextToSpeech::new(engine.clone(), 8 << 20);
        let u = defaults(&[]).text("Your call is important to us.", None, Some("en-US"));
        let first = tts.speak(&u).expect("tts");
        assert_eq!(engine.runs(), 1);
        let again = tts.speak(&u).expect("tts");
        assert!(Arc::ptr_eq(&first, &again), "the same clip");
        assert_eq!(engine.runs(), 1, "no second synthesis");
        let stats = tts.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
        assert!(stats.bytes >= first.memory_bytes());
        // Another rate is another rendering.
        let faster = Utterance {
            style: style(300),
            ..u.clone()
        };
        let fast = tts.speak(&faster).expect("tts");
        assert_eq!(engine.runs(), 2);
        assert!(fast.duration() < first.duration());
    }

    #[test]
    fn tts_settings_are_validated_with_their_key_and_line() {
        let path = std::path::Path::new("imss.toml");
        let parsed = config::Config::from_toml(
            "[tts]\nvoice = \"en-gb\"\npitch_percent = 120\nvolume_percent = 80\ncache_mib = 0\n",
            path,
        )
        .expect("valid");
        assert_eq!(
            (
                parsed.tts.pitch_percent,
                parsed.tts.volume_percent,
                parsed.tts.cache_mib,
                parsed.tts.rate_wpm
            ),
            (120, 80, 0, 175)
        );
        for (toml, key) in [
            ("engine = \"festival\"", "tts.engine"),
            ("voice = \" \"", "tts.voice"),
            ("rate_wpm = 20", "tts.rate_wpm"),
            ("pitch_percent = 5", "tts.pitch_percent"),
            ("volume_percent = 201", "tts.volume_percent"),
            ("cache_mib = 5000", "tts.cache_mib"),
        ] {
            let e = config::Config::from_toml(&format!("[tts]\n{toml}\n"), path)
                .expect_err(toml)
                .to_string();
            assert!(e.contains(key) && e.contains("line 2"), "{toml}: {e}");
        }
    }
}
