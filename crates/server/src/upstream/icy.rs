//! ICY (Shoutcast/Icecast) in-band metadata: with `Icy-MetaData: 1` a server that answers
//! `icy-metaint: N` puts a metadata block after every N bytes of audio — one length byte
//! L, then 16·L bytes of `Key='value';` text padded with NULs. The blocks must be removed
//! exactly, or the decoder meets garbage every N bytes.

use std::io::{ErrorKind, Read};

/// Receives each new `StreamTitle` (`None` when it is empty).
pub(super) type TitleSink = Box<dyn FnMut(Option<String>) + Send + Sync>;

/// The audio bytes of an ICY stream, metadata blocks removed; titles go to a callback.
pub(super) struct IcyReader<R> {
    inner: R,
    /// Audio bytes between two metadata blocks; 0 for a stream without metadata.
    metaint: usize,
    /// Audio bytes until the next metadata block.
    left: usize,
    on_title: TitleSink,
    title: Option<Option<String>>,
}

impl<R: Read> IcyReader<R> {
    /// `metaint` is the `icy-metaint` header's value (`None` or 0: no metadata).
    pub(super) fn new(inner: R, metaint: Option<usize>, on_title: TitleSink) -> IcyReader<R> {
        let metaint = metaint.unwrap_or(0);
        IcyReader {
            inner,
            metaint,
            left: metaint,
            on_title,
            title: None,
        }
    }

    /// Reads one metadata block. False when the stream ended cleanly before it.
    fn read_metadata(&mut self) -> std::io::Result<bool> {
        let mut len = [0u8; 1];
        loop {
            match self.inner.read(&mut len) {
                Ok(0) => return Ok(false),
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = usize::from(len[0]) * 16;
        if len == 0 {
            return Ok(true);
        }
        let mut block = [0u8; 255 * 16];
        self.inner.read_exact(&mut block[..len])?;
        if let Some(title) = stream_title(&block[..len])
            && self.title.as_ref() != Some(&title)
        {
            self.title = Some(title.clone());
            (self.on_title)(title);
        }
        Ok(true)
    }
}

impl<R: Read> Read for IcyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.metaint == 0 || buf.is_empty() {
            return self.inner.read(buf);
        }
        if self.left == 0 {
            if !self.read_metadata()? {
                return Ok(0);
            }
            self.left = self.metaint;
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got;
        Ok(got)
    }
}

/// The `StreamTitle` of a metadata block: `Some(None)` when it is empty, `None` when the
/// block has none. Text is UTF-8, or Latin-1 when it is not valid UTF-8 (older servers).
pub(super) fn stream_title(block: &[u8]) -> Option<Option<String>> {
    let end = block.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let text = match std::str::from_utf8(&block[..end]) {
        Ok(s) => s.to_string(),
        Err(_) => block[..end].iter().map(|&b| char::from(b)).collect(),
    };
    const KEY: &str = "StreamTitle='";
    let start = text.find(KEY)? + KEY.len();
    let rest = &text[start..];
    // The value ends at `';` (a title may itself hold quotes), else at the last quote.
    let value = match rest.find("';") {
        Some(i) => &rest[..i],
        None => rest.rfind('\'').map_or(rest, |i| &rest[..i]),
    };
    let value = value.trim();
    Some((!value.is_empty()).then(|| value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An ICY stream: audio bytes `0, 1, 2, …` (mod 251) with a metadata block after every
    /// `metaint` bytes, each block from `blocks` in turn (empty: a zero length byte).
    fn icy_stream(audio_len: usize, metaint: usize, blocks: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut k = 0;
        for i in 0..audio_len {
            out.push((i % 251) as u8);
            if (i + 1) % metaint == 0 {
                let text = blocks[k % blocks.len()].as_bytes();
                k += 1;
                let len = text.len().div_ceil(16);
                out.push(len as u8);
                out.extend_from_slice(text);
                out.resize(out.len() + len * 16 - text.len(), 0);
            }
        }
        out
    }

    /// Reads everything, `step` bytes at most per call (as a socket hands them out).
    fn read_all(r: &mut impl Read, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read(&mut buf).expect("read");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn metadata_blocks_are_removed_exactly_at_any_interval() {
        let blocks = ["StreamTitle='One';", "", "StreamTitle='Two';StreamUrl='';"];
        for metaint in [1, 7, 16, 1000, 8192, 16_000] {
            for step in [1, 5, 4096] {
                let audio_len = 40_000;
                let stream = icy_stream(audio_len, metaint, &blocks);
                let titles = Arc::new(Mutex::new(Vec::new()));
                let sink = Arc::clone(&titles);
                let mut r = IcyReader::new(
                    std::io::Cursor::new(stream),
                    Some(metaint),
                    Box::new(move |t| sink.lock().expect("lock").push(t)),
                );
                let audio = read_all(&mut r, step);
                assert_eq!(audio.len(), audio_len, "metaint {metaint}, step {step}");
                assert!(
                    audio.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
                    "metaint {metaint}, step {step}: audio damaged"
                );
                // Titles alternate; the empty block (no StreamTitle) changes nothing.
                let expected: Vec<Option<String>> = (0..audio_len / metaint)
                    .filter_map(|k| match k % 3 {
                        0 => Some(Some("One".to_string())),
                        2 => Some(Some("Two".to_string())),
                        _ => None,
                    })
                    .collect();
                assert_eq!(
                    *titles.lock().expect("lock"),
                    expected,
                    "metaint {metaint}, step {step}"
                );
            }
        }
    }

    #[test]
    fn without_metaint_bytes_pass_through() {
        let data: Vec<u8> = (0..5000).map(|i| (i % 256) as u8).collect();
        let mut r = IcyReader::new(std::io::Cursor::new(data.clone()), None, Box::new(|_| {}));
        assert_eq!(read_all(&mut r, 333), data);
    }

    #[test]
    fn a_stream_cut_inside_a_metadata_block_is_an_error() {
        let mut stream = icy_stream(32, 16, &["StreamTitle='Long enough title';"]);
        stream.truncate(16 + 1 + 10);
        let mut r = IcyReader::new(std::io::Cursor::new(stream), Some(16), Box::new(|_| {}));
        let mut buf = [0u8; 64];
        assert_eq!(r.read(&mut buf).expect("audio"), 16);
        assert_eq!(
            r.read(&mut buf).expect_err("cut").kind(),
            ErrorKind::UnexpectedEof
        );
        // Cut right at a block boundary: a clean end.
        let stream = icy_stream(16, 16, &[""]);
        let mut r = IcyReader::new(
            std::io::Cursor::new(stream[..16].to_vec()),
            Some(16),
            Box::new(|_| {}),
        );
        assert_eq!(read_all(&mut r, 64).len(), 16);
    }

    #[test]
    fn stream_titles() {
        assert_eq!(
            stream_title(b"StreamTitle='Artist - Song';StreamUrl='http://x';\0\0\0"),
            Some(Some("Artist - Song".into()))
        );
        assert_eq!(
            stream_title(b"StreamTitle='Rock 'n' Roll';"),
            Some(Some("Rock 'n' Roll".into()))
        );
        assert_eq!(stream_title(b"StreamTitle='';\0"), Some(None));
        assert_eq!(stream_title(b"StreamUrl='x';"), None);
        assert_eq!(
            stream_title(b"StreamTitle='Caf\xe9';"),
            Some(Some("Café".into())),
            "Latin-1"
        );
        assert_eq!(
            stream_title("StreamTitle='Café';".as_bytes()),
            Some(Some("Café".into())),
            "UTF-8"
        );
        assert_eq!(
            stream_title(b"StreamTitle='unterminated"),
            Some(Some("unterminated".into()))
        );
    }
}
