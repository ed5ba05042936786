//! Radio playlist files — `.pls` and `.m3u`/`.m3u8` — as internet radios publish them: a
//! list of stream URLs to try in turn. HLS playlists (segment lists, `#EXT-X-…`) are a
//! different thing and are refused with a message saying so.

use url::Url;

/// Longest playlist file read.
pub(super) const MAX_PLAYLIST_BYTES: u64 = 64 * 1024;
/// Most entries taken from one playlist.
const MAX_ENTRIES: usize = 32;

/// A playlist format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PlaylistKind {
    /// `[playlist]` with `FileN=` lines.
    Pls,
    /// One URL per line, `#` comments.
    M3u,
}

/// Whether a response is a playlist, by its content type, or by the URL's extension when
/// the content type is missing or says nothing about audio.
pub(super) fn kind_of(content_type: Option<&str>, url: &Url) -> Option<PlaylistKind> {
    let essence = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match essence.as_str() {
        "audio/x-scpls" | "audio/scpls" | "application/pls+xml" | "application/pls" => {
            return Some(PlaylistKind::Pls);
        }
        "audio/x-mpegurl"
        | "audio/mpegurl"
        | "application/x-mpegurl"
        | "application/vnd.apple.mpegurl"
        | "application/mpegurl" => {
            return Some(PlaylistKind::M3u);
        }
        _ => {}
    }
    let generic =
        essence.is_empty() || essence.starts_with("text/") || essence == "application/octet-stream";
    if !generic {
        return None;
    }
    let ext = url
        .path()
        .rsplit('/')
        .next()
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pls") => Some(PlaylistKind::Pls),
        Some("m3u" | "m3u8") => Some(PlaylistKind::M3u),
        _ => None,
    }
}

/// The stream URLs of a playlist, in order, relative ones resolved against `base`. Only
/// `http` and `https` entries are kept (a playlist must not make the server open files).
pub(super) fn parse(kind: PlaylistKind, text: &str, base: &Url) -> Result<Vec<Url>, String> {
    let raw: Vec<String> = match kind {
        PlaylistKind::Pls => {
            let mut files: Vec<(u32, String)> = text
                .lines()
                .filter_map(|line| {
                    let (key, value) = line.trim().split_once('=')?;
                    let key = key.trim().to_ascii_lowercase();
                    let n = key.strip_prefix("file")?.parse::<u32>().ok()?;
                    Some((n, value.trim().to_string()))
                })
                .collect();
            files.sort_by_key(|(n, _)| *n);
            files.into_iter().map(|(_, v)| v).collect()
        }
        PlaylistKind::M3u => {
            if text.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("#EXT-X-TARGETDURATION")
                    || l.starts_with("#EXT-X-STREAM-INF")
                    || l.starts_with("#EXT-X-MEDIA-SEQUENCE")
            }) {
                return Err(
                    "an HLS playlist (segments), which is not supported; give an Icecast or \
                     Shoutcast stream URL"
                        .into(),
                );
            }
            text.lines()
                .map(|l| l.trim().trim_start_matches('\u{feff}'))
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        }
    };
    let entries: Vec<Url> = raw
        .iter()
        .filter_map(|entry| base.join(entry).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .take(MAX_ENTRIES)
        .collect();
    if entries.is_empty() {
        return Err("the playlist lists no http:// or https:// stream".into());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn playlists_are_known_by_content_type_or_extension() {
        let plain = url("http://radio.example/listen");
        assert_eq!(
            kind_of(Some("audio/x-scpls"), &plain),
            Some(PlaylistKind::Pls)
        );
        assert_eq!(
            kind_of(Some("application/vnd.apple.mpegurl; charset=utf-8"), &plain),
            Some(PlaylistKind::M3u)
        );
        assert_eq!(kind_of(Some("audio/mpeg"), &plain), None);
        let pls = url("http://radio.example/listen.PLS?x=1");
        assert_eq!(kind_of(Some("text/plain"), &pls), Some(PlaylistKind::Pls));
        assert_eq!(kind_of(None, &pls), Some(PlaylistKind::Pls));
        assert_eq!(
            kind_of(Some("application/octet-stream"), &url("http://r/a.m3u8")),
            Some(PlaylistKind::M3u)
        );
        // A stream that happens to be served under a playlist-like name is still audio.
        assert_eq!(kind_of(Some("audio/mpeg"), &pls), None);
        assert_eq!(kind_of(None, &plain), None);
    }

    #[test]
    fn pls_entries_in_numeric_order() {
        let text = "[playlist]\r\nNumberOfEntries=3\r\nFile2=http://b.example:8000/live\r\n\
                    Title2=B\r\nfile10=https://c.example/x\r\nFile1 = http://a.example/stream \r\n\
                    File3=file:///etc/passwd\r\nVersion=2\r\n";
        let got = parse(PlaylistKind::Pls, text, &url("http://radio.example/l.pls")).expect("pls");
        let got: Vec<&str> = got.iter().map(Url::as_str).collect();
        assert_eq!(
            got,
            [
                "http://a.example/stream",
                "http://b.example:8000/live",
                "https://c.example/x"
            ]
        );
    }

    #[test]
    fn m3u_entries_with_comments_and_relative_urls() {
        let text = "\u{feff}#EXTM3U\n#EXTINF:-1,Radio\nhttp://a.example/live.mp3\n\n  relative/b.ogg  \n/abs.aac\n";
        let got = parse(
            PlaylistKind::M3u,
            text,
            &url("https://radio.example/lists/r.m3u"),
        )
        .expect("m3u");
        let got: Vec<&str> = got.iter().map(Url::as_str).collect();
        assert_eq!(
            got,
            [
                "http://a.example/live.mp3",
                "https://radio.example/lists/relative/b.ogg",
                "https://radio.example/abs.aac"
            ]
        );
    }

    #[test]
    fn hls_and_empty_playlists_are_refused() {
        let hls = "#EXTM3U\n#EXT-X-TARGETDURATION:10\nseg1.ts\n";
        let err = parse(PlaylistKind::M3u, hls, &url("http://r/x.m3u8")).expect_err("hls");
        assert!(err.contains("HLS"), "{err}");
        let err =
            parse(PlaylistKind::Pls, "[playlist]\n", &url("http://r/x.pls")).expect_err("empty");
        assert!(err.contains("no http"), "{err}");
        let err = parse(
            PlaylistKind::M3u,
            "file:///tmp/a.mp3\n",
            &url("http://r/x.m3u"),
        )
        .expect_err("files");
        assert!(err.contains("no http"), "{err}");
    }
}
