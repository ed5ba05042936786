//! SSML `<say-as>` (W3C Note "SSML 1.0 say-as attribute values"): dates, times, digits,
//! characters, cardinal and ordinal numbers and telephone numbers turned into text that a
//! synthesizer reads the intended way in the language it speaks.
//!
//! Numbers stay numerals where the synthesizer reads them well in every language (it says
//! "24" in the voice's language); what it cannot know from the written form — that `11` in
//! `2026-11-24` is a month, that `1234` is four digits, that `3` is an ordinal — is written
//! out: month names, ordinal suffixes, spaced digits. English, German, French, Spanish,
//! Italian, Dutch and Portuguese have their month names and date order; other languages get
//! the numbers in day-month-year order.

/// What a `<say-as>` becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SayAsText {
    /// Text to read as it is.
    Words(String),
    /// Characters to spell one by one (the synthesizer's own `characters` reading, which
    /// says letter names — "A" as the letter, not the article).
    Characters(String),
}

/// Renders the content `text` of `<say-as interpret-as=… format=…>` for `language` (a BCP
/// 47 tag such as `en-US`). Unknown `interpret-as` values, and content that does not fit
/// the one given, give the text as written.
pub fn render(interpret_as: &str, format: Option<&str>, text: &str, language: &str) -> SayAsText {
    let text = text.trim();
    let lang = Lang::of(language);
    let format = format.map(str::to_ascii_lowercase);
    let kind = interpret_as.trim().to_ascii_lowercase();
    let words = match (kind.as_str(), format.as_deref()) {
        ("characters" | "letters" | "spell-out" | "tts:char", _) => {
            return SayAsText::Characters(text.to_string());
        }
        ("digits" | "tts:digits", _) | ("number", Some("digits")) => spaced_digits(text),
        ("cardinal", _) | ("number", None | Some("cardinal")) => cardinal(text, lang),
        ("ordinal", _) | ("number", Some("ordinal")) => ordinal(text, lang),
        ("telephone" | "phone", _) => telephone(text),
        ("date", format) => date(text, format, lang),
        ("time", format) => time(text, format, lang),
        _ => None,
    };
    SayAsText::Words(words.unwrap_or_else(|| text.to_string()))
}

/// The language conventions this module knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    /// American English: month-day-year.
    EnUs,
    /// Other English: day-month-year.
    En,
    De,
    Fr,
    Es,
    It,
    Nl,
    Pt,
    /// Any other language: numerals only.
    Other,
}

impl Lang {
    fn of(tag: &str) -> Lang {
        let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
        let mut subtags = tag.split('-');
        let primary = subtags.next().unwrap_or_default();
        match primary {
            "en" => {
                if subtags.any(|s| s == "us") || tag == "en" {
                    Lang::EnUs
                } else {
                    Lang::En
                }
            }
            "de" => Lang::De,
            "fr" => Lang::Fr,
            "es" => Lang::Es,
            "it" => Lang::It,
            "nl" => Lang::Nl,
            "pt" => Lang::Pt,
            _ => Lang::Other,
        }
    }

    fn is_english(self) -> bool {
        matches!(self, Lang::EnUs | Lang::En)
    }

    /// Whether numbers are written `1.234,5` rather than `1,234.5`.
    fn decimal_comma(self) -> bool {
        matches!(
            self,
            Lang::De | Lang::Fr | Lang::Es | Lang::It | Lang::Nl | Lang::Pt
        )
    }

    fn month(self, month: u32) -> Option<&'static str> {
        const EN: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        const DE: [&str; 12] = [
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ];
        const FR: [&str; 12] = [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ];
        const ES: [&str; 12] = [
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ];
        const IT: [&str; 12] = [
            "gennaio",
            "febbraio",
            "marzo",
            "aprile",
            "maggio",
            "giugno",
            "luglio",
            "agosto",
            "settembre",
            "ottobre",
            "novembre",
            "dicembre",
        ];
        const NL: [&str; 12] = [
            "januari",
            "februari",
            "maart",
            "april",
            "mei",
            "juni",
            "juli",
            "augustus",
            "september",
            "oktober",
            "november",
            "december",
        ];
        const PT: [&str; 12] = [
            "janeiro",
            "fevereiro",
            "março",
            "abril",
            "maio",
            "junho",
            "julho",
            "agosto",
            "setembro",
            "outubro",
            "novembro",
            "dezembro",
        ];
        let names = match self {
            Lang::EnUs | Lang::En => &EN,
            Lang::De => &DE,
            Lang::Fr => &FR,
            Lang::Es => &ES,
            Lang::It => &IT,
            Lang::Nl => &NL,
            Lang::Pt => &PT,
            Lang::Other => return None,
        };
        names
            .get(usize::try_from(month).ok()?.checked_sub(1)?)
            .copied()
    }
}

/// Every digit on its own, groups (runs of digits between other characters) apart: "1234"
/// → "1 2 3 4".
fn spaced_digits(text: &str) -> Option<String> {
    let groups = digit_groups(text);
    if groups.is_empty() {
        return None;
    }
    Some(
        groups
            .iter()
            .map(|g| spaced(g))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// A telephone number digit by digit, its written groups as pauses, a leading `+` kept
/// (read as "plus"): "+1 (555) 123-4567" → "+ 1, 5 5 5, 1 2 3, 4 5 6 7".
fn telephone(text: &str) -> Option<String> {
    let digits = spaced_digits(text)?;
    Some(if text.starts_with('+') {
        format!("+ {digits}")
    } else {
        digits
    })
}

fn digit_groups(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect()
}

fn spaced(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() * 2);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push(d);
    }
    out
}

/// A written number without its grouping separators and with the language's decimal mark:
/// "1,234,567" → "1234567" (English), "1.234,5" → "1234,5" (German).
fn cardinal(text: &str, lang: Lang) -> Option<String> {
    let (sign, body) = match text.strip_prefix(['-', '\u{2212}']) {
        Some(rest) => ("-", rest),
        None => ("", text.strip_prefix('+').unwrap_or(text)),
    };
    let (group_marks, decimal): (&[char], char) = if lang.decimal_comma() {
        (&['.', ' ', '\u{a0}', '\u{202f}', '\''], ',')
    } else {
        (&[',', ' ', '\u{a0}', '\u{202f}', '\''], '.')
    };
    let (integer, fraction) = match body.split_once(decimal) {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let groups: Vec<&str> = integer.split(group_marks).collect();
    let grouped_right = groups.len() == 1
        || (!groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !grouped_right || !groups.iter().all(|g| all_digits(g)) {
        return None;
    }
    let mut out = format!("{sign}{}", groups.concat());
    if let Some(fraction) = fraction {
        if !all_digits(fraction) {
            return None;
        }
        out.push(decimal);
        out.push_str(fraction);
    }
    Some(out)
}

/// An ordinal number in the form the language's synthesizer reads as one: "3" → "3rd"
/// (English), "3ème" (French), "3º" (Spanish, Italian, Portuguese), "3e" (Dutch), "3."
/// elsewhere.
fn ordinal(text: &str, lang: Lang) -> Option<String> {
    let digits: String = text
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .filter(|c| !matches!(c, ',' | '.' | ' ' | '\u{a0}' | '\''))
        .collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 18 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(ordinal_of(n, lang))
}

fn ordinal_of(n: u64, lang: Lang) -> String {
    match lang {
        Lang::EnUs | Lang::En => {
            let suffix = match (n % 10, n % 100) {
                (_, 11..=13) => "th",
                (1, _) => "st",
                (2, _) => "nd",
                (3, _) => "rd",
                _ => "th",
            };
            format!("{n}{suffix}")
        }
        Lang::Fr if n == 1 => "1er".to_string(),
        Lang::Fr => format!("{n}ème"),
        Lang::Es | Lang::It | Lang::Pt => format!("{n}º"),
        Lang::Nl => format!("{n}e"),
        Lang::De | Lang::Other => format!("{n}."),
    }
}

/// A date in words: the fields of `text` in the order `format` gives (`mdy`, `dmy`, `ymd`,
/// `md`, `dm`, `ym`, `my`, `d`, `m`, `y`), read in the language's order with the month's
/// name: `2026-11-24` → "November 24th, 2026" (American English), "the 24th of November,
/// 2026" (other English), "24. November 2026" (German). A four-digit first field is a year
/// whatever the format says (ISO 8601 dates are common in any locale).
fn date(text: &str, format: Option<&str>, lang: Lang) -> Option<String> {
    let fields = digit_groups(text);
    let iso = fields.len() == 3 && fields[0].len() == 4;
    let order = match format {
        _ if iso => "ymd",
        Some(f) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b"dmy".contains(&b)) => f,
        Some(_) => return None,
        None if fields.len() == 3 && lang == Lang::EnUs => "mdy",
        None if fields.len() == 3 => "dmy",
        None => return None,
    };
    if fields.len() != order.len() {
        return None;
    }
    let (mut year, mut month, mut day) = (None, None, None);
    for (field, which) in fields.iter().zip(order.bytes()) {
        let value: u32 = field.parse().ok().filter(|_| field.len() <= 4)?;
        let slot = match which {
            b'y' => &mut year,
            b'm' => &mut month,
            _ => &mut day,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    if month.is_some_and(|m| !(1..=12).contains(&m)) || day.is_some_and(|d| !(1..=31).contains(&d))
    {
        return None;
    }
    let month_name = |m: u32| lang.month(m).map_or_else(|| m.to_string(), str::to_string);
    let words = match (year, month, day) {
        (y, Some(m), Some(d)) => {
            let m = month_name(m);
            let year = |sep: &str| y.map(|y| format!("{sep}{y}")).unwrap_or_default();
            match lang {
                Lang::EnUs => format!("{m} {}{}", ordinal_of(d.into(), lang), year(", ")),
                Lang::En => format!("the {} of {m}{}", ordinal_of(d.into(), lang), year(", ")),
                Lang::De => format!("{d}. {m}{}", year(" ")),
                Lang::Fr => format!(
                    "{} {m}{}",
                    if d == 1 { "1er".into() } else { d.to_string() },
                    year(" ")
                ),
                Lang::Es | Lang::Pt => format!("{d} de {m}{}", year(" de ")),
                Lang::It | Lang::Nl => format!("{d} {m}{}", year(" ")),
                Lang::Other => format!("{d} {m}{}", year(" ")),
            }
        }
        (Some(y), Some(m), None) => match lang {
            Lang::Es | Lang::Pt => format!("{} de {y}", month_name(m)),
            _ => format!("{} {y}", month_name(m)),
        },
        (None, Some(m), None) => month_name(m),
        (None, None, Some(d)) if lang.is_english() => format!("the {}", ordinal_of(d.into(), lang)),
        (None, None, Some(d)) => ordinal_of(d.into(), lang),
        (Some(y), None, None) => y.to_string(),
        _ => return None,
    };
    Some(words)
}

/// A time of day: `14:05` → "14 oh 5" ("fourteen oh five"), and with `format="hms12"` or
/// an am/pm in the text "2 oh 5 p m" (English); "14 Uhr 5" (German); "14 heures 5"
/// (French); the written `14:05` elsewhere, which synthesizers read as a time.
fn time(text: &str, format: Option<&str>, lang: Lang) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let compact: String = lower.chars().filter(|c| !matches!(c, '.' | ' ')).collect();
    let meridiem = if compact.ends_with("pm") || compact.ends_with('p') {
        Some(true)
    } else if compact.ends_with("am") || compact.ends_with('a') {
        Some(false)
    } else {
        None
    };
    let fields = digit_groups(&lower);
    if fields.is_empty() || fields.len() > 3 || fields.iter().any(|f| f.len() > 2) {
        return None;
    }
    let numbers: Vec<u32> = fields.iter().filter_map(|f| f.parse().ok()).collect();
    let (hour, minute, second) = (
        numbers[0],
        numbers.get(1).copied().unwrap_or(0),
        numbers.get(2).copied(),
    );
    if minute > 59 || second.is_some_and(|s| s > 59) {
        return None;
    }
    // The hour on a 24-hour clock.
    let hour24 = match meridiem {
        Some(_) if !(1..=12).contains(&hour) => return None,
        Some(true) => hour % 12 + 12,
        Some(false) => hour % 12,
        None if hour > 24 => return None,
        None => hour % 24,
    };
    let twelve_hour = meridiem.is_some() || format.is_some_and(|f| f.contains("12"));
    let words = match lang {
        Lang::EnUs | Lang::En => {
            let (h, suffix) = if twelve_hour {
                let h = if hour24 % 12 == 0 { 12 } else { hour24 % 12 };
                (h, if hour24 >= 12 { " p m" } else { " a m" })
            } else {
                (hour24, "")
            };
            let minutes = match minute {
                0 if twelve_hour => String::new(),
                0 => " hundred".to_string(),
                1..=9 => format!(" oh {minute}"),
                _ => format!(" {minute}"),
            };
            let seconds = match second {
                Some(s) if s > 0 => format!(" and {s} seconds"),
                _ => String::new(),
            };
            format!("{h}{minutes}{suffix}{seconds}")
        }
        Lang::De | Lang::Fr => {
            let hour_word = if lang == Lang::De { "Uhr" } else { "heures" };
            let minutes = if minute == 0 {
                String::new()
            } else {
                format!(" {minute}")
            };
            format!("{hour24} {hour_word}{minutes}")
        }
        _ => format!("{hour24}:{minute:02}"),
    };
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(interpret_as: &str, format: Option<&str>, text: &str, language: &str) -> String {
        match render(interpret_as, format, text, language) {
            SayAsText::Words(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dates_in_the_languages_order_with_month_names() {
        for (format, text) in [
            (Some("ymd"), "2026-11-24"),
            (Some("mdy"), "11/24/2026"),
            (Some("dmy"), "24.11.2026"),
            (None, "2026-11-24"),
            // An ISO date is read as one whatever the format claims.
            (Some("mdy"), "2026-11-24"),
        ] {
            assert_eq!(
                words("date", format, text, "en-US"),
                "November 24th, 2026",
                "{format:?} {text}"
            );
        }
        assert_eq!(
            words("date", Some("dmy"), "01/03/2026", "en-GB"),
            "the 1st of March, 2026"
        );
        assert_eq!(
            words("date", Some("ymd"), "2026-11-24", "de-DE"),
            "24. November 2026"
        );
        assert_eq!(
            words("date", Some("ymd"), "2026-05-01", "fr"),
            "1er mai 2026"
        );
        assert_eq!(
            words("date", None, "24/11/2026", "es-ES"),
            "24 de noviembre de 2026"
        );
        assert_eq!(words("date", Some("md"), "11-22", "en-US"), "November 22nd");
        assert_eq!(words("date", Some("my"), "3/2026", "en-US"), "March 2026");
        assert_eq!(words("date", Some("d"), "13", "en-US"), "the 13th");
        assert_eq!(words("date", None, "2026-11-24", "pl"), "24 11 2026");
        // Not a date: read as written.
        assert_eq!(words("date", Some("mdy"), "13/45/2026", "en"), "13/45/2026");
        assert_eq!(words("date", Some("mdy"), "soon", "en"), "soon");
        assert_eq!(words("date", Some("xyz"), "1/2/3", "en"), "1/2/3");
    }

    #[test]
    fn times_on_the_24_and_12_hour_clock() {
        assert_eq!(words("time", None, "14:05", "en-US"), "14 oh 5");
        assert_eq!(words("time", Some("hms24"), "14:00", "en"), "14 hundred");
        assert_eq!(words("time", Some("hms12"), "14:05", "en"), "2 oh 5 p m");
        assert_eq!(words("time", None, "2:30 PM", "en"), "2 30 p m");
        assert_eq!(words("time", None, "12:00am", "en"), "12 a m");
        assert_eq!(
            words("time", Some("hms24"), "09:15:30", "en"),
            "9 15 and 30 seconds"
        );
        assert_eq!(words("time", None, "14:05", "de-DE"), "14 Uhr 5");
        assert_eq!(words("time", None, "14:00", "fr-FR"), "14 heures");
        assert_eq!(words("time", None, "14:05", "sv"), "14:05");
        assert_eq!(words("time", None, "25:61", "en"), "25:61");
        assert_eq!(words("time", None, "13:00 pm", "en"), "13:00 pm");
    }

    #[test]
    fn numbers_digits_and_telephone_numbers() {
        assert_eq!(words("digits", None, "1234", "en"), "1 2 3 4");
        assert_eq!(words("number", Some("digits"), "12-34", "en"), "1 2, 3 4");
        assert_eq!(
            words("telephone", None, "+1 (555) 123-4567", "en-US"),
            "+ 1, 5 5 5, 1 2 3, 4 5 6 7"
        );
        assert_eq!(words("telephone", None, "0800 123", "de"), "0 8 0 0, 1 2 3");
        assert_eq!(words("cardinal", None, "1,234,567", "en"), "1234567");
        assert_eq!(words("cardinal", None, "-1,234.5", "en"), "-1234.5");
        assert_eq!(words("number", None, "1.234,5", "de"), "1234,5");
        assert_eq!(words("cardinal", None, "12,34", "en"), "12,34");
        assert_eq!(words("ordinal", None, "3", "en"), "3rd");
        assert_eq!(words("ordinal", None, "11", "en"), "11th");
        assert_eq!(words("ordinal", None, "22", "en-GB"), "22nd");
        assert_eq!(words("number", Some("ordinal"), "101", "en"), "101st");
        assert_eq!(words("ordinal", None, "1", "fr"), "1er");
        assert_eq!(words("ordinal", None, "24", "es"), "24º");
        assert_eq!(words("ordinal", None, "third", "en"), "third");
        assert_eq!(words("currency", None, "$42", "en"), "$42");
        assert_eq!(
            render("characters", None, " AB12 ", "en"),
            SayAsText::Characters("AB12".into())
        );
    }
}
